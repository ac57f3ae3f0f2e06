"""Vendor requests per forecast refresh across a deployment: per-process caches vs the shared cache.

Run from the repository root::

    .venv/bin/python bench/deployment_requests.py [--zones 10] [--triggerers 2] [--workers 20] [--refreshes 4]

It prints a JSON document on stdout and, as the last line, a one-line summary with PASS/FAIL per
target; the exit code is 0 either way (a measurement, not a test). About 1-2 minutes on 2 cores.
Targets (the issue): with the shared cache, vendor fetches per refresh across the deployment =
number of zones (+ at most one per process on a cold start of the store).

Method
------
*Vendor.* A local Electricity Maps-shaped server on 127.0.0.1 (``/v3/carbon-intensity/forecast`` and
``/latest``, any zone, keyed) counts its requests; a "fetch" is one ``/forecast`` request (each comes
with one ``/latest``: Electricity Maps costs two requests per fetch).

*Deployment.* ``--triggerers`` long-lived processes (each holds gates on every zone, with one
per-process cache for the whole run) and ``--workers`` worker processes (each runs a task of zone
``i % zones`` per refresh and, as a freshly started Airflow task process does, starts with an empty
per-process cache). All are real OS processes, started once; at each refresh the parent releases
them together and every process asks :class:`~carbon_sensors.signals.electricitymaps.ElectricityMapsSource`
for its zones at the same simulated ``now`` (one hour apart per refresh: a new forecast slot).
Modes, in one run on the same processes: ``per_process`` (today: ``ForecastCache()`` only),
``shared_sql`` (the shared cache on PostgreSQL, a fresh database on ``--postgres``, else an SQLite
file) and ``shared_redis`` (Redis ``--redis``, its ``carbon_sensors:*`` keys deleted before and
after; skipped when Redis does not answer). Each shared mode starts on an empty store (cold start).

*Start-up cost of a cache hit.* A fresh interpreter (``python -c``), timed inside it: importing
carbon_sensors and the source, then the first ``fetch`` through the shared cache where the row is
already stored (this includes importing SQLAlchemy/psycopg or redis-py and connecting), against the
first ``fetch`` from the (local, so unusually fast) vendor with the per-process cache only. Median
of ``--startup-runs``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

T0 = datetime(2026, 6, 15, tzinfo=UTC)
KEY = "bench-key"
ZONES = ["DE", "FR", "GB", "ES", "IT", "NL", "PL", "SE", "DK-DK2", "NO-NO1", "BE", "AT", "CH", "PT", "FI", "CZ"]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the vendor ------------------------------------------------------------------------------------


def serve() -> tuple[ThreadingHTTPServer, Counter]:
    counts: Counter = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server calls
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            zone = query.get("zone", ["?"])[0]
            with lock:
                counts["keyed" if self.headers.get("auth-token") == KEY else "refused"] += 1
                counts[("forecast" if url.path.endswith("/forecast") else "latest", zone)] += 1
            start = T0 - timedelta(hours=2)
            stamp = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.000Z")  # noqa: E731
            if url.path.endswith("/latest"):
                body = {"zone": zone, "carbonIntensity": 300, "datetime": stamp(start), "updatedAt": stamp(start),
                        "createdAt": stamp(start), "emissionFactorType": "lifecycle", "isEstimated": True,
                        "estimationMethod": "TIME_SLICER_AVERAGE"}
            else:
                body = {"zone": zone, "updatedAt": stamp(start), "forecast": [
                    {"carbonIntensity": 300 - (h % 24) * 5, "datetime": stamp(start + timedelta(hours=h))}
                    for h in range(48)]}
            raw = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, counts


# -- one deployment process --------------------------------------------------------------------------


def process_main(conn, role: str, zones: list[str], vendor: str) -> None:
    """Runs refreshes on command: ("run", mode, store, refresh) -> ("done", stats)."""
    import asyncio

    from carbon_sensors.signals.cache import ForecastCache
    from carbon_sensors.signals.credentials import Credentials
    from carbon_sensors.signals.electricitymaps import ElectricityMapsSource
    from carbon_sensors.signals.shared_cache import shared_cache_from_setting

    shared_by_store: dict[str, object] = {}
    long_lived: dict[str, ForecastCache] = {}
    conn.send(("ready", os.getpid()))
    while True:
        message = conn.recv()
        if message[0] == "stop":
            return
        _, mode, store, refresh, go_at = message
        shared = None
        if store:
            shared = shared_by_store.get(store) or shared_by_store.setdefault(
                store, shared_cache_from_setting(store, timeout_s=5.0, wait_s=10.0))
        if role == "triggerer":  # one cache for the process's whole life (per mode)
            cache = long_lived.get(mode) or long_lived.setdefault(mode, ForecastCache(shared=shared))
        else:  # a freshly started worker process: an empty per-process cache
            cache = ForecastCache(shared=shared)
        source = ElectricityMapsSource(base_url=vendor, credentials=Credentials(api_key=KEY), cache=cache)
        now = T0 + timedelta(hours=refresh, minutes=5)

        async def refresh_all(source: ElectricityMapsSource, now: datetime) -> None:
            await asyncio.gather(*(source.fetch(z, now, now + timedelta(hours=12), now=now) for z in zones))

        time.sleep(max(0.0, go_at - time.time()))
        began = time.perf_counter()
        asyncio.run(refresh_all(source, now))
        conn.send(("done", {"s": time.perf_counter() - began, **(shared.stats if shared else {})}))


# -- start-up cost -------------------------------------------------------------------------------------

STARTUP = r'''
import time, sys
t0 = time.perf_counter()
import asyncio
from datetime import datetime, timedelta, timezone
from carbon_sensors.signals.cache import ForecastCache
from carbon_sensors.signals.credentials import Credentials
from carbon_sensors.signals.electricitymaps import ElectricityMapsSource
t1 = time.perf_counter()
store = sys.argv[2]
shared = None
if store:
    from carbon_sensors.signals.shared_cache import shared_cache_from_setting
    shared = shared_cache_from_setting(store, timeout_s=5.0)
source = ElectricityMapsSource(base_url=sys.argv[1], credentials=Credentials(api_key="bench-key"),
                               cache=ForecastCache(shared=shared))
now = datetime(2026, 6, 15, 0, 5, tzinfo=timezone.utc) + timedelta(hours=int(sys.argv[3]))
asyncio.run(source.fetch("DE", now, now + timedelta(hours=12), now=now))
t2 = time.perf_counter()
print({"import_ms": (t1 - t0) * 1000, "first_fetch_ms": (t2 - t1) * 1000,
       "hit": bool(shared and shared.stats["hits"])})
'''


def startup_cost(vendor: str, store: str | None, refresh: int, runs: int) -> dict:
    import ast

    samples = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", STARTUP, vendor, store or "", str(refresh)], capture_output=True,
                             text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        samples.append(ast.literal_eval(out.stdout.strip().splitlines()[-1]))
    return {"import_ms": round(statistics.median(s["import_ms"] for s in samples), 1),
            "first_fetch_ms": round(statistics.median(s["first_fetch_ms"] for s in samples), 1),
            "hits": sum(s["hit"] for s in samples), "runs": runs}


# -- stores ---------------------------------------------------------------------------------------------


def postgres_store(admin_url: str):
    try:
        import psycopg
        import sqlalchemy as sa

        url = sa.engine.make_url(admin_url)
        admin = psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, password=url.password,
                                dbname=url.database, autocommit=True, connect_timeout=3)
    except Exception as exc:  # noqa: BLE001 - no PostgreSQL: the SQLite file stands in
        _say(f"no PostgreSQL ({type(exc).__name__}); the SQL mode uses an SQLite file")
        return None, None
    name = f"cs_bench_cache_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

    return url.set(database=name).render_as_string(hide_password=False), drop


def redis_store(url: str):
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - no Redis: that mode is skipped
        _say(f"no Redis at {url} ({type(exc).__name__}); shared_redis skipped")
        return None, None

    def clear() -> None:
        for key in client.scan_iter("carbon_sensors:*"):
            client.delete(key)

    clear()
    return url, clear


# -- main -----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zones", type=int, default=10)
    parser.add_argument("--triggerers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--refreshes", type=int, default=4)
    parser.add_argument("--startup-runs", type=int, default=5)
    parser.add_argument("--postgres", default=os.environ.get("CS_TEST_POSTGRES_URL",
                                                             "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--redis", default=os.environ.get("CS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))
    args = parser.parse_args()
    zones = ZONES[:args.zones]
    began = time.monotonic()
    server, counts = serve()
    vendor = f"http://127.0.0.1:{server.server_address[1]}"
    cleanups = []
    tmp = f"/tmp/cs-bench-cache-{uuid.uuid4().hex[:8]}.db"
    pg_url, drop = postgres_store(args.postgres)
    if drop:
        cleanups.append(drop)
    redis_url, clear = redis_store(args.redis)
    if clear:
        cleanups.append(clear)
    modes = {"per_process": None, "shared_sql": pg_url or f"sqlite:///{tmp}"}
    if redis_url:
        modes["shared_redis"] = redis_url

    ctx = mp.get_context("spawn")
    roles = [("triggerer", zones)] * args.triggerers + [("worker", [zones[i % len(zones)]]) for i in range(args.workers)]
    procs = []
    for role, its_zones in roles:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=process_main, args=(child, role, its_zones, vendor), daemon=True)
        proc.start()
        procs.append((proc, parent))
    for _, pipe in procs:
        assert pipe.recv()[0] == "ready"
    _say(f"{len(procs)} processes ready after {time.monotonic() - began:.0f} s")

    results: dict[str, dict] = {}
    try:
        for mode, store in modes.items():
            per_refresh, latencies, cold_extra = [], [], 0
            for refresh in range(args.refreshes):
                before = Counter(counts)
                go_at = time.time() + 0.5  # every process starts its refresh at the same instant
                for _, pipe in procs:
                    pipe.send(("run", mode, store, refresh, go_at))
                stats = [pipe.recv()[1] for _, pipe in procs]
                fetches = sum(v for k, v in counts.items() if isinstance(k, tuple) and k[0] == "forecast") - sum(
                    v for k, v in before.items() if isinstance(k, tuple) and k[0] == "forecast")
                requests = sum(v for k, v in counts.items() if isinstance(k, tuple)) - sum(
                    v for k, v in before.items() if isinstance(k, tuple))
                per_refresh.append({"fetches": fetches, "requests": requests,
                                    "slowest_process_ms": round(max(s["s"] for s in stats) * 1000, 1)})
                latencies += [s["s"] for s in stats]
                if refresh == 0:
                    cold_extra = fetches - len(zones)
            results[mode] = {
                "store": None if store is None else ("postgresql" if store.startswith("postgresql") else
                                                     "redis" if store.startswith("redis") else "sqlite"),
                "per_refresh": per_refresh,
                "fetches_total": sum(r["fetches"] for r in per_refresh),
                "requests_total": sum(r["requests"] for r in per_refresh),
                "first_refresh_fetches_over_zones": cold_extra,
                "median_process_refresh_ms": round(statistics.median(latencies) * 1000, 1),
            }
            _say(f"{mode}: fetches per refresh {[r['fetches'] for r in per_refresh]}")
        startup = {"per_process_vendor_fetch": startup_cost(vendor, None, 0, args.startup_runs)}
        for mode in ("shared_sql", "shared_redis"):
            if mode in modes:  # refresh 0's rows are in the store: a fresh process gets a hit
                startup[f"{mode}_hit"] = startup_cost(vendor, modes[mode], 0, args.startup_runs)
    finally:
        for _, pipe in procs:
            try:
                pipe.send(("stop",))
            except OSError:
                pass
        for proc, _ in procs:
            proc.join(timeout=10)
        for cleanup in cleanups:
            cleanup()
        server.shutdown()
        if os.path.exists(tmp):
            os.unlink(tmp)

    processes = args.triggerers + args.workers
    targets = {}
    for mode, result in results.items():
        if mode == "per_process":
            continue
        warm = [r["fetches"] for r in result["per_refresh"][1:]]
        targets[mode] = (all(f == len(zones) for f in warm)
                         and len(zones) <= result["per_refresh"][0]["fetches"] <= len(zones) + processes)
    document = {"zones": len(zones), "triggerers": args.triggerers, "workers": args.workers,
                "refreshes": args.refreshes, "modes": results, "startup": startup,
                "vendor_refused": counts["refused"], "targets_met": targets,
                "wall_s": round(time.monotonic() - began, 1)}
    print(json.dumps(document, indent=2))
    per = results["per_process"]["fetches_total"] / args.refreshes
    summary = "; ".join(
        f"{mode} {results[mode]['fetches_total'] / args.refreshes:g}/refresh "
        f"(cold +{results[mode]['first_refresh_fetches_over_zones']}) {'PASS' if ok else 'FAIL'}" for mode, ok in targets.items())
    hit = "; ".join(f"{k} {v['first_fetch_ms']:g} ms" for k, v in startup.items())
    print(f"vendor fetches per refresh, {len(zones)} zones, {processes} processes: per-process {per:g}; {summary}. "
          f"Fresh process's first forecast: {hit} (import {startup['per_process_vendor_fetch']['import_ms']:g} ms)")


if __name__ == "__main__":
    main()
