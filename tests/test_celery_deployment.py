"""A CeleryExecutor deployment on Redis with the shared forecast cache: a triggerer and a worker SIGKILLed.

PostgreSQL metadata database, Redis broker (a database number of the test's own on 127.0.0.1:6379,
flushed before and after), scheduler, dag-processor, api-server, two Celery workers and two
triggerers, each its own process stopped by its PID. 300 gated mapped tasks over ten zones read an
Electricity Maps-shaped forecast from a local HTTP server (dirty now, clean a few simulated hours
after the trigger) through the shared forecast cache on the broker's Redis. Triggerer A is SIGKILLed
while the gates wait in both triggerers, and Celery worker B while it runs tasks. Every task must
succeed, none may start after its latest start, the ledger must hold one record per try and no
more, and the vendor must see about one request per zone per refresh across the whole deployment.

The sentinel sweep of tests/test_ha_triggerers.py is extended to the shared store: every Redis key
and value of the test's database (the forecasts, the leases, the broker's messages).

Slow (about 6-8 minutes on 2 cores): ``pytest -m "" tests/test_celery_deployment.py``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
import uuid
from collections import Counter
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


def _vendor(epoch: float, key: str, seen: Counter, fetches: Counter, window: Window):
    """Electricity Maps v3 ``/forecast`` and ``/latest`` for ten zones; counts forecast requests by (zone, slot)."""

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
        fetches[(zone, slot)] += 1
        hours = int(parse_qs(url.query).get("horizonHours", ["24"])[0])
        points = [slot + EM_STEP * i for i in range(-1, int(timedelta(hours=hours) / EM_STEP))]
        send_json(handler, {"zone": zone, "updatedAt": _em_stamp(slot),
                            "forecast": [{"carbonIntensity": intensity(t), "datetime": _em_stamp(t)} for t in points]})

    return answer


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


def _running_tasks_in(pid: int) -> int:
    """Task processes under a Celery worker: its pool's children's children (each runs one task)."""
    import psutil

    try:
        pool = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return 0
    return sum(len(child.children()) for child in pool if child.is_running())


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
    home, site, logs = tmp_path / "home", tmp_path / "site", tmp_path / "logs"
    for path in (home, site, logs):
        path.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
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
        **{f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(
            {"conn_type": "carbon_intensity", "password": sentinel, "extra": {"provider": "electricitymaps"}})},
        CS_HA_CONN_ID=CONN_ID,
        PYTHONPATH=os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])]),
        CS_CELERY_PER_ZONE=str(PER_ZONE),
        CS_CELERY_ZONES=",".join(ZONES),
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
    fetches: Counter = Counter()  # forecast requests by (zone, simulated slot at the server)
    with ExitStack() as stack:
        epoch = time.time()
        window = Window()  # all dirty until the DAG is triggered
        vendor = stack.enter_context(faulty_server(_vendor(epoch, sentinel, seen, fetches, window)))
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

        # Worker kill: while worker B runs tasks (the gates opened at the window).
        worker_b = deployment.processes["worker-b"].pid
        running = _wait("worker B to run tasks", lambda: _running_tasks_in(worker_b) or None, deployment, RUN_TIMEOUT_S,
                        interval_s=0.2, skip=("triggerer-a",), status=status)
        deployment.kill("worker-b")
        _say(began, f"SIGKILLed Celery worker B running {running} tasks; {_sim_now(epoch):%H:%M} simulated; "
                    f"{_states(db, run_id)}")

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
        key, conn_marker, run_marker = sentinel.encode(), CONN_ID.encode(), run_id.encode()
        redis_found, redis_keys, redis_bytes, redis_kinds = _redis_sweep(redis_client, [key, b'"zone":"DE"'])

    ti_states = Counter(t.state for t in tis)
    retried = [t for t in tis if t.try_number > 1]
    keys = Counter((r["task_id"], r["map_index"], r["try_number"]) for r in records)
    final = {(t.task_id, t.map_index): t.try_number for t in tis}
    finals = [r for r in records if final.get((r["task_id"], r["map_index"])) == r["try_number"]]
    late = [(r["task_id"], r["map_index"], r["started_at"], r["latest_start"]) for r in records
            if r["latest_start"] is None or r["started_at"] > r["latest_start"] + LATEST_START_TOLERANCE]

    # vendor requests: per refresh (the server's 15-minute slot) across the deployment
    slots = sorted({slot for _, slot in fetches})
    per_refresh = [sum(n for (_, s), n in fetches.items() if s == slot) for slot in slots]
    span = int((slots[-1] - slots[0]) / EM_STEP) + 1 if slots else 0
    processes = len(deployment.processes)
    total_fetches = sum(fetches.values())

    # why a refresh asked more than once for a zone: a process that waited too long, or found the store down
    logged = "\n".join(path.read_text(errors="replace") for path in logs.glob("*.log"))
    waited = logged.count("for another process to fetch a forecast into the shared cache")
    store_down = logged.count("the shared forecast cache at ")

    sweeps = {name: Sweep([key, conn_marker, run_marker], Fernet(fernet_key)) for name in ("logs", "home", "metadata", "ledger")}
    sweeps["logs"].files_under(logs)
    sweeps["home"].files_under(home)
    sweeps["metadata"].database(db)
    sweeps["ledger"].database(ledger_db)
    hits = {name: sweep.where(key) for name, sweep in sweeps.items() if sweep.found[key]}
    if redis_found[key]:
        hits["redis"] = ", ".join(redis_found[key][:10])
    with capsys.disabled():
        print(f"\nCelery deployment: {ti_states.get('success', 0)}/{TASKS} mapped tasks over {len(ZONES)} zones "
              f"succeeded (run {state}) with triggerer A and Celery worker B SIGKILLed ({running} tasks running in B); "
              f"{len(retried)} tasks retried; {len(records)} ledger records for {sum(final.values())} tries, "
              f"{sum(keys.values()) - len(keys)} duplicates, {len(late)} late starts; run {run_s:.0f} s, "
              f"test {time.monotonic() - began:.0f} s")
        print(f"Vendor: {total_fetches} forecast requests ({seen['keyed']} in all with /latest) over {len(slots)} "
              f"refreshes (span {span}) for {len(ZONES)} zones and {processes} processes; per refresh: {per_refresh}; "
              f"most for one zone in one refresh: {max(fetches.values()) if fetches else 0}; per-process fallbacks "
              f"logged: {waited} waits past shared_cache_wait_s, {store_down} store warnings")
        sentinel_hits = sum(len(s.found[key]) for s in sweeps.values()) + len(redis_found[key])
        print(f"Sentinel key: {seen['keyed']} requests carried it, {seen['refused']} refused; swept "
              f"{sweeps['logs'].files} process logs, {sweeps['home'].files} files under AIRFLOW_HOME, "
              f"{sweeps['metadata'].rows} metadata rows, {sweeps['ledger'].rows} ledger rows, {redis_keys} Redis keys "
              f"({redis_bytes} bytes: {dict(redis_kinds)}): {sentinel_hits} hits")

    assert state == "success", ti_states
    assert ti_states == Counter({"success": TASKS}), ti_states
    # one record per try at most, and exactly one, a success, for each task's last try
    assert all(n == 1 for n in keys.values()), keys.most_common(3)
    assert len(finals) == TASKS and {r["status"] for r in finals} == {"success"}
    assert not late, late[:5]
    assert retried, "the SIGKILLed worker's tasks were not retried: the kill tested nothing"
    # one vendor request per zone per refresh, deployment-wide (+ at most one per process on the cold store)
    assert total_fetches <= len(ZONES) * span + processes, (total_fetches, per_refresh)
    assert seen["keyed"] > 0 and seen["refused"] == 0, seen
    assert not hits, f"the sentinel API key was found in {hits}"
    # the sweeps read the shared store's forecasts, every process's log, and the markers where they must be
    assert redis_found[b'"zone":"DE"'], dict(redis_kinds)
    assert sweeps["logs"].files == len(deployment.processes)
    assert str(logs / "scheduler.log") in sweeps["logs"].found[run_marker]
    assert f"{ledger_db.url.database}: carbon_sensors_runs.source_spec" in sweeps["ledger"].found[conn_marker]
