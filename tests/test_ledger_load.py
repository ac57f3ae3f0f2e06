"""The ledger on PostgreSQL under load and crashes: concurrent writers with retries, and workers killed mid-run."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from carbon_sensors.ledger import RUNS, Ledger, mask_url
from carbon_sensors.records import RunKey, RunRecord

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

PG_ADMIN_URL = os.environ.get("CS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
T0 = datetime(2026, 6, 15, 2, tzinfo=UTC)
WORKERS = 8
RECORDS = 10_000  # first tries, across all workers
CLI = Path(sys.executable).with_name("carbon-sensors")


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database for one test, dropped afterwards; skipped where no server answers."""
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'carbon-sensors[postgres]'")
    url = sa.engine.make_url(PG_ADMIN_URL)
    try:
        admin = psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, password=url.password,
                                dbname=url.database, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server answers at {mask_url(PG_ADMIN_URL)} ({str(exc).strip().splitlines()[0]}); "
                    "set CS_TEST_POSTGRES_URL to one that does")
    name = f"cs_load_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    # Commits do not wait for the WAL to reach disk: the same atomicity, visibility and conflicts (what these
    # tests are about), only no durability through a crash of the server itself, which no test here causes.
    try:
        admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit TO off')
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# -- the writers ---------------------------------------------------------------------------------------
# Worker w owns records i = 0 .. count-1 (run id "w{w}-{i}"). Every record is started, then finished.
# i % 10 == 3: a retried write of the same try, sent by the next worker while the owner writes it (10 %).
# i % 20 == 7: the owner runs a second try (try_number 2), started then finished (5 %).
# i % 50 == 11: a stale start of the first try arrives again after its finish, and must not undo it.


def _key(owner: int, i: int, try_number: int = 1) -> RunKey:
    return RunKey("airflow", "load", f"task_{i % 7}", f"w{owner}-{i}", try_number, -1)


def _started(key: RunKey, i: int) -> RunRecord:
    at = T0 + timedelta(seconds=i, minutes=key.try_number)
    return RunRecord(key=key, status="started", submitted_at=T0, started_at=at, zone="DE", team=key.run_id.split("-")[0])


def _finished(key: RunKey, i: int) -> RunRecord:
    record = _started(key, i)
    return replace(record, status="success", ended_at=record.started_at + timedelta(minutes=1), energy_kwh=0.001 * (i + 1),
                   carbon_g=0.3 * (i + 1), carbon_signal="average")


def _write(ledger: Ledger, key: RunKey, i: int, sent: Counter) -> None:
    ledger.start(_started(key, i))
    ledger.finish(_finished(key, i))
    sent["writes"] += 2


def _writer(url: str, worker: int, count: int, barrier, results) -> None:
    sent: Counter = Counter()
    barrier.wait(timeout=120)  # all at once, on a database nobody has migrated yet
    neighbour = (worker - 1) % WORKERS  # this worker retries its neighbour's writes
    with Ledger(url, spool_dir=os.devnull) as ledger:
        for i in range(count):
            _write(ledger, _key(worker, i), i, sent)
            if i % 10 == 3:
                _write(ledger, _key(neighbour, i), i, sent)
                sent["retried"] += 1
            if i % 20 == 7:
                _write(ledger, _key(worker, i, try_number=2), i, sent)
                sent["next_try"] += 1
            if i % 50 == 11:
                ledger.start(_started(_key(worker, i), i))
                sent["stale_start"] += 1
    results.put((worker, dict(sent)))


# -- a worker killed mid-run ---------------------------------------------------------------------------

RECORDER = """
import sys, time
from datetime import timedelta
from carbon_sensors.metering import MeterSettings
from carbon_sensors.records import RunKey
from carbon_sensors.recording import RunRecorder

key = RunKey("python", "load", "killed", sys.argv[2])
with RunRecorder(key, ledger=sys.argv[1], meter_settings=MeterSettings(gpu=False),
                 heartbeat_interval=timedelta(seconds=0.2)):
    print("started", flush=True)
    time.sleep(300)
"""


def _start_recorder(url: str, run_id: str, tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "CARBON_SENSORS_SPOOL_DIR": str(tmp_path / "spool")}
    worker = subprocess.Popen([sys.executable, "-c", RECORDER, url, run_id], stdout=subprocess.PIPE, text=True, env=env)
    assert worker.stdout.readline().strip() == "started"
    return worker


def _kill(worker: subprocess.Popen) -> None:
    worker.send_signal(signal.SIGKILL)
    assert worker.wait(timeout=30) == -signal.SIGKILL


def _left_started(url: str, run_id: str) -> RunRecord:
    with Ledger(url, spool_dir=os.devnull) as ledger:
        record = ledger.get(RunKey("python", "load", "killed", run_id))
    assert record is not None and record.status == "started" and record.ended_at is None
    assert record.heartbeat_at is not None and record.heartbeat_at > record.started_at  # it was alive, then silent
    return record


# -- the tests -------------------------------------------------------------------------------------------


def test_eight_writers_with_retries_and_a_killed_worker_lose_and_duplicate_nothing(postgres_url, tmp_path):
    """8 processes write 10,000 runs at once with retries and second tries; a SIGKILLed recorder is closed as abandoned."""
    began = time.monotonic()
    count = RECORDS // WORKERS
    victim = _start_recorder(postgres_url, "mid-load", tmp_path)  # its record exists before the writers start
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    writers = [ctx.Process(target=_writer, args=(postgres_url, w, count, barrier, results)) for w in range(WORKERS)]
    try:
        for p in writers:
            p.start()
        time.sleep(2.0)
        _kill(victim)  # mid-run, while the writers are busy
        sent = dict(results.get(timeout=240) for _ in writers)
        for p in writers:
            p.join(60)
    finally:
        victim.kill()
        for p in writers:
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in writers] == [0] * WORKERS
    written = time.monotonic() - began

    expected = {_key(w, i) for w in range(WORKERS) for i in range(count)}
    expected |= {_key(w, i, try_number=2) for w in range(WORKERS) for i in range(count) if i % 20 == 7}
    totals = sum((Counter(s) for s in sent.values()), Counter())
    second_tries = len(expected) - RECORDS
    assert totals["retried"] == RECORDS // 10 and totals["next_try"] == second_tries == 504  # 63 of each 1,250

    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(sa.func.count()).select_from(RUNS)).scalar_one()
            key_columns = [RUNS.c[name] for name in ("orchestrator", "dag_id", "task_id", "run_id", "try_number",
                                                     "map_index")]
            distinct = conn.execute(sa.select(sa.func.count()).select_from(
                sa.select(*key_columns).distinct().subquery())).scalar_one()
    finally:
        engine.dispose()
    with Ledger(postgres_url, spool_dir=tmp_path / "spool") as ledger:
        records = ledger.records(dag_id="load")
        left = _left_started(postgres_url, "mid-load")
        time.sleep(1.0)  # the killed worker's last heartbeat is now over a second old
        abandoned = ledger.abandon_stale(timedelta(seconds=1), datetime.now(UTC))
        closed = ledger.get(left.key)
    loaded = [r for r in records if r.key.task_id != "killed"]
    statuses = Counter(r.status for r in loaded)
    print(f"\n{WORKERS} writers: {totals['writes'] + totals['stale_start']} writes ({totals['retried']} retried by "
          f"another worker, {totals['next_try']} second tries, {totals['stale_start']} stale starts) in {written:.1f} s; "
          f"rows {rows}, distinct keys {distinct}, expected {len(expected)}, statuses {dict(statuses)}; "
          f"abandoned {len(abandoned)}")

    assert rows == distinct == len(expected) + 1 == 10_505  # 10,000 first tries, 504 second tries, the killed run
    assert {r.key for r in loaded} == expected and len(loaded) == len(expected)  # nothing lost, nothing extra
    assert statuses == {"success": len(expected)}  # every finished record stays finished, stale starts included
    assert all(r.ended_at == r.started_at + timedelta(minutes=1) and r.team == r.key.run_id.split("-")[0] for r in loaded)
    assert abandoned == [left.key]  # only the killed run: no finished record is touched
    assert closed.status == "abandoned" and closed.ended_at == left.heartbeat_at


def test_a_killed_worker_is_closed_by_the_reconcile_command(postgres_url, tmp_path):
    """SIGKILL a real recorder on PostgreSQL; `carbon-sensors reconcile --stale-after` marks its run abandoned."""
    if not CLI.exists():
        pytest.skip(f"the carbon-sensors console script is not installed next to {sys.executable}")
    worker = _start_recorder(postgres_url, "reconciled", tmp_path)
    try:
        time.sleep(0.7)  # a few heartbeats
        _kill(worker)
    finally:
        worker.kill()
    left = _left_started(postgres_url, "reconciled")

    def reconcile(stale_after: str) -> dict:
        command = [str(CLI), "reconcile", "--ledger", postgres_url, "--stale-after", stale_after, "--no-reprice",
                   "--json", "--spool-dir", str(tmp_path / "spool")]
        return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)

    fresh = reconcile("10m")
    assert fresh["abandoned"] == 0  # silent for seconds, not ten minutes: alive as far as anyone can tell
    assert _left_started(postgres_url, "reconciled") == left
    time.sleep(1.2)
    done = reconcile("1")
    print(f"\nreconcile right after the kill: {fresh}; a second later: {done}")
    assert done["abandoned"] == 1
    with Ledger(postgres_url, spool_dir=tmp_path / "spool") as ledger:
        closed = ledger.get(left.key)
    assert closed.status == "abandoned" and closed.ended_at == left.heartbeat_at
    assert any("abandoned" in note for note in closed.notes)
