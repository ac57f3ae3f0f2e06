"""The ledger's decision trail: the v3 migration, round trips, and which gates count as waiting."""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from carbon_sensors import ledger as ledger_module
from carbon_sensors.errors import ConfigurationError
from carbon_sensors.ledger import SCHEMA_VERSION, DecisionEntry, Ledger
from carbon_sensors.records import RunKey, RunRecord

T0 = datetime(2026, 6, 15, 2, tzinfo=UTC)
PG_ADMIN_URL = os.environ.get("CS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def key(task="embed", run="scheduled__1", try_number=1, map_index=-1, dag="catalog"):
    return RunKey("airflow", dag, task, run, try_number, map_index)


def wait(k, at=T0, planned_h=3, latest_h=5, **changes):
    entry = DecisionEntry(
        k, at, "wait", reason=f"waiting for the window at {planned_h}h", zone="DE",
        planned_start=T0 + timedelta(hours=planned_h), latest_start=T0 + timedelta(hours=latest_h),
        deadline=T0 + timedelta(hours=latest_h + 2), next_check=T0 + timedelta(hours=planned_h),
        submitted_at=T0, expected_duration_s=3600.0, intensity=210.5, intensity_at_submission=300.25,
        saving_pct=29.9, signal="average", source="embedded-profile", source_spec={"kind": "embedded"},
        origin="triggerer", price=-4.5, price_at_submission=88.125, cost_change_pct=-104.75, price_currency="EUR",
    )
    return replace(entry, **changes)


def go(k, at):
    return DecisionEntry(k, at, "go", reason="the window has come", zone="DE", origin="triggerer")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    """An empty ledger: an SQLite file, then a fresh PostgreSQL database (skipped where none answers)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    psycopg = pytest.importorskip("psycopg")
    admin_url = sa.engine.make_url(PG_ADMIN_URL)
    try:
        admin = psycopg.connect(host=admin_url.host, port=admin_url.port or 5432, user=admin_url.username,
                                password=admin_url.password, dbname=admin_url.database, autocommit=True,
                                connect_timeout=3)
    except psycopg.OperationalError:
        pytest.skip("no PostgreSQL server answers; set CS_TEST_POSTGRES_URL to one that does")
    name = f"cs_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def ledger(url, tmp_path):
    with Ledger(url, spool_dir=tmp_path / "spool") as ledger:
        yield ledger


def test_a_v2_ledger_is_upgraded_to_the_decision_trail(url, tmp_path):
    """A ledger left at schema v2 keeps its records and gains the decisions table on first use."""
    record = RunRecord(key("enrich"), status="success", started_at=T0, ended_at=T0 + timedelta(hours=1), energy_kwh=2.0)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        ledger_module._MIGRATIONS[0](conn)
        ledger_module._MIGRATIONS[1](conn)
        conn.execute(ledger_module.SCHEMA.insert().values(id=1, version=2, migrated_at=T0))
        v2_runs = ledger_module._runs_table(sa.MetaData(), 2)
        conn.execute(v2_runs.insert().values(
            {k: v for k, v in ledger_module._to_row(record, T0).items() if k in v2_runs.c}))
        assert not sa.inspect(conn).has_table("carbon_sensors_decisions")
    engine.dispose()

    with Ledger(url, spool_dir=tmp_path / "spool") as ledger:
        assert ledger.schema_version() == 2
        assert ledger.get(record.key) == record
        assert ledger.schema_version() == SCHEMA_VERSION == 4
        ledger.add_decisions([wait(key())])
        assert [(d.status, d.price, d.price_currency) for d in ledger.decisions(key())] == [("wait", -4.5, "EUR")]
        with ledger.engine.connect() as conn:
            indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes("carbon_sensors_decisions")}
        assert {"ix_carbon_sensors_decisions_status", "ix_carbon_sensors_decisions_decided_at"} <= indexes


def test_decisions_round_trip_with_every_field(ledger):
    """Every field of a decision comes back as written: aware UTC times, floats, the source spec as JSON."""
    entry = wait(key(map_index=4, try_number=2), fallback="embedded-profile", forced_reason=None,
                 source_spec={"kind": "file", "path": "/data/x.csv", "options": [1, None]})
    ledger.add_decisions([entry])
    (back,) = ledger.decisions(entry.key)
    assert back == entry
    assert back.planned_start.tzinfo is not None


def test_the_same_decision_twice_is_stored_once(ledger):
    """Adding a decision again (a retried batch) keeps one row; another decision of the same try is kept."""
    ledger.add_decisions([wait(key())])
    ledger.add_decisions([wait(key()), go(key(), T0 + timedelta(hours=3))])
    assert [d.status for d in ledger.decisions(key())] == ["wait", "go"]


def test_the_trail_is_filtered_by_run_and_ordered_by_time(ledger):
    """decisions() filters by DAG, task, run and map index, oldest first; limit keeps the newest."""
    ledger.add_decisions([
        go(key(), T0 + timedelta(hours=2)), wait(key()), wait(key(run="other")), wait(key(map_index=1)),
        wait(key(try_number=2), at=T0 + timedelta(hours=1)),
    ])
    trail = ledger.decisions(dag_id="catalog", task_id="embed", run_id="scheduled__1", map_index=-1)
    assert [(d.key.try_number, d.status) for d in trail] == [(1, "wait"), (2, "wait"), (1, "go")]
    assert [d.status for d in ledger.decisions(run_id="scheduled__1", map_index=-1, limit=1)] == ["go"]
    assert len(ledger.decisions(status="wait")) == 4


def test_unknown_statuses_are_refused(ledger):
    """A decision status outside wait, go, forced and error is a configuration error, on writing and reading."""
    with pytest.raises(ConfigurationError, match="unknown decision status 'maybe'"):
        ledger.add_decisions([replace(wait(key()), status="maybe")])
    with pytest.raises(ConfigurationError, match="unknown decision status"):
        ledger.decisions(status="maybe")


def test_waiting_is_the_latest_wait_of_each_try_without_a_record(ledger):
    """A try counts as waiting when its newest decision is a wait and no run record has its key."""
    still = key("still_waiting")
    replanned = key("replanned")
    opened = key("opened")
    recorded = key("recorded")
    ledger.add_decisions([
        wait(still), wait(replanned), wait(replanned, at=T0 + timedelta(minutes=30), planned_h=4),
        wait(opened), go(opened, T0 + timedelta(hours=3)), wait(recorded),
    ])
    ledger.start(RunRecord(recorded, started_at=T0 + timedelta(hours=3)))  # the work started; its go was lost
    waiting = ledger.waiting(T0 + timedelta(hours=1))
    assert [e.key.task_id for e in waiting] == ["still_waiting", "replanned"]
    assert waiting[1].planned_start == T0 + timedelta(hours=4)


def test_a_wait_long_past_its_latest_start_is_stale(ledger):
    """A gate never waits past its latest start, so a wait whose latest start is over an hour gone is left out."""
    ledger.add_decisions([wait(key("gone"), latest_h=2), wait(key("late"), latest_h=4)])
    now = T0 + timedelta(hours=4, minutes=30)
    assert [e.key.task_id for e in ledger.waiting(now)] == ["late"]
    assert [e.key.task_id for e in ledger.waiting(now, grace=timedelta(hours=3))] == ["gone", "late"]


def test_from_event_reads_a_gate_event():
    """An entry is built from Decision.to_event(): ISO strings become datetimes and extra fields are added."""
    event = {"status": "forced", "reason": "latest start", "zone": "GB", "planned_start": "2026-06-15T05:00:00+00:00",
             "latest_start": "2026-06-15T05:00:00+00:00", "deadline": None, "intensity": 180.0, "forced": True,
             "forced_reason": "latest_start", "decided_at": "2026-06-15T05:00:30+00:00", "saving_pct": None}
    entry = DecisionEntry.from_event(key(), event, origin="worker", expected_duration_s=1800)
    assert entry.decided_at == datetime(2026, 6, 15, 5, 0, 30, tzinfo=UTC)
    assert (entry.status, entry.forced_reason, entry.origin, entry.expected_duration_s) == (
        "forced", "latest_start", "worker", 1800)
    assert entry.to_dict()["decided_at"] == "2026-06-15T05:00:30+00:00"
    with pytest.raises(ConfigurationError, match="decided_at"):
        DecisionEntry.from_event(key(), {"status": "go"})
