"""10,000 waiting carbon triggers in one event loop, beside 10,000 of Airflow's ``DateTimeTrigger``.

Run from the repository root::

    .venv/bin/python bench/trigger_scale.py [--triggers 10000] [--zones 10] [--json-out PATH]
    .venv/bin/python bench/trigger_scale.py --trace-loop     # what ran in each slow loop iteration
    .venv/bin/python bench/trigger_scale.py --profile        # cProfile of the first refresh

It prints a JSON document on stdout and, as the last line, a one-line summary with PASS/FAIL per
target. The exit code is 0 whether or not the targets are met (a measurement, not a test). Progress
goes to stderr. About 2-3 minutes on 2 cores with the defaults. Targets (the issue):

- upstream requests per forecast refresh == number of zones;
- memory per waiting carbon trigger <= 1.5 x that of a waiting ``DateTimeTrigger``;
- longest event-loop stall while all triggers refresh < 50 ms (the triggerer warns at 200 ms:
  ``[triggerer] blocked_main_thread_warning_threshold``).

Method
------
*Server.* A separate process (``--serve``, started by the benchmark, so its work never runs on the
measured loop nor holds its GIL) serves NESO-shaped ``fw48h`` responses on 127.0.0.1: the regional path
``/regional/intensity/{from}/fw48h/regionid/{id}`` that :class:`carbon_sensors.signals.neso.NesoSource`
requests (and the national one): 96 half-hour slots from ``from`` with the generation mix real regional
responses carry (~40 KB each), lowest ~5.5 h ahead so every trigger keeps waiting. It counts requests
per path (``GET /_stats``).

*Triggers.* ``CarbonWindowTrigger`` objects get the kwargs ``CarbonAwareSensor`` gives them
(``carbon_sensors.operators.carbon.CarbonGateMixin.trigger``), JSON round-tripped as the triggerer
decodes stored kwargs: zone ``GB-<i % zones>``, source ``{"kind": "neso", "region_id": i % zones + 1,
"base_url": <server>}``, deadline 8 h after submission, ``expected_duration_s=3600``, the default
policy, dag/task/run ids (so the force-start Variable is read, through its per-process cache). As
``TriggerRunner.create_triggers`` does, each is inflated, then its ``run()`` consumed by its own task,
with ``await asyncio.sleep(0)`` before and after. ``DateTimeTrigger(moment=now + 6 h)`` run the same
way. Airflow logging is at WARNING (the triggerer would also log every decision).

*Phase M (memory).* After a warm-up (imports and the decision trail's first write; then cancelled),
under ``tracemalloc``: N ``DateTimeTrigger`` tasks are started and left waiting (snapshot), then N
carbon triggers, until each has made its first decision and sleeps (snapshot). Memory per waiting
trigger = traced bytes difference / N for each kind; the ratio is carbon / DateTime. Also the garbage-collector-tracked
objects per trigger (a full collection's pause grows with them). The carbon triggers' clock runs at
real speed here, so nothing refreshes; they are then cancelled, while the DateTime triggers keep
waiting through phase S (side by side, as in one triggerer). A second, smaller round
(``--attribution-triggers``, 8-frame stacks) charges the bytes to the lines that allocated them:
``carbon_by_site``/``datetime_by_site``, per trigger (each allocation to the innermost frame in
``carbon_sensors/``, else in Airflow or this file; ``via`` is the allocating frame, e.g. json).

*Phase S (requests, stalls).* ``tracemalloc`` off, ``DEFAULT_CACHE`` cleared, N fresh carbon triggers on
a ``CompressedClock`` (``carbon_sensors.testing``) that starts 1 min after a half-hour boundary and runs
``1800 / --refresh-after-s`` times real speed, with ``check_interval_s=--check-interval-s`` (simulated
seconds: each trigger also wakes that often to re-read the clock and the override; at the defaults
that is every 3.3 s of real time, about 18 times as often as a real triggerer with the gates'
60 s default). Every trigger decides at start, sleeps until its next decision point (the source's
30-minute refresh), wakes after the NESO slot has changed and re-plans on the new forecast: that is
one refresh of all N; the run measures ``--refreshes`` of them. A heartbeat task sleeps 5 ms in a
loop; how late it wakes is the event-loop stall. Per phase (start, refresh k, each from the first to
the last decision in it): upstream requests counted by the server for that NESO slot; the longest stall, p99, the three worst
with the garbage-collector pauses inside them (``gc.callbacks``), and ``max_net_of_gc_ms``, the
longest stall less those pauses. The target is the longest stall over all refreshes.

*Full collections.* ``gc.collect()`` is timed (median of 3) with no trigger, with the N
``DateTimeTrigger`` alone and with both kinds waiting (``full_collection_pause``): a stall during a
refresh can be no shorter than this once CPython's full collection happens to fall inside it, whichever
objects triggered it. The decision trail's queue is drained before the carbon memory snapshot (its
entries are written within seconds; they are not memory a waiting trigger keeps).

``--trace-loop`` times every callback the loop runs and, for each iteration busier than 20 ms, says
what ran (a trigger's step is labelled by the ``carbon_sensors`` coroutine it resumed in). ``--profile``
runs ``cProfile`` over the first refresh (``cumulative_us_per_decision``: per trigger). Both slow the
loop, so their stall figures are not the measurement.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HEARTBEAT_S = 0.005
TRACE_FRAMES = 8  # enough to reach our code from json/dataclasses; more makes tracemalloc much slower
SLOT_S = 1800
_REGIONAL = re.compile(r"^/regional/intensity/([0-9T:\-]+Z)/fw48h/regionid/([0-9]+)$")
_NATIONAL = re.compile(r"^/intensity/([0-9T:\-]+Z)/fw48h$")
_FUELS = ("biomass", "coal", "imports", "gas", "nuclear", "other", "hydro", "solar", "wind")


def log(message: str) -> None:
    print(f"trigger_scale: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- server


def _forecast_body(stamp: str, region_id: int | None) -> bytes:
    """96 half-hour slots from ``stamp``, lowest ~5.5 h ahead; regional responses carry the mix."""
    start = datetime.strptime(stamp, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)
    slots = []
    r = region_id or 0
    for k in range(96):
        t = start + timedelta(minutes=30 * k)
        value = 80 + 7 * r + 12 * abs(k - 11)
        slot: dict[str, Any] = {"from": t.strftime("%Y-%m-%dT%H:%MZ"),
                                "to": (t + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%MZ"),
                                "intensity": {"forecast": value, "index": "moderate" if value > 150 else "low"}}
        if region_id is not None:
            slot["generationmix"] = [{"fuel": f, "perc": round((k * 7 + i * 13 + r) % 40 / 3.7, 1)} for i, f in enumerate(_FUELS)]
        slots.append(slot)
    if region_id is None:
        return json.dumps({"data": slots}).encode()
    return json.dumps({"data": [{"regionid": region_id, "dnoregion": f"Region {region_id}", "shortname": f"R{region_id}",
                                 "data": slots}]}).encode()


def serve() -> None:
    """The forecast server (child process): prints ``PORT <n>`` then serves until stdin closes."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    bodies: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real API: httpx reuses its connections

        def do_GET(self) -> None:  # the name http.server calls
            if self.path == "/_stats":
                with lock:
                    return self._send(200, json.dumps(dict(counts)).encode())
            regional, national = _REGIONAL.match(self.path), _NATIONAL.match(self.path)
            if not regional and not national:
                return self._send(404, b'{"error": "not found"}')
            with lock:
                counts[self.path] += 1
                body = bodies.get(self.path)
            if body is None:
                if regional:
                    body = _forecast_body(regional.group(1), int(regional.group(2)))
                else:
                    body = _forecast_body(national.group(1), None)  # type: ignore[union-attr]
                with lock:
                    bodies[self.path] = body
            self._send(200, body)

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    print(f"PORT {server.server_address[1]}", flush=True)
    sys.stdin.read()  # the parent closes stdin (or dies): stop
    server.shutdown()


class ForecastServer:
    """The server process, seen from the benchmark."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"the forecast server did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def stats(self) -> dict[str, int]:
        import urllib.request

        with urllib.request.urlopen(self.url + "/_stats", timeout=10) as response:
            return json.loads(response.read())

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ------------------------------------------------------------------------------------------ benchmark


class Heartbeat:
    """Sleeps ``HEARTBEAT_S`` in a loop and records (wake time, lateness) in perf_counter seconds."""

    def __init__(self) -> None:
        from array import array

        self.times, self.lateness = array("d"), array("d")  # not tracked by the garbage collector
        self.stop = False

    async def run(self) -> None:
        import asyncio

        while not self.stop:
            before = time.perf_counter()
            await asyncio.sleep(HEARTBEAT_S)
            after = time.perf_counter()
            self.times.append(after)
            self.lateness.append(max(0.0, after - before - HEARTBEAT_S))

    def window(self, start: float, end: float, gc_runs: list[tuple[float, float, int, int]] = ()) -> dict[str, Any]:
        """Lateness of wakes in ``[start, end]``; a wake just after ``end`` counts (its stall began inside).

        ``max_net_of_gc_ms``: the longest lateness less the garbage-collector pauses inside it, i.e. the
        longest stall our code and asyncio caused by themselves. ``max_without_full_gc_ms``: the longest
        lateness that no full (generation-2) collection overlapped, young collections included.
        ``full_gcs``: the full collections that overlapped a late wake.
        """
        late, net, worst, without_full, full = [], [], [], [], set()
        for t, lat in zip(self.times, self.lateness, strict=True):
            if start <= t and t - lat <= end:
                late.append(lat)
                begin = t - lat - HEARTBEAT_S
                overlaps = [(g0, dur, g) for g0, dur, g, _c in gc_runs if g0 < t and g0 + dur > begin]
                paused = sum((min(t, g0 + dur) - max(begin, g0) for g0, dur, _g in overlaps), 0.0)
                net.append(max(0.0, lat - paused))
                worst.append((lat, t, paused))
                fulls = {g0 for g0, _dur, g in overlaps if g == 2}
                full |= fulls
                if not fulls:
                    without_full.append(lat)
        if not late:
            return {"samples": 0, "max_ms": None, "p99_ms": None, "p50_ms": None, "over_50ms": 0, "over_200ms": 0,
                    "max_net_of_gc_ms": None, "max_without_full_gc_ms": None, "full_gcs": 0}
        ordered = sorted(late)
        return {
            "samples": len(late),
            "max_ms": round(ordered[-1] * 1000, 2),
            "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 2),
            "p50_ms": round(ordered[len(ordered) // 2] * 1000, 2),
            "over_50ms": sum(1 for x in late if x > 0.05),
            "over_200ms": sum(1 for x in late if x > 0.2),
            "max_net_of_gc_ms": round(max(net) * 1000, 2),
            "max_without_full_gc_ms": round(max(without_full, default=0.0) * 1000, 2),
            "full_gcs": len(full),
            "worst": [{"at_s": round(t - lat - start, 3), "ms": round(lat * 1000, 2), "gc_ms": round(paused * 1000, 2)}
                      for lat, t, paused in sorted(worst, reverse=True)[:3]],
        }


class LoopTracer:
    """Times every callback the loop runs and says what each resumed task had been waiting for.

    Installed only with ``--trace-loop`` (it slows every callback a little). For each loop iteration
    whose callbacks ran longer than ``threshold_s`` in total, it keeps the count and time per kind of
    callback; a task step is labelled by the innermost ``carbon_sensors`` coroutine it was suspended
    in (e.g. ``ForecastCache.get`` for waiters of a shared forecast fetch, ``CompressedClock.sleep``
    for a trigger waking up).
    """

    active: LoopTracer | None = None

    def __init__(self, threshold_s: float = 0.02) -> None:
        self.threshold_s = threshold_s
        self.generators: dict[Any, Any] = {}
        self.slow: list[tuple[float, float, dict[str, list[float]]]] = []
        self.totals: dict[str, list[float]] = {}
        self._current: dict[str, list[float]] | None = None

    def install(self, loop: Any) -> None:
        import asyncio.events

        tracer, original_run, original_once = self, asyncio.events.Handle._run, loop._run_once

        def run(handle: Any) -> None:
            current = tracer._current
            if current is None:
                return original_run(handle)
            label = tracer.label(handle)
            started = time.perf_counter()
            try:
                return original_run(handle)
            finally:
                spent = time.perf_counter() - started
                entry = current.setdefault(label, [0, 0.0])
                entry[0] += 1
                entry[1] += spent

        def run_once() -> None:
            tracer._current = {}
            started = time.perf_counter()
            try:
                original_once()
            finally:
                current, tracer._current = tracer._current, None
                busy = sum(v[1] for v in current.values())
                for label, (count, spent) in current.items():
                    total = tracer.totals.setdefault(label, [0, 0.0])
                    total[0] += count
                    total[1] += spent
                if busy > tracer.threshold_s:
                    tracer.slow.append((started, busy, current))

        asyncio.events.Handle._run = run  # type: ignore[method-assign]
        loop._run_once = run_once
        LoopTracer.active = self

    def label(self, handle: Any) -> str:
        import asyncio

        callback = handle._callback
        task = getattr(callback, "__self__", None)
        if not isinstance(task, asyncio.Task):
            return f"callback {getattr(callback, '__qualname__', type(callback).__name__)}"
        agen = self.generators.get(task)
        where = None
        obj = agen.ag_await if agen is not None else task.get_coro()
        while obj is not None and hasattr(obj, "cr_frame"):
            frame = obj.cr_frame
            if frame is not None and "carbon_sensors/" in frame.f_code.co_filename:
                where = f"{frame.f_code.co_qualname}:{frame.f_lineno}"
            obj = obj.cr_await
        if where is None:
            coro = task.get_coro()
            name = getattr(coro, "__qualname__", type(coro).__name__)
            return f"task {name}" if agen is None else "trigger (no package frame)"
        return f"trigger resumed in {where}"

    def report(self, start: float, end: float, top: int) -> dict[str, Any]:
        slow = sorted((s for s in self.slow if start <= s[0] <= end), key=lambda s: -s[1])[:top]
        return {
            "threshold_ms": self.threshold_s * 1000,
            "slow_iterations": [
                {"at_s": round(t - start, 3), "busy_ms": round(busy * 1000, 1), "callbacks": sum(v[0] for v in parts.values()),
                 "by_kind": {k: {"count": v[0], "ms": round(v[1] * 1000, 1), "us_each": round(v[1] / v[0] * 1e6, 1)}
                             for k, v in sorted(parts.items(), key=lambda kv: -kv[1][1])[:6]}}
                for t, busy, parts in slow
            ],
        }

    def totals_report(self, top: int) -> dict[str, Any]:
        rows = sorted(self.totals.items(), key=lambda kv: -kv[1][1])[:top]
        return {k: {"count": v[0], "ms": round(v[1] * 1000, 1), "us_each": round(v[1] / v[0] * 1e6, 1)} for k, v in rows}


class GcLog:
    """Every cyclic-garbage-collector run: (perf_counter at start, seconds, generation, objects collected)."""

    def __init__(self) -> None:
        self.runs: list[tuple[float, float, int, int]] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.runs.append((self._started, time.perf_counter() - self._started, info["generation"], info["collected"]))

    def window(self, start: float, end: float) -> dict[str, Any]:
        runs = [r for r in self.runs if start <= r[0] <= end]
        by_gen = Counter(r[2] for r in runs)
        longest = max(runs, key=lambda r: r[1], default=None)
        return {
            "collections_by_generation": {str(g): by_gen.get(g, 0) for g in (0, 1, 2)},
            "longest_ms_by_generation": {str(g): round(max((r[1] for r in runs if r[2] == g), default=0.0) * 1000, 2)
                                         for g in (0, 1, 2)},
            "longest_ms": None if longest is None else round(longest[1] * 1000, 2),
            "longest_generation": None if longest is None else longest[2],
            "gen2_ms": [round(r[1] * 1000, 1) for r in runs if r[2] == 2],
            "total_ms": round(sum(r[1] for r in runs) * 1000, 1),
        }


class DecisionLog:
    """Counts every decision any gate makes, per NESO slot of ``decided_at``: O(1) per decision and per query."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.total = 0
        self.by_slot: Counter[int] = Counter()
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.statuses: Counter[str] = Counter()

    def __call__(self, decision: Any) -> None:
        now = time.perf_counter()
        slot = int(decision.decided_at.timestamp()) // SLOT_S
        self.total += 1
        self.by_slot[slot] += 1
        self.first.setdefault(slot, now)
        self.last[slot] = now
        self.statuses[decision.status] += 1


def carbon_kwargs(i: int, zones: int, url: str, submitted: datetime, check_interval_s: float) -> dict[str, Any]:
    """The kwargs ``CarbonGateMixin.trigger`` gives a ``CarbonWindowTrigger``, serialised and back (as stored)."""
    import inspect

    from carbon_sensors.planning import Policy
    from carbon_sensors.triggers.carbon import CarbonWindowTrigger

    kwargs: dict[str, Any] = {
        "zones": [f"GB-{i % zones}"],
        "deadline": (submitted + timedelta(hours=8)).isoformat(),
        "expected_duration_s": 3600.0,
        "submitted_at": submitted.isoformat(),
        "source": {"kind": "neso", "region_id": i % zones + 1, "postcode": None, "base_url": url,
                   "connect_timeout_s": 5.0, "read_timeout_s": 20.0},
        "policy": Policy().to_dict(),
        "on_source_error": "run_now",
        "check_interval_s": float(check_interval_s),
        "dag_id": f"bench_dag_{i // 100}",
        "task_id": "wait_for_clean_power",
        "run_id": f"scheduled__2026-06-15T00:00:00+00:00_{i}",
        "map_index": -1,
        "intensity_at_submission": None,
    }
    if "fallbacks" in inspect.signature(CarbonWindowTrigger.__init__).parameters:
        kwargs["fallbacks"] = []
    return json.loads(json.dumps(kwargs))


async def consume(trigger: Any, fired: list) -> None:
    """What ``TriggerRunner.run_trigger`` does with a trigger: iterate its events."""
    events = trigger.run()
    if LoopTracer.active is not None:
        import asyncio

        LoopTracer.active.generators[asyncio.current_task()] = events
    async for event in events:
        fired.append(event)


async def start_triggers(make: Any, n: int, fired: list) -> list:
    """Create ``n`` triggers and their tasks the way ``TriggerRunner.create_triggers`` does."""
    import asyncio

    tasks = []
    for i in range(n):
        await asyncio.sleep(0)
        trigger = make(i)
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(consume(trigger, fired), name=f"bench-{type(trigger).__name__}-{i}"))
    return tasks


async def wait_until(predicate: Any, timeout_s: float, what: str) -> float:
    import asyncio

    started = time.perf_counter()
    while not predicate():
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError(f"{what}: not done after {timeout_s:.0f} s")
        await asyncio.sleep(0.02)
    return time.perf_counter() - started


async def cancel(tasks: list) -> None:
    import asyncio

    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _short(filename: str) -> str:
    return filename.replace(str(ROOT) + "/", "").split("site-packages/")[-1].split("/lib/python3")[-1]


def attribute(diff: list, n: int, top: int) -> list[dict[str, Any]]:
    """Retained bytes per waiting trigger by the line that allocated them, attributed to our code.

    Each allocation (traced with its whole stack) is charged to the innermost frame in
    ``carbon_sensors/`` (or, where the package is not on the stack, in the benchmark's trigger
    wrapper, Airflow or asyncio); ``via`` is the innermost frame itself (e.g. json or dataclasses).
    """
    import linecache

    sites: dict[tuple[str, str], list[int]] = {}
    for stat in diff:
        if stat.size_diff == 0:
            continue
        frames = list(reversed(stat.traceback))  # most recent first
        ours = next((f for f in frames if "carbon_sensors/" in f.filename), None)
        ours = ours or next((f for f in frames if "bench/" in f.filename or "airflow/" in f.filename), frames[0])
        site = f"{_short(ours.filename)}:{ours.lineno}"
        via = f"{_short(frames[0].filename)}:{frames[0].lineno}"
        entry = sites.setdefault((site, via if via != site else ""), [0, 0])
        entry[0] += stat.size_diff
        entry[1] += stat.count_diff
    rows = []
    for (site, via), (size, count) in sorted(sites.items(), key=lambda kv: -kv[1][0])[:top]:
        path, line = site.rsplit(":", 1)
        code = linecache.getline(str(ROOT / path), int(line)).strip() if not path.startswith("/") else ""
        rows.append({"where": site, "code": code[:100], "via": via, "bytes_per_trigger": round(size / n, 1),
                     "blocks_per_trigger": round(count / n, 2)})
    return rows


async def close_clients(triggers: list) -> None:
    """Close the HTTP clients the sources opened (the first to miss the cache per zone and slot)."""
    for trigger in triggers:
        client = getattr(trigger.gate.source, "_client", None)
        if client is not None and getattr(client, "_client", None) is not None:
            await client.aclose()
    triggers.clear()


async def run(args: argparse.Namespace, server: ForecastServer) -> dict[str, Any]:
    import asyncio
    import gc

    from airflow.providers.standard.triggers.temporal import DateTimeTrigger

    from carbon_sensors.clock import set_default_clock
    from carbon_sensors.gate import add_decision_listener, remove_decision_listener
    from carbon_sensors.signals.cache import DEFAULT_CACHE
    from carbon_sensors.testing import CompressedClock
    from carbon_sensors.triggers.carbon import CarbonWindowTrigger

    n, zones = args.triggers, args.zones
    decisions = DecisionLog()
    add_decision_listener(decisions)
    fired: list = []
    dt_made: list = []
    made: list = []  # every carbon trigger (the tasks hold them anyway; 8 B each here, as in dt_made)

    def make_carbon(i: int, submitted: datetime) -> Any:
        trigger = CarbonWindowTrigger(**carbon_kwargs(i, zones, server.url, submitted, args.check_interval_s))
        made.append(trigger)
        return trigger

    def make_datetime(i: int) -> Any:
        trigger = DateTimeTrigger(moment=datetime.now(UTC) + timedelta(hours=6, seconds=i % 600))
        dt_made.append(trigger)
        return trigger

    async def reset() -> None:
        await close_clients(made)
        DEFAULT_CACHE.clear()
        decisions.clear()
        gc.collect()

    # The simulated day starts 1 minute after a half-hour boundary, so each refresh crosses one NESO slot.
    sim_start = datetime(2026, 6, 15, 0, 1, tzinfo=UTC)
    slot0 = int(sim_start.timestamp()) // SLOT_S

    log("warm-up")
    set_default_clock(CompressedClock(sim_start, factor=1.0, running=True))
    warm_n = 3 * zones
    warm = await start_triggers(lambda i: make_carbon(i, sim_start), warm_n, fired)
    warm += await start_triggers(make_datetime, warm_n, fired)
    await wait_until(lambda: decisions.total >= warm_n, 60, "warm-up decisions")
    # The trail's first write imports SQLAlchemy and builds the ledger's tables: once per process
    # (about 0.5 MB), not per trigger, so it belongs to the warm-up and not to phase M.
    await wait_until(lambda: _trail_queued() == 0, 120, "the warm-up's decision trail to drain")
    await cancel(warm)
    del warm
    dt_made.clear()
    await reset()
    full_collections = {"no_triggers": time_full_collections()}

    # ---------------------------------------------------------------- phase M: memory
    log(f"phase M: {n} DateTimeTrigger, then {n} CarbonWindowTrigger, under tracemalloc")
    set_default_clock(CompressedClock(sim_start, factor=1.0, running=True))  # real speed: nothing refreshes in phase M
    memory, dt_tasks, carbon_m = await measure_memory(
        n, 1, lambda i: make_carbon(i, sim_start), make_datetime, decisions, fired, server, args.top)
    await cancel(carbon_m)
    del carbon_m
    await reset()
    n_attr = min(n, args.attribution_triggers)
    log(f"phase M: where the bytes go, {n_attr} more of each with {TRACE_FRAMES}-frame stacks")
    attr, dt_attr, carbon_attr = await measure_memory(
        n_attr, TRACE_FRAMES, lambda i: make_carbon(i, sim_start), make_datetime, decisions, fired, server, args.top)
    await cancel(dt_attr + carbon_attr)
    del dt_attr, carbon_attr
    await reset()
    memory["attribution"] = {"triggers": n_attr, "carbon_by_site": attr["carbon_by_site"],
                             "datetime_by_site": attr["datetime_by_site"],
                             "bytes_per_trigger": {"datetime": attr["datetime_trigger_bytes_per_trigger"],
                                                   "carbon": attr["carbon_trigger_bytes_per_trigger"]}}
    log(f"phase M: datetime {memory['datetime_trigger_bytes_per_trigger']} B, carbon "
        f"{memory['carbon_trigger_bytes_per_trigger']} B per trigger (ratio {memory['ratio']})")

    full_collections[f"{n}_datetime_triggers"] = time_full_collections()

    # ---------------------------------------------------------------- phase S: requests and stalls
    factor = SLOT_S / args.refresh_after_s
    log(f"phase S: {n} CarbonWindowTrigger on a clock {factor:g}x real speed, {args.refreshes} refresh(es) "
        f"every ~{args.refresh_after_s:g} s ({n} DateTimeTrigger still waiting beside them)")
    tracer = None
    if args.trace_loop:
        tracer = LoopTracer()
        tracer.install(asyncio.get_running_loop())
    gc_log = GcLog()
    gc.callbacks.append(gc_log)
    heartbeat = Heartbeat()
    beat = asyncio.create_task(heartbeat.run())
    await asyncio.sleep(0.5)
    idle = heartbeat.window(0, time.perf_counter())
    counts_before = await asyncio.to_thread(server.stats)
    clock = CompressedClock(sim_start, factor=factor, running=True)
    set_default_clock(clock)
    t_start = time.perf_counter()
    carbon_s = await start_triggers(lambda i: make_carbon(i, clock.now()), n, fired)
    limit = 600 + 2 * args.refresh_after_s
    await wait_until(lambda: decisions.by_slot[slot0] >= n, limit, "phase S first decisions")
    t_started = decisions.last[slot0]
    log(f"phase S: all {n} decided in {t_started - t_start:.1f} s")
    if t_started - t_start > 0.9 * args.refresh_after_s:
        log("WARNING: the start took most of the refresh interval; raise --refresh-after-s")
    windows: list[tuple[str, float, float]] = [("start", t_start, t_started)]
    traces: dict[str, Any] = {}
    profiler = None
    for k in range(1, args.refreshes + 1):
        await wait_until(lambda k=k: decisions.by_slot[slot0 + k] > 0, limit, f"refresh {k} start")
        if tracer is not None:
            traces["before refresh 1" if k == 1 else f"between refreshes {k - 1} and {k}"] = tracer.totals_report(args.top)
            tracer.totals = {}
        if args.profile and k == 1:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        await wait_until(lambda k=k: decisions.by_slot[slot0 + k] >= n, limit, f"refresh {k}")
        if profiler is not None and k == 1:
            profiler.disable()
        windows.append((f"refresh {k}", decisions.first[slot0 + k], decisions.last[slot0 + k]))
        if tracer is not None:
            traces[f"refresh {k}"] = tracer.totals_report(args.top)
            tracer.totals = {}
        log(f"phase S: refresh {k} done ({windows[-1][2] - windows[-1][1]:.1f} s)")
    await asyncio.sleep(0.3)
    counts_after = await asyncio.to_thread(server.stats)
    heartbeat.stop = True
    await beat
    gc.callbacks.remove(gc_log)
    statuses = dict(decisions.statuses)
    tracked = len(gc.get_objects())
    full_collections[f"{n}_datetime_and_{n}_carbon_triggers"] = time_full_collections()
    await cancel(carbon_s + dt_tasks)
    await close_clients(made)
    remove_decision_listener(decisions)

    new = {p: c - counts_before.get(p, 0) for p, c in counts_after.items() if c - counts_before.get(p, 0)}
    phases = []
    for k, (name, t0, t1) in enumerate(windows):
        stamp = datetime.fromtimestamp((slot0 + k) * SLOT_S, UTC).strftime("%Y-%m-%dT%H:%MZ")
        phases.append({
            "phase": name,
            "neso_slot": stamp,
            "upstream_requests": sum(c for p, c in new.items() if f"/{stamp}/" in p),
            "window_s": round(t1 - t0, 3),
            "stall": heartbeat.window(t0, t1, gc_log.runs),
            "gc": gc_log.window(t0, t1),
            **({"loop_trace": tracer.report(t0, t1, 4)} if tracer is not None else {}),
        })
    refreshes = [p for p in phases if p["phase"].startswith("refresh")]
    result: dict[str, Any] = {
        "triggers": n,
        "zones": zones,
        "clock_factor": factor,
        "check_interval_s": {"sim": args.check_interval_s, "real": round(args.check_interval_s / factor, 3)},
        "python": sys.version.split()[0],
        "cpus": _cpus(),
        "requests": {
            "per_refresh": [p["upstream_requests"] for p in refreshes],
            "at_start": phases[0]["upstream_requests"],
            "unexpected": sum(new.values()) - sum(p["upstream_requests"] for p in phases),
            "target": zones,
            "by_path": new,
        },
        "memory": memory,
        "stalls": {
            "heartbeat_ms": HEARTBEAT_S * 1000,
            "target_ms": 50.0,
            "triggerer_warns_ms": 200.0,
            "max_during_refresh_ms": max((p["stall"]["max_ms"] or 0.0) for p in refreshes),
            "max_during_start_ms": phases[0]["stall"]["max_ms"],
            "max_during_refresh_net_of_gc_ms": max((p["stall"]["max_net_of_gc_ms"] or 0.0) for p in refreshes),
            # A full collection pauses every trigger in the process for as long as the whole heap takes to
            # scan (full_collection_pause below); how many refreshes one fell into, and the stalls elsewhere.
            "refreshes_with_full_gc": sum(1 for p in refreshes if p["stall"]["full_gcs"]),
            "max_during_refresh_without_full_gc_ms": max((p["stall"]["max_without_full_gc_ms"] or 0.0)
                                                         for p in refreshes),
            "idle_before": idle,
            "whole_phase": heartbeat.window(t_start, time.perf_counter(), gc_log.runs),
            "gc_whole_phase": gc_log.window(t_start, time.perf_counter()),
            "gc_tracked_objects_at_end": tracked,
            "gc_thresholds": list(gc.get_threshold()),
            # What a full collection pauses the loop for, whoever triggers it: the floor any stall
            # target meets once a collection falls inside a refresh.
            "full_collection_pause": full_collections,
        },
        "phases": phases,
        "decision_statuses_phase_s": statuses,
        "events_fired": len(fired),
    }
    if tracer is not None:
        result["loop_trace_callbacks"] = traces
    if profiler is not None:
        result["profile_refresh_1"] = _profile_table(profiler, args.top, n)
    return result


async def measure_memory(n: int, frames: int, make_carbon: Any, make_datetime: Any, decisions: DecisionLog,
                         fired: list, server: ForecastServer, top: int) -> tuple[dict[str, Any], list, list]:
    """Start n DateTimeTriggers, then n carbon triggers, under tracemalloc; bytes and GC objects per trigger."""
    import asyncio
    import gc
    import tracemalloc

    tracemalloc.start(frames)
    gc.collect()
    objects0, snap0 = len(gc.get_objects()), tracemalloc.take_snapshot()
    t0 = time.perf_counter()
    dt_tasks = await start_triggers(make_datetime, n, fired)
    await asyncio.sleep(0.2)
    dt_start_s = time.perf_counter() - t0
    gc.collect()
    objects_dt, snap_dt = len(gc.get_objects()), tracemalloc.take_snapshot()
    before = server.stats()
    t0 = time.perf_counter()
    carbon = await start_triggers(make_carbon, n, fired)
    await wait_until(lambda: decisions.total >= n, 900, "first decisions under tracemalloc")
    await asyncio.sleep(0.2)
    carbon_start_s = time.perf_counter() - t0
    # Decisions queued for the decision trail are written within seconds: held memory in transit, not
    # memory a waiting trigger keeps. Measure once the writer has drained them.
    await wait_until(lambda: _trail_queued() == 0, 120, "the decision trail's queue to drain")
    gc.collect()
    objects_c, snap_c = len(gc.get_objects()), tracemalloc.take_snapshot()
    tracemalloc.stop()
    after = server.stats()
    group = "lineno" if frames == 1 else "traceback"
    dt_diff, c_diff = snap_dt.compare_to(snap0, group), snap_c.compare_to(snap_dt, group)
    dt_bytes, c_bytes = sum(s.size_diff for s in dt_diff), sum(s.size_diff for s in c_diff)
    out: dict[str, Any] = {
        "datetime_trigger_bytes_per_trigger": round(dt_bytes / n),
        "carbon_trigger_bytes_per_trigger": round(c_bytes / n),
        "ratio": round(c_bytes / dt_bytes, 3) if dt_bytes > 0 else None,
        "target_ratio_max": 1.5,
        "gc_tracked_objects_per_trigger": {"datetime": round((objects_dt - objects0) / n, 1),
                                           "carbon": round((objects_c - objects_dt) / n, 1)},
        "carbon_waiting": decisions.statuses["wait"],
        "upstream_requests_for_first_decisions": sum(after.values()) - sum(before.values()),
        "start_s_under_tracemalloc": {"datetime": round(dt_start_s, 2), "carbon": round(carbon_start_s, 2)},
    }
    if frames > 1:
        out["carbon_by_site"] = attribute(c_diff, n, top)
        out["datetime_by_site"] = attribute(dt_diff, n, 8)
    return out, dt_tasks, carbon


def _trail_queued() -> int:
    from carbon_sensors.plugins import trail

    return trail.decision_writer().queued if trail.recording_enabled() else 0


def time_full_collections(rounds: int = 3) -> dict[str, Any]:
    """Median and max pause of ``gc.collect()`` (a full collection) in the process as it is now."""
    import gc
    import statistics

    pauses = []
    for _ in range(rounds):
        t = time.perf_counter()
        gc.collect()
        pauses.append((time.perf_counter() - t) * 1000)
    return {"tracked_objects": len(gc.get_objects()), "median_ms": round(statistics.median(pauses), 1),
            "max_ms": round(max(pauses), 1)}


def tracer_totals(totals: dict[str, list[float]] | None, top: int) -> dict[str, Any]:
    rows = sorted((totals or {}).items(), key=lambda kv: -kv[1][1])[:top]
    return {k: {"count": v[0], "ms": round(v[1] * 1000, 1), "us_each": round(v[1] / v[0] * 1e6, 1)} for k, v in rows}


def _cpus() -> int | None:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def _profile_table(profiler: Any, top: int, decisions: int) -> dict[str, Any]:
    import pstats

    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, name), (_cc, calls, own, cumulative, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        short = filename.replace(str(ROOT) + "/", "").split("site-packages/")[-1]
        rows.append({"function": f"{short}:{line}({name})", "calls": calls, "own_ms": round(own * 1000, 1),
                     "cumulative_ms": round(cumulative * 1000, 1),
                     "cumulative_us_per_decision": round(cumulative * 1e6 / decisions, 1)})
    total = sum(r["own_ms"] for r in rows)
    return {
        "total_own_ms": round(total, 1),
        "by_cumulative": sorted(rows, key=lambda r: -r["cumulative_ms"])[:top],
        "by_own": sorted(rows, key=lambda r: -r["own_ms"])[:top],
    }


def summary(result: dict[str, Any]) -> str:
    zones, req, mem, stalls = result["zones"], result["requests"], result["memory"], result["stalls"]
    ok_req = bool(req["per_refresh"]) and all(v == zones for v in req["per_refresh"])
    ok_mem = mem["ratio"] is not None and mem["ratio"] <= 1.5
    stall = stalls["max_during_refresh_ms"]
    full = list(stalls["full_collection_pause"].values())
    ok_stall = stall < 50.0
    return (
        f"trigger_scale: {result['triggers']} triggers, {zones} zones | upstream requests per refresh "
        f"{req['per_refresh']} (start {req['at_start']}; target {zones}) {'PASS' if ok_req else 'FAIL'} | memory per "
        f"waiting trigger {mem['carbon_trigger_bytes_per_trigger']} B vs DateTimeTrigger "
        f"{mem['datetime_trigger_bytes_per_trigger']} B = {mem['ratio']}x (target <= 1.5x) {'PASS' if ok_mem else 'FAIL'} | "
        f"longest stall during refresh {stall} ms (start {stalls['max_during_start_ms']} ms; target < 50 ms) "
        f"{'PASS' if ok_stall else 'FAIL'} ({stalls['refreshes_with_full_gc']} of {len(req['per_refresh'])} refreshes "
        f"had a full GC; {stalls['max_during_refresh_without_full_gc_ms']} ms in the rest, young GCs included) | "
        f"a full GC pauses {full[-1]['median_ms']} ms ({full[1]['median_ms']} ms with only the DateTimeTriggers)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triggers", type=int, default=10_000, help="carbon triggers, and as many DateTimeTriggers")
    parser.add_argument("--zones", type=int, default=10, help="zones = NESO regions 1..zones (at most 18)")
    parser.add_argument("--refresh-after-s", type=float, default=20.0,
                        help="real seconds until the 30-minute NESO refresh (sets the clock's speed-up)")
    parser.add_argument("--refreshes", type=int, default=3,
                        help="refreshes to measure; a gen-2 garbage collection may fall into any of them (default 3)")
    parser.add_argument("--attribution-triggers", type=int, default=1000,
                        help="triggers of each kind for the per-site memory table (deep stacks are slow)")
    parser.add_argument("--check-interval-s", type=float, default=300.0, help="the triggers' check_interval_s (sim s)")
    parser.add_argument("--profile", action="store_true", help="cProfile the refresh and report the costliest calls")
    parser.add_argument("--trace-loop", action="store_true",
                        help="time every loop callback and say what the slow iterations ran (slows the loop a little)")
    parser.add_argument("--top", type=int, default=12, help="rows in the allocation and profile tables")
    parser.add_argument("--json-out", type=Path, help="also write the JSON result to this file")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    if not 1 <= args.zones <= 18:
        parser.error("--zones must be 1..18 (the NESO region ids)")
    if args.triggers < args.zones:
        parser.error("--triggers must be at least --zones")

    import os
    import tempfile

    own_home = None if "AIRFLOW_HOME" in os.environ else tempfile.mkdtemp(prefix="trigger-scale-airflow-")
    if own_home:
        os.environ["AIRFLOW_HOME"] = own_home
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import asyncio
    import logging

    started = time.perf_counter()
    server = ForecastServer()
    try:
        import airflow.providers.standard.triggers.temporal  # noqa: F401 - imported before timing

        import carbon_sensors.triggers.carbon  # noqa: F401

        logging.getLogger().setLevel(logging.WARNING)
        result = asyncio.run(run(args, server))
    finally:
        server.close()
        if own_home:
            import shutil

            shutil.rmtree(own_home, ignore_errors=True)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    text = json.dumps(result, indent=1)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    print(text)
    print(summary(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
