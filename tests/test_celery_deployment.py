"""A CeleryExecutor deployment on Redis with the shared forecast cache: a triggerer and a worker SIGKILLed.

PostgreSQL metadata database, Redis broker (a database number of the test's own on 127.0.0.1:6379,
flushed before and after), scheduler, dag-processor, api-server, two Celery workers and two
triggerers, each its own process stopped by its PID. 300 gated mapped tasks over ten zones read an
Electricity Maps-shaped forecast from a local HTTP server (dirty now, clean a few simulated hours
after the trigger) through the shared forecast cache on the broker's Redis. Triggerer A is SIGKILLed
while the gates wait in both triggerers, and Celery worker B while it runs tasks, once at least one
of them has begun its work: B's pool and its task processes, which Airflow puts in process groups of
their own, die together, as in a crash of B's machine. Every task must succeed and none may start
after its latest start.

Each try's first act writes a marker file (tests/dags_celery/carbon_celery.py), so the ledger is
checked try by try: every try whose work began has exactly one record (a try killed in its work
keeps its ``started`` one), no try has two, every task's last try has one ``success``; the tries
with neither a marker nor a record are those killed before their work began (counted).

The vendor must see one request per zone per refresh across the whole deployment: the forecast
server notes each request with the process that sent it and the refresh (15-minute slot of the
forecast cache's key) it was made for, and each refresh that asks a zone more than once must be
explained by the design's allowances (the cold store) or by what the shared cache logged (a wait
past ``shared_cache_wait_s``, a store warning, a leader whose fetch outlived its lease).

The sentinel sweep of tests/test_ha_triggerers.py is extended to the shared stores: every Redis key
and value of the test's database (the forecasts, the leases, the broker's messages), and the SQL
shared cache's table ``carbon_sensors_forecast_cache`` in the ledger's PostgreSQL database, filled
after the run by a process of the deployment set to ``shared_cache = ledger``.

Slow (about 7-8 minutes on 2 cores): ``pytest -m "" tests/test_celery_deployment.py``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from faulty_server import faulty_server, send_json
from test_ha_triggerers import (  # the HA test's deployment harness, reused as it is
    PG_ADMIN_URL,
    SITECUSTOMIZE,
    Deployment,
    Sweep,
    Window,
    _em_stamp,
    _free_port,
    _say,
    _triggerer_jobs,
    _wait,
)

from carbon_sensors.ledger import RUNS, mask_url
from carbon_sensors.planning import LATEST_START_TOLERANCE
from carbon_sensors.signals.shared_cache import TABLE as SQL_CACHE_TABLE

pytestmark = [
    pytest.mark.integration, pytest.mark.postgres,
]

DAGS = Path(__file__).resolve().parent / "dags_celery"
DAG_ID = "carbon_celery"
ZONES = ["DE", "FR", "GB", "ES", "IT", "NL", "PL", "SE", "BE", "AT"]
PER_ZONE = int(os.environ.get("CS_CELERY_PER_ZONE", "30"))
TASKS = PER_ZONE * len(ZONES)
FACTOR = 60.0  # one simulated minute per real second
SIM_START = datetime(2026, 6, 15, 0, 0, tzinfo=UTC)
WINDOW_AFTER = timedelta(hours=float(os.environ.get("CS_CELERY_WINDOW_H", "2.5")))
WINDOW_LENGTH = timedelta(hours=3)
DEADLINE = SIM_START + timedelta(hours=14)
DIRTY, CLEAN = 320, 60
RUN_TIMEOUT_S = 420
CONN_ID = "carbon_celery_em"
REDIS_DB = int(os.environ.get("CS_CELERY_REDIS_DB", "12"))
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
EM_STEP = timedelta(minutes=15)
WORKER_CONCURRENCY = 8
WAIT_S = 5.0  # shared_cache_wait_s (the default, set explicitly below)
RETRY_S = 30.0  # how long a process leaves a store it found down alone (SharedForecastCache.retry_s)
# A request arriving this long (real seconds) into a refresh may still be the previous refresh's: its
# process read the clock (the cache key's slot) before a lease wait, a Connection lookup, a busy core.
LATE_S = WAIT_S
# What the shared cache logs when a process falls back to fetching for itself.
FALLBACKS = {"wait": "for another process to fetch a forecast into the shared cache",  # one fetch
             "store": "the shared forecast cache at ",  # "... is unavailable": down for RETRY_S; "... holds a": one row
             "overran": "longer than the shared cache's"}  # a leader slower than its lease: one more may lead
TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?)(Z|[+-]\d{2}:?\d{2})?")
# The HA test's compressed clock, and each vendor request naming its process and the refresh it is
# for (headers only this test's server reads): the refresh is the forecast cache key's slot, taken
# from the ``now`` the source was asked with, so a request that reaches the server after the next
# slot began (a busy process) still counts for the refresh that made it, and a zone asked twice
# for one refresh says who asked.
CELERY_SITECUSTOMIZE = SITECUSTOMIZE + '''
if os.environ.get("CS_CELERY_MARKERS"):
    import contextvars

    import httpx

    from carbon_sensors.signals.keyed_http import KeyedHttpSource

    _refresh = contextvars.ContextVar("cs_test_refresh", default=None)
    _send, _fetch = httpx.AsyncClient.send, KeyedHttpSource.fetch

    async def _send_naming_the_process(self, request, **kwargs):
        request.headers["x-cs-test-pid"] = str(os.getpid())
        if _refresh.get() is not None:
            request.headers["x-cs-test-refresh"] = _refresh.get()
        return await _send(self, request, **kwargs)

    async def _fetch_naming_the_refresh(self, zone, start, end, *, now):
        step = self.refresh_interval.total_seconds()
        token = _refresh.set(repr(now.timestamp() // step * step))
        try:
            return await _fetch(self, zone, start, end, now=now)
        finally:
            _refresh.reset(token)

    httpx.AsyncClient.send = _send_naming_the_process
    KeyedHttpSource.fetch = _fetch_naming_the_refresh
'''
# What Airflow's triggerer logs when it drops a trigger another triggerer now holds (or a user acted on).
DROPPED = "Trigger cancelled by user action"
# A process of the deployment with ``shared_cache = ledger``: fetches every zone once through the SQL
# shared cache (table carbon_sensors_forecast_cache in the ledger's database), keyed by the Connection.
SQL_PASS = """
import json, sys
from datetime import timedelta

import carbon_sensors.hooks.carbon  # the Airflow Connection resolver and the [carbon_sensors] options
from carbon_sensors.clock import default_clock
from carbon_sensors.signals import run_sync, source_from_spec
from carbon_sensors.signals.shared_cache import process_shared_cache

spec, zones = json.loads(sys.argv[1]), sys.argv[2].split(",")
source, now = source_from_spec(spec), default_clock().now()
for zone in zones:
    run_sync(source.fetch(zone, now, now + timedelta(hours=3), now=now))
cache = process_shared_cache()
print(json.dumps({"store": type(cache.store).__name__ if cache else None, **(cache.stats if cache else {})}))
"""


def _sim_now(epoch: float) -> datetime:
    return SIM_START + timedelta(seconds=(time.time() - epoch) * FACTOR)


@pytest.fixture
def stores():
    """Two fresh PostgreSQL databases (metadata, ledger) and an empty Redis database, all removed afterwards."""
    psycopg = pytest.importorskip("psycopg")
    redis = pytest.importorskip("redis", reason="redis-py is not installed: pip install 'carbon-sensors[redis]'")
    pytest.importorskip("airflow.providers.celery", reason="pip install apache-airflow-providers-celery")
    url = sa.engine.make_url(PG_ADMIN_URL)
    try:
        admin = psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, password=url.password,
                                dbname=url.database, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server answers at {mask_url(PG_ADMIN_URL)} ({str(exc).strip().splitlines()[0]})")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        admin.close()
        pytest.skip(f"no Redis answers at {REDIS_URL} ({exc})")
    client.flushdb()
    suffix = uuid.uuid4().hex[:10]
    names = [f"cs_celery_airflow_{suffix}", f"cs_celery_ledger_{suffix}"]
    try:
        for name in names:
            admin.execute(f'CREATE DATABASE "{name}"')
            admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit TO off')
        yield [url.set(database=n).render_as_string(hide_password=False) for n in names], client
    finally:
        for name in names:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
        client.flushdb()
        client.close()


def _vendor(epoch: float, key: str, seen: Counter, arrivals: list, window: Window, askers: dict,
            owner: Callable[[int], str], refresh_of: dict):
    """Electricity Maps v3 ``/forecast`` and ``/latest`` for ten zones; notes each forecast request's (zone, time).

    ``askers`` maps each noted request to the process that sent it (``owner`` names a PID), and
    ``refresh_of`` to the refresh (simulated slot start) it was made for.
    """

    def intensity(when: datetime) -> int:
        return CLEAN if when in window else DIRTY

    def answer(_n: int, handler: BaseHTTPRequestHandler) -> None:
        if handler.headers.get("auth-token") != key:
            seen["refused"] += 1
            send_json(handler, {"message": "Unauthorized"}, status=401)
            return
        seen["keyed"] += 1
        url = urlsplit(handler.path)
        zone = parse_qs(url.query).get("zone", [None])[0]
        if zone not in ZONES or not url.path.startswith("/v3/carbon-intensity/"):
            send_json(handler, {"message": f"unknown path or zone: {handler.path}"}, status=404)
            return
        now = _sim_now(epoch)
        slot = datetime.fromtimestamp(now.timestamp() // EM_STEP.total_seconds() * EM_STEP.total_seconds(), UTC)
        if url.path.endswith("/latest"):
            send_json(handler, {"zone": zone, "carbonIntensity": intensity(slot), "datetime": _em_stamp(slot),
                                "updatedAt": _em_stamp(now), "createdAt": _em_stamp(slot),
                                "emissionFactorType": "lifecycle", "isEstimated": False, "estimationMethod": None})
            return
        arrivals.append((zone, now))
        pid, refresh = handler.headers.get("x-cs-test-pid"), handler.headers.get("x-cs-test-refresh")
        askers[(zone, now)] = owner(int(pid)) if pid and pid.isdigit() else "?"
        if refresh:
            refresh_of[(zone, now)] = datetime.fromtimestamp(float(refresh), UTC)
        hours = int(parse_qs(url.query).get("horizonHours", ["24"])[0])
        points = [slot + EM_STEP * i for i in range(-1, int(timedelta(hours=hours) / EM_STEP))]
        send_json(handler, {"zone": zone, "updatedAt": _em_stamp(slot),
                            "forecast": [{"carbonIntensity": intensity(t), "datetime": _em_stamp(t)} for t in points]})

    return answer


def _owner(deployment: Deployment) -> Callable[[int], str]:
    """A PID's process of the deployment (a task process is named by its Celery worker), with the PID."""
    import psutil

    def name(pid: int) -> str:
        tops = {process.pid: label for label, process in deployment.processes.items()}
        try:
            chain = [pid] + [parent.pid for parent in psutil.Process(pid).parents()]
        except psutil.NoSuchProcess:
            chain = [pid]
        return next((f"{tops[p]}:{pid}" for p in chain if p in tops), f"?:{pid}")

    return name


def _deferred(db: sa.Engine) -> dict[int | None, int]:
    with db.connect() as conn:
        return dict(conn.execute(sa.text(
            "SELECT t.triggerer_id, count(*) FROM task_instance ti JOIN trigger t ON ti.trigger_id = t.id "
            "WHERE ti.dag_id = :d AND ti.state = 'deferred' GROUP BY t.triggerer_id"), {"d": DAG_ID}).all())


def _states(db: sa.Engine, run_id: str) -> dict[str, int]:
    with db.connect() as conn:
        return dict(conn.execute(sa.text(
            "SELECT coalesce(state, 'none'), count(*) FROM task_instance WHERE dag_id = :d AND run_id = :r "
            "GROUP BY state"), {"d": DAG_ID, "r": run_id}).all())


def _task_pids_in(pid: int) -> set[int]:
    """Task processes under a Celery worker: its pool's children's children (each runs one task)."""
    import psutil

    try:
        pool = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return set()
    pids = set()
    for child in pool:
        try:
            pids.update(grandchild.pid for grandchild in child.children())
        except psutil.NoSuchProcess:
            pass
    return pids


def _crash(deployment: Deployment, name: str, tasks: set[int]) -> None:
    """A worker crash: SIGKILL to its task processes and to the worker with its pool.

    Airflow's task runner puts itself in a process group of its own, so the SIGKILL to the worker's
    group alone would leave its tasks running as orphans.
    """
    groups = set()
    for pid in tasks:
        try:
            groups.add(os.getpgid(pid))
        except ProcessLookupError:
            pass
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deployment.kill(name)


def _markers(directory: Path, known: dict | None = None) -> dict[tuple[str, int, int], list[int]]:
    """The tries whose work began: (task_id, map_index, try_number) -> the PID of each line of its marker file.

    ``known`` (updated in place) keeps what was read before, for polling: a marker is written once.
    """
    found = {} if known is None else known
    for path in directory.iterdir():
        task_id, map_index, try_number = path.name.rsplit(".", 2)
        key = (task_id, int(map_index), int(try_number))
        if known is None or key not in found:
            pids = [int(line.split()[0]) for line in path.read_text().splitlines() if line.strip()]
            if pids:
                found[key] = pids
    return found


def _fallbacks(epoch: float, *roots: Path) -> tuple[list[tuple[datetime | None, str]], int]:
    """Each per-process fallback the shared cache logged, and each trigger a triggerer dropped ("dropped"):
    (simulated time, kind); and how many log files were read.

    The same event can be in two files (a trigger's line is in the triggerer's log and the trigger's
    own): events are told apart by their timestamp.
    """
    events: dict[tuple[str, str], datetime | None] = {}
    files = 0
    for root in roots:
        for path in sorted(root.rglob("*.log")):
            files += 1
            for number, line in enumerate(path.read_text(errors="replace").splitlines()):
                for kind, text in [*FALLBACKS.items(), ("dropped", DROPPED)]:
                    if text in line:
                        if kind == "store":
                            kind = "down" if "is unavailable" in line else "row"
                        stamp = TIMESTAMP.search(line)
                        when = None
                        if stamp:
                            real = datetime.fromisoformat(stamp.group(1)).replace(tzinfo=UTC).timestamp()
                            when = SIM_START + timedelta(seconds=(real - epoch) * FACTOR)
                        events[(stamp.group(0) if stamp else f"{path}:{number}", kind)] = when
    return [(when, kind) for (_, kind), when in events.items()], files


def _slot(when: datetime) -> datetime:
    step = EM_STEP.total_seconds()
    return datetime.fromtimestamp(when.timestamp() // step * step, UTC)


def _refreshes(arrivals: list[tuple[str, datetime]], events: list[tuple[datetime | None, str]],
               processes: int, askers: dict | None = None,
               refresh_of: dict | None = None) -> tuple[list[dict], int, int]:
    """Vendor forecast requests per refresh (15-minute slot), each with why a zone was asked twice.

    A request counts for the refresh it was made for (``refresh_of``, the cache key's slot), however
    late it arrived: how many arrived in a later slot is the second value returned. A request whose
    refresh is not known (the third value: how many) counts for the slot it arrived in, or, when it
    arrived within LATE_S of that slot's start and the slot before had none for its zone, for the
    slot before (its process read the clock before the boundary). Each refresh may then ask each zone once; beyond
    that it may ask once per process on the cold store (the first refresh), once for each logged
    wait past shared_cache_wait_s or row warning, and once per zone for each store-down warning
    (that process fetches for itself for RETRY_S), an event counting for the refreshes its fetch may
    land in (its slot, and the next one within LATE_S). A zone asked twice names each request's
    simulated time and process (``askers``); triggers dropped by a triggerer are counted per refresh.
    """
    refresh_of = refresh_of or {}
    by_slot: dict[datetime, list[tuple[str, datetime]]] = {}
    late = unknown = 0
    for zone, when in sorted(arrivals, key=lambda a: a[1]):
        made_for = refresh_of.get((zone, when))
        late += made_for is not None and _slot(when) != made_for
        unknown += made_for is None
        by_slot.setdefault(made_for or _slot(when), []).append((zone, when))
    for slot in sorted(by_slot):
        before = by_slot.get(slot - EM_STEP)
        if before is None:
            continue
        asked = Counter(zone for zone, _ in by_slot[slot])
        for zone, n in asked.items():
            if n > 1 and not any(z == zone for z, _ in before):
                first = next(a for a in by_slot[slot] if a[0] == zone)
                if (first[1] - slot).total_seconds() < LATE_S * FACTOR and first not in refresh_of:
                    by_slot[slot].remove(first)
                    before.append(first)
                    late += 1
    first_slot = min(by_slot, default=None)
    late_sim = timedelta(seconds=LATE_S * FACTOR)
    rows = []
    for slot in sorted(by_slot):
        asked = Counter(zone for zone, _ in by_slot[slot])
        extra = sum(asked.values()) - len(asked)
        end = slot + EM_STEP
        why = Counter()
        for when, kind in events:
            if when is None:
                continue
            reach = (when + timedelta(seconds=RETRY_S * FACTOR)) if kind == "down" else when
            if when < end and reach + late_sim >= slot:
                why[kind] += 1
        allowed = ((processes if slot == first_slot else 0) + why["wait"] + why["row"] + why["overran"]
                   + len(ZONES) * why["down"])
        twice = sorted(z for z, n in asked.items() if n > 1)
        asked_by = {z: [f"{w:%H:%M:%S} {(askers or {}).get((z, w), '?')}" for zz, w in by_slot[slot] if zz == z]
                    for z in twice}
        rows.append({"slot": slot, "requests": sum(asked.values()), "zones": len(asked), "extra": extra,
                     "twice": twice, "asked_by": asked_by, "cold": slot == first_slot, "dropped": why["dropped"],
                     "waits": why["wait"] + why["overran"], "store": why["down"] + why["row"],
                     "unexplained": max(0, extra - allowed)})
    return rows, late, unknown


def _why(row: dict) -> str:
    reasons = [f"cold store (at most one per process: {row['extra']} extra)"] if row["cold"] else []
    reasons += [f"{row['waits']} waits past shared_cache_wait_s or leases outlived logged"] if row["waits"] else []
    reasons += [f"{row['store']} store warnings logged"] if row["store"] else []
    reasons += [f"{row['dropped']} triggers dropped by a triggerer"] if row["dropped"] else []
    reasons += [f"{row['unexplained']} UNEXPLAINED"] if row["unexplained"] else []
    who = "; ".join(f"{zone} at {', '.join(by)}" for zone, by in row["asked_by"].items())
    return (f"{row['slot']:%H:%M} {row['requests']} for {row['zones']} zones "
            f"(twice: {who}; {'; '.join(reasons) or 'no fallback logged'})")


def _redis_sweep(client, needles: list[bytes]) -> tuple[dict[bytes, list[str]], int, int, Counter]:
    """Every key and value of the test's Redis database: where each needle is, keys read, bytes read, key kinds."""
    found: dict[bytes, list[str]] = {n: [] for n in needles}
    keys = size = 0
    kinds: Counter = Counter()
    for key in client.scan_iter("*", count=1000):
        keys += 1
        kind = client.type(key).decode()
        kinds[re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "*", key.split(b":")[0].decode(errors="replace")) + ":" + kind] += 1
        parts = [key]
        if kind == "string":
            parts.append(client.get(key) or b"")
        elif kind == "hash":
            for field, value in client.hgetall(key).items():
                parts += [field, value]
        elif kind == "list":
            parts += client.lrange(key, 0, -1)
        elif kind == "set":
            parts += list(client.smembers(key))
        elif kind == "zset":
            parts += [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        data = b"\n".join(parts)
        size += len(data)
        for needle in needles:
            if needle in data:
                found[needle].append(key.decode(errors="replace"))
    return found, keys, size, kinds


@pytest.mark.timeout(900)
def test_a_celery_deployment_shares_one_request_per_zone_and_survives_kills(stores, tmp_path, capsys):
    began = time.monotonic()
    (airflow_url, ledger_url), redis_client = stores
    home, site, logs, markers = tmp_path / "home", tmp_path / "site", tmp_path / "logs", tmp_path / "markers"
    for path in (home, site, logs, markers):
        path.mkdir()
    (site / "sitecustomize.py").write_text(CELERY_SITECUSTOMIZE)
    api_port = _free_port()
    sentinel = f"sentinel-key-{secrets.token_hex(8)}"
    fernet_key = Fernet.generate_key().decode()

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "CARBON_SENSORS_", "CS_HA_", "CS_CELERY_", "PYTHONPATH"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=airflow_url,
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC=airflow_url,
        AIRFLOW__CORE__EXECUTOR="CeleryExecutor",
        AIRFLOW__CELERY__BROKER_URL=REDIS_URL,
        AIRFLOW__CELERY__RESULT_BACKEND=f"redis://127.0.0.1:6379/{REDIS_DB}",
        AIRFLOW__CELERY__WORKER_CONCURRENCY=str(WORKER_CONCURRENCY),
        # a killed worker's unacknowledged messages go back to the queue after this long (default: a day)
        AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT="30",
        AIRFLOW__CORE__PARALLELISM="32",
        AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG="1024",
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{api_port}/execution/",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{api_port}",
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(32),
        AIRFLOW__CORE__FERNET_KEY=fernet_key,
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
        AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC="2",
        # the killed worker's running tasks are found (and retried) after this long without a heartbeat
        AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT="20",
        AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL="5",
        AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT="90",
        AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC="1",
        AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD="15",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="10",
        AIRFLOW__CARBON_SENSORS__LEDGER_URL=ledger_url,
        # the shared forecast cache on the broker's Redis (the Airflow option, read by every process)
        AIRFLOW__CARBON_SENSORS__SHARED_CACHE=REDIS_URL,
        AIRFLOW__CARBON_SENSORS__SHARED_CACHE_WAIT_S=str(WAIT_S),
        **{f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(
            {"conn_type": "carbon_intensity", "password": sentinel, "extra": {"provider": "electricitymaps"}})},
        CS_HA_CONN_ID=CONN_ID,
        PYTHONPATH=os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])]),
        CS_CELERY_PER_ZONE=str(PER_ZONE),
        CS_CELERY_ZONES=",".join(ZONES),
        CS_CELERY_MARKERS=str(markers),
        CS_HA_DEADLINE=DEADLINE.isoformat(),
        CS_HA_FACTOR=str(FACTOR),
        CS_HA_SIM_START=SIM_START.isoformat(),
    )
    migrate = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True,
                             text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    _say(began, "metadata database migrated")

    db = sa.create_engine(airflow_url, poolclass=sa.pool.NullPool)
    ledger_db = sa.create_engine(ledger_url, poolclass=sa.pool.NullPool)
    deployment = Deployment(env, logs)
    seen: Counter = Counter()
    arrivals: list[tuple[str, datetime]] = []  # forecast requests: (zone, simulated time at the server)
    askers: dict[tuple[str, datetime], str] = {}  # each request's process
    refresh_of: dict[tuple[str, datetime], datetime] = {}  # the refresh each request was made for
    with ExitStack() as stack:
        epoch = time.time()
        window = Window()  # all dirty until the DAG is triggered
        vendor = stack.enter_context(faulty_server(_vendor(epoch, sentinel, seen, arrivals, window, askers,
                                                                 _owner(deployment), refresh_of)))
        stack.callback(ledger_db.dispose)
        stack.callback(db.dispose)
        stack.callback(deployment.stop_all)
        env.update(CS_HA_FORECAST_URL=vendor["url"], CS_HA_REAL_EPOCH=repr(epoch))

        deployment.start("api-server", "api-server", "-H", "127.0.0.1", "-p", str(api_port), "-w", "1")
        deployment.start("dag-processor", "dag-processor")
        deployment.start("scheduler", "scheduler")
        for name in ("a", "b"):
            deployment.start(f"worker-{name}", "celery", "worker", "--celery-hostname", f"carbon-{name}@%h",
                             "--concurrency", str(WORKER_CONCURRENCY), "--without-mingle", "--without-gossip",
                             AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(_free_port()))
        # As in the HA test: triggerer A starts alone and holds at most a third of the gates; B, which can
        # take all of them, starts once A holds some, so both hold gates whichever polls the table first.
        deployment.start("triggerer-a", "triggerer", "--capacity", str(max(1, TASKS // 3)),
                         AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(_free_port()),
                         AIRFLOW__LOGGING__LOGGING_LEVEL="DEBUG")
        (job_a,) = _wait("triggerer A's job", lambda: _triggerer_jobs(db), deployment, 180)
        job_b = None

        def api_healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{api_port}/api/v2/monitor/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        _wait("the API server", api_healthy, deployment, 180)

        def dag_parsed() -> bool:
            with db.connect() as conn:
                return conn.execute(sa.text("SELECT count(*) FROM serialized_dag WHERE dag_id = :d"),
                                    {"d": DAG_ID}).scalar() > 0

        _wait("the DAG to be parsed", dag_parsed, deployment, 180)
        run_id = f"celery__{uuid.uuid4().hex[:8]}"
        window.set(_sim_now(epoch) + WINDOW_AFTER)
        assert window.end + timedelta(hours=1) < DEADLINE
        trigger = subprocess.run([sys.executable, "-m", "airflow", "dags", "trigger", DAG_ID, "--run-id", run_id],
                                 env=env, capture_output=True, text=True, timeout=120)
        assert trigger.returncode == 0, trigger.stdout[-2000:] + trigger.stderr[-2000:]
        triggered_at = time.monotonic()
        _say(began, f"{DAG_ID} triggered ({TASKS} mapped gates over {len(ZONES)} zones), "
                    f"{_sim_now(epoch):%H:%M} simulated, window {window.start:%H:%M}-{window.end:%H:%M}")

        def status() -> str:
            return f"{_sim_now(epoch):%H:%M} simulated; deferred by job {_deferred(db)}; states {_states(db, run_id)}"

        latest_kill = window.start - timedelta(minutes=20)

        def until_latest_kill() -> float:
            return max(1.0, (latest_kill - _sim_now(epoch)).total_seconds() / FACTOR)

        hold = min(20, TASKS // 5)
        _wait(f"triggerer A to hold {hold} gates", lambda: _deferred(db).get(job_a, 0) >= hold, deployment,
              until_latest_kill(), status=status)
        deployment.start("triggerer-b", "triggerer", "--capacity", "1000",
                         AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(_free_port()),
                         AIRFLOW__LOGGING__LOGGING_LEVEL="DEBUG")
        job_b = _wait("triggerer B's job", lambda: next((j for j in _triggerer_jobs(db) if j != job_a), None),
                      deployment, 120)

        # Triggerer kill: while gates wait in both triggerers.
        def both_hold():
            held = _deferred(db)
            return held if held.get(job_a, 0) >= hold and held.get(job_b, 0) >= hold else None

        held = _wait("gates waiting in both triggerers", both_hold, deployment, until_latest_kill(), status=status)
        killed_job = job_a
        deployment.kill("triggerer-a")
        _say(began, f"SIGKILLed triggerer A (job {killed_job}) holding {held[killed_job]} gates, B (job {job_b}) "
                    f"holding {held[job_b]}; {_sim_now(epoch):%H:%M} simulated")

        def taken_over():
            held = _deferred(db)
            return held if held.get(killed_job, 0) == 0 else None

        _wait("triggerer B to take over A's gates", taken_over, deployment, 90, skip=("triggerer-a",), status=status)
        _say(began, f"B holds the gates: {_deferred(db)}")

        # Worker kill: while worker B runs tasks (the gates opened at the window), one at least in its work.
        worker_b = deployment.processes["worker-b"].pid
        polled: dict = {}

        def b_working():
            pids = _task_pids_in(worker_b)
            working = {key for key, lines in _markers(markers, polled).items() if pids & set(lines)}
            return (len(pids), working) if working else None

        running, working = _wait("worker B to run tasks, one in its work", b_working, deployment, RUN_TIMEOUT_S,
                                 interval_s=0.2, skip=("triggerer-a",), status=status)
        _crash(deployment, "worker-b", _task_pids_in(worker_b))
        _say(began, f"SIGKILLed Celery worker B running {running} tasks ({len(working)} in their work); "
                    f"{_sim_now(epoch):%H:%M} simulated; {_states(db, run_id)}")

        def run_done() -> str | None:
            with db.connect() as conn:
                state = conn.execute(sa.text("SELECT state FROM dag_run WHERE dag_id = :d AND run_id = :r"),
                                     {"d": DAG_ID, "r": run_id}).scalar()
            return state if state in ("success", "failed") else None

        state = _wait("the DAG run to finish", run_done, deployment, RUN_TIMEOUT_S, interval_s=2,
                      skip=("triggerer-a", "worker-b"), status=status)
        run_s = time.monotonic() - triggered_at
        _say(began, f"DAG run {state}, {_sim_now(epoch):%H:%M} simulated")
        with db.connect() as conn:
            tis = conn.execute(sa.text(
                "SELECT task_id, map_index, state, try_number FROM task_instance WHERE dag_id = :d AND run_id = :r"),
                {"d": DAG_ID, "r": run_id}).all()
        with ledger_db.connect() as conn:
            records = conn.execute(sa.select(RUNS).where(RUNS.c.dag_id == DAG_ID, RUNS.c.run_id == run_id)).mappings().all()
        run_arrivals, run_keyed = list(arrivals), seen["keyed"]

        # The SQL shared cache in this deployment too: a process of it set to shared_cache = ledger fills
        # carbon_sensors_forecast_cache in the ledger's PostgreSQL database, for the ledger sweep to read.
        spec = {"kind": "electricitymaps", "base_url": vendor["url"], "temporal_granularity": "15_minutes",
                "conn_id": CONN_ID}
        sql_pass = subprocess.run([sys.executable, "-c", SQL_PASS, json.dumps(spec), ",".join(ZONES)],
                                  env={**env, "AIRFLOW__CARBON_SENSORS__SHARED_CACHE": "ledger"},
                                  capture_output=True, text=True, timeout=180)
        assert sql_pass.returncode == 0, sql_pass.stdout[-2000:] + sql_pass.stderr[-3000:]
        sql_stats = json.loads(sql_pass.stdout.strip().splitlines()[-1])
        sql_requests = len(arrivals) - len(run_arrivals)
        with ledger_db.connect() as conn:
            sql_rows = conn.execute(sa.text(f"SELECT count(*) FROM {SQL_CACHE_TABLE} WHERE payload IS NOT NULL")).scalar()
        _say(began, f"shared_cache = ledger: {sql_stats}, {sql_requests} vendor requests, {sql_rows} rows")
        key, conn_marker, run_marker = sentinel.encode(), CONN_ID.encode(), run_id.encode()
        redis_found, redis_keys, redis_bytes, redis_kinds = _redis_sweep(redis_client, [key, b'"zone":"DE"'])

    ti_states = Counter(t.state for t in tis)
    retried = [t for t in tis if t.try_number > 1]
    keys = Counter((r["task_id"], r["map_index"], r["try_number"]) for r in records)
    status_of = {(r["task_id"], r["map_index"], r["try_number"]): r["status"] for r in records}
    error_of = {(r["task_id"], r["map_index"], r["try_number"]): r["error"] for r in records}
    final = {(t.task_id, t.map_index): t.try_number for t in tis}
    finals = [r for r in records if final.get((r["task_id"], r["map_index"])) == r["try_number"]]
    late = [(r["task_id"], r["map_index"], r["started_at"], r["latest_start"]) for r in records
            if r["latest_start"] is None or r["started_at"] > r["latest_start"] + LATEST_START_TOLERANCE]

    # the ledger try by try: the markers say which tries' work began
    began_work = _markers(markers)
    tries = {(task, index, n) for (task, index), last in final.items() for n in range(1, last + 1)}
    killed_in_work = {k: status_of.get(k) for k in began_work if k[2] < final.get(k[:2], 0)}
    ended = Counter(f"{status_of[k]}: {(error_of[k] or '')[:80]}" for k, status in killed_in_work.items()
                    if status not in (None, "started"))  # a try before the last that ended by itself
    unrecorded = sorted(k for k in began_work if keys[k] != 1)  # began its work, yet not exactly one record
    twice_run = sorted(k for k, lines in began_work.items() if len(lines) > 1)
    unmarked = {k: status_of[k] for k in keys if k not in began_work}  # a record, yet no sign the work began
    killed_before = sorted(tries - set(began_work) - set(keys))
    strays = sorted(set(keys) - tries)

    # vendor requests per refresh (the server's 15-minute slot) across the deployment, and why any zone twice
    processes = len(deployment.processes)
    events, event_files = _fallbacks(epoch, logs, home / "logs")
    refreshes, late_arrivals, unnamed = _refreshes(run_arrivals, events, processes, askers, refresh_of)
    per_refresh = [row["requests"] for row in refreshes]
    span = int((refreshes[-1]["slot"] - refreshes[0]["slot"]) / EM_STEP) + 1 if refreshes else 0
    total_fetches = len(run_arrivals)
    most = max(Counter((zone, refresh_of.get((zone, when)) or _slot(when)) for zone, when in run_arrivals).values(),
               default=0)
    waited = sum(kind in ("wait", "overran") for _, kind in events)
    store_warned = sum(kind in ("down", "row") for _, kind in events)
    dropped = sum(kind == "dropped" for _, kind in events)
    asked_twice = [row for row in refreshes if row["extra"]]
    above = [row for row in refreshes if row["requests"] > len(ZONES)]
    (tmp_path / "refreshes.json").write_text(json.dumps({
        "arrivals": [(z, w.isoformat(), askers.get((z, w))) for z, w in run_arrivals],
        "events": [(w.isoformat() if w else None, k) for w, k in events], "refreshes": refreshes}, default=str))

    zone_needle = b'"zone":"'
    sweeps = {name: Sweep([key, conn_marker, run_marker, zone_needle], Fernet(fernet_key))
              for name in ("logs", "home", "metadata", "ledger")}
    sweeps["logs"].files_under(logs)
    sweeps["home"].files_under(home)
    sweeps["metadata"].database(db)
    sweeps["ledger"].database(ledger_db)
    hits = {name: sweep.where(key) for name, sweep in sweeps.items() if sweep.found[key]}
    if redis_found[key]:
        hits["redis"] = ", ".join(redis_found[key][:10])
    with capsys.disabled():
        recorded = Counter(status_of.get(k) for k in began_work)
        print(f"\nCelery deployment: {ti_states.get('success', 0)}/{TASKS} mapped tasks over {len(ZONES)} zones "
              f"succeeded (run {state}) with triggerer A and Celery worker B SIGKILLed ({running} tasks running in B, "
              f"{len(working)} in their work); {len(retried)} tasks retried; {len(tries)} tries: {len(began_work)} began "
              f"their work, {len(began_work) - len(unrecorded)} of them with exactly one ledger record "
              f"({dict(recorded)}; tries before the last: {len(killed_in_work)}, {dict(Counter(killed_in_work.values()))}"
              f"{f', ended by themselves: {dict(ended)}' if ended else ''}), "
              f"{len(killed_before)} killed before their work began (no marker, no record), {len(unmarked)} records "
              f"without a marker; {len(records)} ledger records, {sum(keys.values()) - len(keys)} duplicates, "
              f"{len(late)} late starts; run {run_s:.0f} s, test {time.monotonic() - began:.0f} s")
        print(f"Vendor: {total_fetches} forecast requests ({run_keyed} in all with /latest) over {len(refreshes)} "
              f"refreshes (span {span}) for {len(ZONES)} zones and {processes} processes; per refresh: {per_refresh} "
              f"({late_arrivals} arrived after the next refresh began and count for the one they were made for, "
              f"{unnamed} did not name their refresh); most for one zone in one refresh: "
              f"{most}; {len(above)} refreshes above {len(ZONES)}, a zone asked twice in {len(asked_twice)}"
              f"{': ' + ', '.join(_why(row) for row in asked_twice) if asked_twice else ''}; per-process fallbacks "
              f"logged: {waited} waits past shared_cache_wait_s or leases outlived, {store_warned} store warnings "
              f"({event_files} log files); "
              f"{dropped} triggers dropped by a triggerer (another took them over)")
        sentinel_hits = sum(len(s.found[key]) for s in sweeps.values()) + len(redis_found[key])
        print(f"Sentinel key: {seen['keyed']} requests carried it, {seen['refused']} refused; swept "
              f"{sweeps['logs'].files} process logs, {sweeps['home'].files} files under AIRFLOW_HOME, "
              f"{sweeps['metadata'].rows} metadata rows, {sweeps['ledger'].rows} ledger rows ({sql_rows} of them in "
              f"{SQL_CACHE_TABLE}, from a process on shared_cache = ledger: {sql_requests} vendor requests), "
              f"{redis_keys} Redis keys ({redis_bytes} bytes: {dict(redis_kinds)}): {sentinel_hits} hits")

    assert state == "success", ti_states
    assert ti_states == Counter({"success": TASKS}), ti_states
    # Exactly one ledger record per try whose work began (a try killed in its work keeps its `started`
    # record: the recorder writes it before the work), none with two, none for a try that never was, and
    # one, a success, for each task's last try; the other tries were killed before their work began.
    assert not unrecorded, f"tries whose work began without exactly one record: {[(k, keys[k]) for k in unrecorded[:5]]}"
    assert all(n == 1 for n in keys.values()), keys.most_common(3)
    assert not strays, strays[:5]
    assert len(finals) == TASKS and {r["status"] for r in finals} == {"success"}
    assert all(status != "success" for status in unmarked.values()), unmarked
    assert not twice_run, f"the work of one try ran twice: {twice_run[:5]}"
    assert not late, late[:5]
    assert retried, "the SIGKILLed worker's tasks were not retried: the kill tested nothing"
    # One vendor request per zone per refresh, deployment-wide: a refresh asks a zone twice only on the
    # cold store (at most once per process) or where a process logged why it fetched for itself (a
    # wait past shared_cache_wait_s, a store warning, a fetch that outlived its lease), and the total
    # stays within one per zone per refresh plus one per process. A request counts for the refresh it
    # was made for (its cache key's slot, which every request names): on a loaded machine a request
    # made just before a boundary can reach the server a minute of simulated time (a real second)
    # into the next slot, which counting by arrival took for a second request of that slot.
    unexplained = sum(row["unexplained"] for row in refreshes)
    assert unexplained == 0, [_why(row) for row in refreshes if row["unexplained"]]
    assert unnamed == 0, f"{unnamed} vendor requests did not name the refresh they were made for"
    assert total_fetches <= len(ZONES) * span + processes, (total_fetches, per_refresh)
    assert seen["keyed"] > 0 and seen["refused"] == 0, seen
    assert not hits, f"the sentinel API key was found in {hits}"
    # the sweeps read the shared stores' forecasts, every process's log, and the markers where they must be
    assert redis_found[b'"zone":"DE"'], dict(redis_kinds)
    assert sql_stats.get("store") == "SqlStore" and sql_rows >= 1, (sql_stats, sql_rows)
    assert f"{ledger_db.url.database}: {SQL_CACHE_TABLE}.payload" in sweeps["ledger"].found[zone_needle]
    assert sweeps["logs"].files == len(deployment.processes)
    assert str(logs / "scheduler.log") in sweeps["logs"].found[run_marker]
    assert f"{ledger_db.url.database}: carbon_sensors_runs.source_spec" in sweeps["ledger"].found[conn_marker]
