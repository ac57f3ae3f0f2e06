"""A real Airflow 3 deployment with two triggerers, one of them killed while hundreds of gates wait in them.

Scheduler (LocalExecutor), dag-processor, api-server and two triggerers run as separate processes on a
fresh PostgreSQL metadata database; each is stopped by its PID afterwards. Every process runs the same
compressed clock (installed by a ``sitecustomize`` on their PYTHONPATH, anchored to one real instant), and
the gates read an Electricity Maps-shaped forecast from a local HTTP server: dirty now, clean a few
simulated hours after the DAG is triggered. Triggerer A starts first; B starts once A holds gates.
While the mapped tasks wait in both, A is SIGKILLed; B must take over its triggers, every task must
succeed, none may start after its latest start, and the carbon-sensors ledger (a second fresh
database) must hold exactly one record per task try.

The server's API key is a sentinel held by an Airflow Connection that every process gets from an
``AIRFLOW_CONN_*`` environment variable. The server answers only requests carrying it, so it must
travel to the API; and it must be found nowhere else: not in any process's log, task log, file under
AIRFLOW_HOME, nor any row of the metadata database (trigger rows while the gates wait, XCom, events,
everything after the run) or of the ledger.

Slow (a few minutes): run it with ``pytest -m "" tests/test_ha_triggerers.py``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
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
from cryptography.fernet import Fernet, InvalidToken
from faulty_server import faulty_server, send_json

from carbon_sensors.ledger import RUNS, mask_url
from carbon_sensors.planning import LATEST_START_TOLERANCE

pytestmark = [pytest.mark.integration, pytest.mark.postgres]  # slow: a few minutes

PG_ADMIN_URL = os.environ.get("CS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DAGS = Path(__file__).resolve().parent / "dags_ha"
DAG_ID, TASK_ID = "carbon_ha", "shard"

TASKS = int(os.environ.get("CS_HA_TASKS", "200"))
FACTOR = float(os.environ.get("CS_HA_FACTOR", "60"))  # one simulated minute per real second
SIM_START = datetime(2026, 6, 15, 0, 0, tzinfo=UTC)
# Clean from this long after the trigger (not after the clock's epoch: on a slow machine the deployment
# takes longer to start, and the gates must still wait in the triggerers well before the window)...
WINDOW_AFTER = timedelta(hours=float(os.environ.get("CS_HA_WINDOW_H", "3")))
WINDOW_LENGTH = timedelta(hours=2)  # ...for this long
DEADLINE = SIM_START + timedelta(hours=14)
DIRTY, CLEAN = 320, 60
RUN_TIMEOUT_S = 300
CONN_ID = "carbon_ha_em"  # the Connection with the sentinel key; its id is the sweep's must-find marker

SITECUSTOMIZE = '''\
"""Installs the test's compressed clock in every Airflow process of tests/test_ha_triggerers.py."""
import os

if os.environ.get("CS_HA_REAL_EPOCH"):
    import time
    from datetime import datetime, timedelta

    from carbon_sensors.testing import CompressedClock, use_clock

    _factor = float(os.environ["CS_HA_FACTOR"])
    _start = datetime.fromisoformat(os.environ["CS_HA_SIM_START"]) + timedelta(
        seconds=(time.time() - float(os.environ["CS_HA_REAL_EPOCH"])) * _factor)
    _installed = use_clock(CompressedClock(_start, _factor, running=True))  # kept referenced: the clock stays installed
    _installed.__enter__()
'''


# -- PostgreSQL ------------------------------------------------------------------------------------------


@pytest.fixture
def databases():
    """Two fresh PostgreSQL databases (Airflow's metadata, the carbon ledger), dropped afterwards."""
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'carbon-sensors[postgres]'")
    url = sa.engine.make_url(PG_ADMIN_URL)
    try:
        admin = psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, password=url.password,
                                dbname=url.database, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server answers at {mask_url(PG_ADMIN_URL)} ({str(exc).strip().splitlines()[0]}); "
                    "set CS_TEST_POSTGRES_URL to one that does")
    suffix = uuid.uuid4().hex[:10]
    names = [f"cs_ha_airflow_{suffix}", f"cs_ha_ledger_{suffix}"]
    try:
        for name in names:
            admin.execute(f'CREATE DATABASE "{name}"')
            admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit TO off')  # no server crash here
        yield [url.set(database=name).render_as_string(hide_password=False) for name in names]
    finally:
        for name in names:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# -- the local forecast server ---------------------------------------------------------------------------

EM_STEP = timedelta(minutes=15)  # the gates ask for temporal_granularity=15_minutes
EM_PATHS = ("/v3/carbon-intensity/forecast", "/v3/carbon-intensity/latest")


def _em_stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class Window:
    """The clean window on the simulated clock: unset (all dirty) until the test opens it with :meth:`set`."""

    def __init__(self) -> None:
        self.start: datetime | None = None
        self.end: datetime | None = None

    def set(self, start: datetime) -> None:
        self.start, self.end = start, start + WINDOW_LENGTH

    def __contains__(self, when: datetime) -> bool:
        return self.start is not None and self.start <= when < self.end


def _electricitymaps(epoch: float, key: str, seen: Counter, window: Window):
    """Electricity Maps v3 ``/forecast`` and ``/latest`` for the simulated now, clean only in ``window``.

    Every request must carry ``key`` in its ``auth-token`` header; ``seen`` counts the ones that did
    ("keyed") and the ones that did not ("refused", answered 401).
    """

    def intensity(when: datetime) -> int:
        return CLEAN if when in window else DIRTY

    def answer(_n: int, handler: BaseHTTPRequestHandler) -> None:
        if handler.headers.get("auth-token") != key:
            seen["refused"] += 1
            send_json(handler, {"message": "Unauthorized: invalid or missing auth-token"}, status=401)
            return
        seen["keyed"] += 1
        url = urlsplit(handler.path)
        zone = parse_qs(url.query).get("zone", [None])[0]
        if url.path not in EM_PATHS or zone != "GB":
            send_json(handler, {"message": f"unknown path or zone: {handler.path}"}, status=404)
            return
        now = _sim_now(epoch)
        slot = datetime.fromtimestamp(now.timestamp() // EM_STEP.total_seconds() * EM_STEP.total_seconds(), UTC)
        if url.path.endswith("/latest"):
            send_json(handler, {"zone": zone, "carbonIntensity": intensity(slot), "datetime": _em_stamp(slot),
                                "updatedAt": _em_stamp(now), "createdAt": _em_stamp(slot),
                                "emissionFactorType": "lifecycle", "isEstimated": False, "estimationMethod": None})
            return
        # From one slot back: a requester's clock may still be in the slot before the server's.
        hours = int(parse_qs(url.query).get("horizonHours", ["24"])[0])
        points = [slot + EM_STEP * i for i in range(-1, int(timedelta(hours=hours) / EM_STEP))]
        send_json(handler, {"zone": zone, "updatedAt": _em_stamp(slot),
                            "forecast": [{"carbonIntensity": intensity(t), "datetime": _em_stamp(t)} for t in points]})

    return answer


# -- the sentinel sweep ----------------------------------------------------------------------------------


class Sweep:
    """Looks for byte strings in files and database cells, counting what it read and where each was found.

    Text cells that are Fernet tokens (trigger kwargs, connection passwords, variables) are decrypted
    with the deployment's key and searched too.
    """

    def __init__(self, needles: list[bytes], fernet: Fernet) -> None:
        self.needles, self.fernet = needles, fernet
        self.found: dict[bytes, list[str]] = {n: [] for n in needles}
        self.files = self.rows = self.bytes = 0

    def _look(self, data: bytes, where: str) -> None:
        self.bytes += len(data)
        if data.startswith(b"gAAAAA"):
            try:
                data += b"\n" + self.fernet.decrypt(data)
            except InvalidToken:
                pass
        for needle in self.needles:
            if needle in data:
                self.found[needle].append(where)

    def files_under(self, root: Path) -> None:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                self.files += 1
                self._look(path.read_bytes(), str(path))

    def database(self, engine: sa.Engine) -> None:
        """Every text, JSON and bytea column of every table in the database's own schemas."""
        with engine.connect() as conn:
            columns = conn.execute(sa.text(
                "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND data_type IN "
                "('text', 'character varying', 'character', 'json', 'jsonb', 'bytea', 'ARRAY', 'USER-DEFINED') "
                "ORDER BY 1, 2, ordinal_position")).all()
            tables: dict[tuple[str, str], list[tuple[str, str]]] = {}
            for schema, table, column, data_type in columns:
                tables.setdefault((schema, table), []).append((column, data_type))
            for (schema, table), cols in tables.items():
                select = ", ".join(f'"{c}"' if t == "bytea" else f'"{c}"::text' for c, t in cols)
                for row in conn.execute(sa.text(f'SELECT {select} FROM "{schema}"."{table}"')):
                    self.rows += 1
                    for (column, _), value in zip(cols, row, strict=True):
                        if value is not None:
                            self._look(bytes(value) if isinstance(value, bytes | memoryview) else value.encode(),
                                       f"{engine.url.database}: {table}.{column}")

    def where(self, needle: bytes, most: int = 10) -> str:
        places = sorted(set(self.found[needle]))
        return ", ".join(places[:most]) + (f" and {len(places) - most} more" if len(places) > most else "")


# -- the processes ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Deployment:
    """Airflow's processes, each started in its own session and stopped by its PID."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs, self.processes = env, logs, {}

    def start(self, name: str, *args: str, **env: str) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "airflow", *args], env={**self.env, **env}, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = process
        return process

    def check_alive(self, *skip: str) -> None:
        for name, process in self.processes.items():
            if name not in skip and process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def kill(self, name: str) -> None:
        """A crash: SIGKILL to the process and its children (its own process group, whose id is its PID)."""
        process = self.processes[name]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        """SIGTERM to each by its PID, the API server last (workers still talk to it), then SIGKILL to what is left."""
        order = sorted(self.processes.values(), key=lambda p: p is self.processes.get("api-server"))
        for process in order:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                if process is order[-1] or process is self.processes.get("scheduler"):
                    try:
                        process.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        pass
        for process in order:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            try:  # SIGKILL to what is left of its group (the LocalExecutor's workers, a trigger runner)
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if process.poll() is None:
                process.wait(timeout=10)


def _wait(what: str, condition, deployment: Deployment, timeout_s: float, interval_s: float = 1.0, skip=(),
          status=None):
    """``condition()``'s first truthy result; fails after ``timeout_s`` with ``status()`` (if given) ahead of the logs."""
    deadline = time.monotonic() + timeout_s
    while True:
        deployment.check_alive(*skip)
        if (result := condition()):
            return result
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {n}\n{deployment.tail(n, 1500)}" for n in deployment.processes)
            seen = f" ({status()})" if status else ""
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}{seen}\n{tails}")
        time.sleep(interval_s)


def _triggerer_jobs(db: sa.Engine) -> list[int]:
    with db.connect() as conn:
        return [r[0] for r in conn.execute(sa.text(
            "SELECT id FROM job WHERE job_type = 'TriggererJob' AND state = 'running' ORDER BY id"))]


def _deferred_by_triggerer(db: sa.Engine) -> dict[int | None, dict[int, int]]:
    """{trigger id: map index} of this DAG's deferred task instances, by the triggerer job that holds them."""
    held: dict[int | None, dict[int, int]] = {}
    with db.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT t.triggerer_id, t.id, ti.map_index FROM task_instance ti JOIN trigger t ON ti.trigger_id = t.id "
            "WHERE ti.dag_id = :dag AND ti.state = 'deferred'"), {"dag": DAG_ID})
        for triggerer_id, trigger_id, map_index in rows:
            held.setdefault(triggerer_id, {})[trigger_id] = map_index
    return held


def _task_states(db: sa.Engine, run_id: str) -> dict[str, int]:
    with db.connect() as conn:
        return dict(conn.execute(sa.text(
            "SELECT coalesce(state, 'none'), count(*) FROM task_instance WHERE dag_id = :d AND run_id = :r "
            "GROUP BY state"), {"d": DAG_ID, "r": run_id}).all())


def _triggers_of(db: sa.Engine, trigger_ids: set[int]) -> dict[int, int | None]:
    with db.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, triggerer_id FROM trigger WHERE id = ANY(:ids)"),
                            {"ids": list(trigger_ids)})
        return {r[0]: r[1] for r in rows}


def _say(began: float, message: str) -> None:
    print(f"[{time.monotonic() - began:6.1f} s] {message}", file=sys.__stderr__, flush=True)


def _sim_now(epoch: float) -> datetime:
    return SIM_START + timedelta(seconds=(time.time() - epoch) * FACTOR)


@pytest.mark.timeout(600)  # a slow start leaves the window 3 h (simulated) after the trigger all the same
def test_a_killed_triggerer_hands_its_gates_over(databases, tmp_path, capsys):
    began = time.monotonic()
    airflow_url, ledger_url = databases
    home, site, logs = tmp_path / "home", tmp_path / "site", tmp_path / "logs"
    for path in (home, site, logs):
        path.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    api_port = _free_port()
    sentinel = f"sentinel-key-{secrets.token_hex(8)}"
    fernet_key = Fernet.generate_key().decode()

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "CARBON_SENSORS_", "CS_HA_", "PYTHONPATH"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=airflow_url,
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC=airflow_url,  # psycopg 3 is async too (no asyncpg needed)
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__PARALLELISM="16",
        AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG="1024",
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{api_port}/execution/",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{api_port}",
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(32),
        AIRFLOW__CORE__FERNET_KEY=fernet_key,  # known, so the sweep can read encrypted cells
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",  # logs with content, for the sweep to read
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(_free_port()),
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
        AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC="2",
        AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC="1",
        # A triggerer is taken for dead (and its triggers handed over) after this long without a heartbeat:
        # long enough that one starved for CPU by 16 starting tasks on 2 cores is not, short for the test.
        AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD="15",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="10",
        CARBON_SENSORS_LEDGER_URL=ledger_url,
        **{f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(
            {"conn_type": "carbon_intensity", "password": sentinel, "extra": {"provider": "electricitymaps"}})},
        CS_HA_CONN_ID=CONN_ID,
        PYTHONPATH=os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])]),
        CS_HA_TASKS=str(TASKS),
        CS_HA_DEADLINE=DEADLINE.isoformat(),
        CS_HA_FACTOR=str(FACTOR),
        CS_HA_SIM_START=SIM_START.isoformat(),
    )
    migrate = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True,
                             text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]

    db = sa.create_engine(airflow_url, poolclass=sa.pool.NullPool)
    ledger_db = sa.create_engine(ledger_url, poolclass=sa.pool.NullPool)
    deployment = Deployment(env, logs)
    seen: Counter = Counter()  # the forecast server's requests: "keyed" (with the sentinel), "refused"
    with ExitStack() as stack:
        epoch = time.time()  # simulated SIM_START; every process's clock is anchored here
        window = Window()
        forecast = stack.enter_context(faulty_server(_electricitymaps(epoch, sentinel, seen, window)))
        stack.callback(ledger_db.dispose)
        stack.callback(db.dispose)
        stack.callback(deployment.stop_all)
        env.update(CS_HA_FORECAST_URL=forecast["url"], CS_HA_REAL_EPOCH=repr(epoch))

        deployment.start("api-server", "api-server", "-H", "127.0.0.1", "-p", str(api_port), "-w", "1")
        deployment.start("dag-processor", "dag-processor")
        deployment.start("scheduler", "scheduler")
        # Triggerer A starts alone and holds at most 100 gates; B, which can take all of them, starts
        # once A holds some, so both hold gates whichever would poll the trigger table first.
        # They log at DEBUG: they are where the key is read and sent.
        deployment.start("triggerer-a", "triggerer", "--capacity", "100",
                         AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(_free_port()),
                         AIRFLOW__LOGGING__LOGGING_LEVEL="DEBUG")
        (job_a,) = _wait("triggerer A's job", lambda: _triggerer_jobs(db), deployment, 120)
        job_b = None

        def api_healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{api_port}/api/v2/monitor/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        _wait("the API server", api_healthy, deployment, 120)

        def dag_parsed() -> bool:
            with db.connect() as conn:
                return conn.execute(sa.text("SELECT count(*) FROM serialized_dag WHERE dag_id = :d"),
                                    {"d": DAG_ID}).scalar() > 0

        _wait("the DAG to be parsed", dag_parsed, deployment, 120)
        run_id = f"ha__{uuid.uuid4().hex[:8]}"
        window.set(_sim_now(epoch) + WINDOW_AFTER)
        assert window.end + timedelta(hours=1) < DEADLINE, (
            f"the deployment took until {_sim_now(epoch):%H:%M} simulated to start: no room for a window before "
            f"the deadline {DEADLINE:%H:%M}")
        trigger = subprocess.run([sys.executable, "-m", "airflow", "dags", "trigger", DAG_ID, "--run-id", run_id],
                                 env=env, capture_output=True, text=True, timeout=120)
        assert trigger.returncode == 0, trigger.stdout[-2000:] + trigger.stderr[-2000:]
        triggered_at = time.monotonic()
        _say(began, f"{DAG_ID} triggered ({TASKS} mapped gates), {_sim_now(epoch):%H:%M} simulated, "
                    f"window {window.start:%H:%M}-{window.end:%H:%M}")

        def holding() -> str:
            held = _deferred_by_triggerer(db)
            return (f"{_sim_now(epoch):%H:%M} simulated, window at {window.start:%H:%M}; deferred gates by triggerer "
                    f"job: {({job: len(gates) for job, gates in held.items()})}, A is job {job_a}, B is job {job_b}; "
                    f"task states: {_task_states(db, run_id)}")

        # Until half an hour (simulated) before the window: a kill after that would not test a handover.
        latest_kill = window.start - timedelta(minutes=30)

        def until_latest_kill() -> float:
            return max(0.0, (latest_kill - _sim_now(epoch)).total_seconds() / FACTOR)

        _wait("triggerer A to hold 40 gates", lambda: len(_deferred_by_triggerer(db).get(job_a, ())) >= 40,
              deployment, until_latest_kill(), status=holding)
        deployment.start("triggerer-b", "triggerer", "--capacity", "1000",
                         AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(_free_port()),
                         AIRFLOW__LOGGING__LOGGING_LEVEL="DEBUG")
        job_b = _wait("triggerer B's job", lambda: next((j for j in _triggerer_jobs(db) if j != job_a), None),
                      deployment, 120)
        _say(began, f"triggerer B started (job {job_b}) with A holding gates, {_sim_now(epoch):%H:%M} simulated")

        # Wait until most gates wait, in both triggerers, then kill A outright.
        def both_hold() -> dict | None:
            held = _deferred_by_triggerer(db)
            deferred = sum(len(gates) for gates in held.values())
            return held if (deferred >= TASKS * 3 // 4 and len(held.get(job_a, ())) >= 20
                            and len(held.get(job_b, ())) >= 20) else None

        held = _wait("deferred tasks in both triggerers", both_hold, deployment, until_latest_kill(), status=holding)
        sim_at_kill = _sim_now(epoch)
        deployment.kill("triggerer-a")
        _say(began, f"SIGKILLed triggerer A (job {job_a}) holding {len(held[job_a])} gates; B (job {job_b}) holds "
                    f"{len(held[job_b])}; {_sim_now(epoch):%H:%M} simulated")
        killed_at = time.monotonic()
        orphans = set(held[job_a])
        orphan_tasks = set(held[job_a].values())

        # B takes over A's triggers once A's heartbeat is stale (before any of them fires at the window).
        def taken_over() -> dict | None:
            now = _triggers_of(db, orphans)
            return now if now and all(owner == job_b for owner in now.values()) else None

        owners = _wait("triggerer B to take over A's triggers", taken_over, deployment, 60, skip=("triggerer-a",))
        takeover_s = time.monotonic() - killed_at
        _say(began, f"B took over A's {len(owners)} remaining triggers after {takeover_s:.1f} s")
        assert _sim_now(epoch) < window.start, "the takeover was not seen before the window opened"

        # The trigger rows exist only while the gates wait: sweep the metadata database now, too.
        # Besides the key, the sweeps look for markers known to be there: the connection id, the run id.
        key, conn_marker, run_marker = sentinel.encode(), CONN_ID.encode(), run_id.encode()
        needles = [key, conn_marker, run_marker]
        waiting = Sweep(needles, Fernet(fernet_key))
        waiting.database(db)
        trigger_rows = waiting.found[conn_marker].count(f"{db.url.database}: trigger.kwargs")
        _say(began, f"swept the metadata database while the gates wait: {waiting.rows} rows, "
                    f"{trigger_rows} trigger rows naming {CONN_ID}")

        def run_done() -> str | None:
            with db.connect() as conn:
                state = conn.execute(sa.text("SELECT state FROM dag_run WHERE dag_id = :d AND run_id = :r"),
                                     {"d": DAG_ID, "r": run_id}).scalar()
            return state if state in ("success", "failed") else None

        state = _wait("the DAG run to finish", run_done, deployment, RUN_TIMEOUT_S, interval_s=2,
                      skip=("triggerer-a",))
        run_s = time.monotonic() - triggered_at
        _say(began, f"DAG run {state}, {_sim_now(epoch):%H:%M} simulated")

        with db.connect() as conn:
            ti_states = Counter(dict(conn.execute(sa.text(
                "SELECT state, count(*) FROM task_instance WHERE dag_id = :d AND run_id = :r AND task_id = :t "
                "GROUP BY state"), {"d": DAG_ID, "r": run_id, "t": TASK_ID}).all()))
        with ledger_db.connect() as conn:
            records = conn.execute(sa.select(RUNS).where(RUNS.c.dag_id == DAG_ID, RUNS.c.run_id == run_id)).mappings().all()

    keys = Counter((r["task_id"], r["map_index"], r["try_number"]) for r in records)
    late = [(r["map_index"], r["started_at"], r["latest_start"]) for r in records
            if r["latest_start"] is None or r["started_at"] > r["latest_start"] + LATEST_START_TOLERANCE]
    waited = [r for r in records if r["planned_start"] is not None and r["planned_start"] >= window.start - timedelta(minutes=1)]

    # With every process stopped, their logs are complete: sweep them, AIRFLOW_HOME and both databases.
    sweeps = {name: Sweep(needles, Fernet(fernet_key)) for name in ("logs", "home", "metadata", "ledger")}
    sweeps["logs"].files_under(logs)
    sweeps["home"].files_under(home)
    sweeps["metadata"].database(db)
    sweeps["ledger"].database(ledger_db)
    sweeps["metadata while waiting"] = waiting
    hits = {name: sweep.where(key) for name, sweep in sweeps.items() if sweep.found[key]}
    with capsys.disabled():
        print(f"\nHA triggerers: {ti_states.get('success', 0)}/{TASKS} mapped tasks succeeded (run {state}); "
              f"1 triggerer kill survived: {len(orphans)} triggers of job {job_a} taken over by job {job_b} "
              f"in {takeover_s:.1f} s (killed at {sim_at_kill:%H:%M} simulated, window {window.start:%H:%M}); "
              f"{len(records)} ledger records ({len(waited)} planned for the window), "
              f"{sum(keys.values()) - len(keys)} duplicates, {len(late)} late starts; "
              f"run took {run_s:.0f} s, test {time.monotonic() - began:.0f} s")
        print(f"Sentinel key: {seen['keyed']} forecast requests carried it, {seen['refused']} refused; swept "
              f"{sweeps['logs'].files} process logs ({sweeps['logs'].bytes} bytes), "
              f"{sweeps['home'].files} files under AIRFLOW_HOME ({sweeps['home'].bytes} bytes), "
              f"{sweeps['metadata'].rows} metadata rows ({sweeps['metadata'].bytes} bytes) after the run and "
              f"{waiting.rows} ({waiting.bytes} bytes, {trigger_rows} trigger rows) while the gates waited, "
              f"{sweeps['ledger'].rows} ledger rows ({sweeps['ledger'].bytes} bytes): "
              f"{sum(len(sweep.found[key]) for sweep in sweeps.values())} hits")

    assert state == "success", ti_states
    assert ti_states == Counter({"success": TASKS}), ti_states
    assert set(owners.values()) == {job_b}
    assert len(records) == TASKS and all(n == 1 for n in keys.values()), keys.most_common(3)
    assert {r["status"] for r in records} == {"success"}
    assert not late, late[:5]
    assert len(waited) >= len(orphans), "the gates did not wait for the clean window"
    # The gates A held waited for the window in B: none was let go early when B took it over.
    early = [(r["map_index"], r["started_at"]) for r in records
             if r["map_index"] in orphan_tasks and r["started_at"] < window.start - LATEST_START_TOLERANCE]
    assert not early, early[:5]

    # The key travelled: the API got it on every request, never a wrong or missing one...
    assert seen["keyed"] > 0 and seen["refused"] == 0, seen
    # ...and it is found nowhere else.
    assert not hits, f"the sentinel API key was found in {hits}"
    # The sweeps are not vacuous: they read every process's log and found the markers where they must be.
    assert sweeps["logs"].files == len(deployment.processes), sweeps["logs"].files
    assert all((logs / f"{name}.log").stat().st_size > 0 for name in deployment.processes)
    assert str(logs / "scheduler.log") in sweeps["logs"].found[run_marker]
    # the triggerers log reading the Connection (at DEBUG) into the trigger logs under AIRFLOW_HOME
    assert any(".log.trigger." in path for path in sweeps["home"].found[conn_marker]), sweeps["home"].where(conn_marker)
    assert trigger_rows > 0, waiting.where(conn_marker)  # encrypted kwargs, read decrypted
    assert f"{db.url.database}: serialized_dag.data" in sweeps["metadata"].found[conn_marker]
    assert f"{ledger_db.url.database}: carbon_sensors_runs.source_spec" in sweeps["ledger"].found[conn_marker]
