"""The run ledger: round trips, idempotent writes, reconciling, the spool, schema versions and concurrency."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import uuid
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from carbon_sensors import ledger as ledger_module
from carbon_sensors.errors import ConfigurationError, LedgerError, LedgerSchemaError
from carbon_sensors.ledger import (
    RUNS,
    SCHEMA_VERSION,
    Ledger,
    default_ledger_url,
    default_spool_dir,
    mask_url,
    record_from_json,
    record_to_json,
)
from carbon_sensors.records import ComponentEnergy, RunKey, RunRecord, TokenUsage

#: The record fields schema v4 added (the market price next to carbon).
V4_PRICE_FIELDS = ("price_currency", "price_source", "expected_price_per_mwh", "price_per_mwh",
                   "counterfactual_price_per_mwh", "expected_energy_cost", "energy_cost", "counterfactual_energy_cost",
                   "saved_energy_cost")

T0 = datetime(2026, 6, 15, 2, tzinfo=UTC)
PG_ADMIN_URL = os.environ.get("CS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
UNREACHABLE_PG = "postgresql+psycopg://carbon:s3cret-pw@127.0.0.1:1/ledger"


def key(run: str = "scheduled__2026-06-15", task: str = "enrich", dag: str = "nightly", try_number: int = 1,
        map_index: int = -1) -> RunKey:
    return RunKey("airflow", dag, task, run, try_number, map_index)


def full_record(k: RunKey | None = None, **changes) -> RunRecord:
    """A record with every field set to something other than its default."""
    record = RunRecord(
        key=k or key(map_index=3, try_number=2),
        status="success",
        team="search", project="catalog", cost_centre="cc-42",
        submitted_at=T0 - timedelta(hours=3), planned_start=T0, latest_start=T0 + timedelta(hours=2),
        deadline=T0 + timedelta(hours=4), started_at=T0 + timedelta(microseconds=123456),
        ended_at=T0 + timedelta(hours=1, microseconds=7), heartbeat_at=T0 + timedelta(minutes=55),
        zone="DE", forced=True, forced_reason="latest start reached", fallback="embedded-profile",
        decision_reason="waited for the wind", error="boom: ünïcode ✓ 'quotes' \"and\" newlines\nhere",
        energy_kwh=1.2345678901234567, energy_measured=True,
        components=(ComponentEnergy("cpu", "rapl", True, 0.5, "package-0"),
                    ComponentEnergy("gpu", "nvml", True, 0.7345678901234567, "2 x H100")),
        tokens=(TokenUsage("gpt-x", 1200, 300), TokenUsage("small", 5, 0)),
        carbon_signal="marginal", carbon_source="watttime",
        source_spec={"kind": "watttime", "conn_id": "wt_default", "options": [1, 2.5, None]},
        carbon_basis="forecast", intensity_g_per_kwh=321.5, counterfactual_intensity_g_per_kwh=400.25,
        carbon_g=396.9, counterfactual_carbon_g=494.1, saved_carbon_g=97.2,
        cost_energy_usd=0.31, cost_tokens_usd=0.02, cost_gpu_usd=4.5, cost_usd=4.83,
        price_currency="EUR", price_source="entsoe", expected_price_per_mwh=61.0, price_per_mwh=58.5,
        counterfactual_price_per_mwh=-12.25, expected_energy_cost=0.0915, energy_cost=0.08775,
        counterfactual_energy_cost=-0.018375, saved_energy_cost=-0.106125,
        repriced_at=T0 + timedelta(days=1), changes={"carbon_g": [400.0, 396.9]}, notes=("first", "second"),
    )
    return replace(record, **changes)


def started(k: RunKey, at: datetime = T0, **changes) -> RunRecord:
    return replace(RunRecord(key=k, status="started", started_at=at, submitted_at=at), **changes)


def finished(k: RunKey, start: datetime = T0, minutes: float = 60, status: str = "success", **changes) -> RunRecord:
    return replace(started(k, start), status=status, ended_at=start + timedelta(minutes=minutes), **changes)


# -- backends --------------------------------------------------------------------------------------


def _pg_admin():
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'carbon-sensors[postgres]'")
    url = sa.engine.make_url(PG_ADMIN_URL)
    try:
        return psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, password=url.password,
                               dbname=url.database, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server answers at {mask_url(PG_ADMIN_URL)} ({str(exc).strip().splitlines()[0]}); "
                    "set CS_TEST_POSTGRES_URL to one that does")


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    admin = _pg_admin()
    name = f"cs_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    """The URL of an empty ledger: an SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def ledger(url, tmp_path):
    with Ledger(url, spool_dir=tmp_path / "spool") as ledger:
        yield ledger


def _rows(ledger: Ledger) -> list:
    with ledger.engine.connect() as conn:
        return conn.execute(sa.select(RUNS).order_by(RUNS.c.id)).mappings().all()


# -- round trips -----------------------------------------------------------------------------------


def test_the_full_record_sets_every_field():
    """The round-trip record differs from the defaults in every field, so a new field cannot go unstored unnoticed."""
    full, default = full_record(), RunRecord(key=key())
    same = [f.name for f in fields(RunRecord) if f.name != "key" and getattr(full, f.name) == getattr(default, f.name)]
    assert same == []


def test_round_trip(ledger):
    """A record read back equals the record written, field for field."""
    record = full_record()
    ledger.finish(record)
    assert ledger.get(record.key) == record
    assert ledger.records() == [record]


def test_round_trip_of_a_minimal_record(ledger):
    """A record that knows almost nothing comes back the same, with its Nones and empty tuples."""
    record = RunRecord(key=key())
    ledger.start(record)
    assert ledger.get(record.key) == record


def test_datetimes_come_back_aware_utc(ledger):
    """A time written with another offset comes back as the same instant, in UTC."""
    berlin = timezone(timedelta(hours=2))
    ledger.start(started(key(), at=datetime(2026, 6, 15, 4, 30, tzinfo=berlin)))
    back = ledger.get(key()).started_at
    assert back.tzinfo == UTC and back == datetime(2026, 6, 15, 2, 30, tzinfo=UTC)


def test_naive_datetimes_are_refused(ledger):
    """A naive datetime in a record is a ConfigurationError, not a guess."""
    with pytest.raises(ConfigurationError, match="no time zone"):
        ledger.start(started(key(), at=datetime(2026, 6, 15, 2)))


def test_report_columns_are_filled(ledger):
    """The denormalised tokens, duration and delay columns hold the record's figures."""
    ledger.finish(full_record())
    row = _rows(ledger)[0]
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (1205, 300, 1505)
    assert row["duration_s"] == pytest.approx(3600 - 0.123449)
    assert row["delay_s"] == pytest.approx(3 * 3600 + 0.123456)
    assert row["updated_at"].tzinfo == UTC


def test_json_round_trip():
    """record_to_json makes plain JSON, and record_from_json reads it back to the same record."""
    record = full_record()
    text = json.dumps(record_to_json(record))
    assert record_from_json(json.loads(text)) == record
    assert record_from_json(text) == record
    assert json.loads(text)["started_at"] == "2026-06-15T02:00:00.123456+00:00"


def test_json_ignores_fields_it_does_not_know_and_refuses_non_records():
    """Unknown fields (from a newer version) are ignored; something that is no record is a clear error."""
    data = record_to_json(RunRecord(key=key()))
    data["a_future_field"] = 1
    assert record_from_json(data) == RunRecord(key=key())
    with pytest.raises(ConfigurationError, match="record_to_json"):
        record_from_json({"status": "success"})


# -- idempotent writes -----------------------------------------------------------------------------


def test_starting_the_same_try_twice_makes_one_row(ledger):
    """A resumed try updates its started record in place."""
    ledger.start(started(key(), zone="DE"))
    ledger.start(started(key(), zone="GB", at=T0 + timedelta(minutes=5)))
    assert len(_rows(ledger)) == 1
    assert ledger.get(key()).zone == "GB" and ledger.get(key()).started_at == T0 + timedelta(minutes=5)


def test_finish_without_start_is_stored(ledger):
    """finish() stores the record even when start() never reached the database."""
    ledger.finish(finished(key()))
    assert ledger.get(key()).status == "success"


def test_start_after_finish_does_not_downgrade(ledger):
    """A late or repeated start() never turns a finished record back into a started one."""
    done = finished(key(), energy_kwh=2.0)
    ledger.finish(done)
    ledger.start(started(key(), zone="GB"))
    assert ledger.get(key()) == done
    assert len(_rows(ledger)) == 1


def test_finish_twice_keeps_the_last(ledger):
    """A repeated finish() updates the one row."""
    ledger.finish(finished(key(), status="failed", error="first"))
    ledger.finish(finished(key(), status="success"))
    assert [r.status for r in ledger.records()] == ["success"]


def test_tries_and_map_indexes_are_separate_rows(ledger):
    """Another try or map index is another key, so another row."""
    for k in (key(), key(try_number=2), key(map_index=0), key(map_index=1)):
        ledger.start(started(k))
    assert len(ledger.records()) == 4


def test_start_and_finish_refuse_the_wrong_status(ledger):
    """start() takes started records and finish() completed ones; a mix-up is a clear error."""
    with pytest.raises(ConfigurationError, match="call finish"):
        ledger.start(finished(key()))
    with pytest.raises(ConfigurationError, match="call start"):
        ledger.finish(started(key()))
    with pytest.raises(ConfigurationError, match="unknown record status"):
        ledger.finish(finished(key(), status="done"))


def test_heartbeat_touches_started_tries_only(ledger):
    """A heartbeat updates a started try, and neither an unknown nor a finished one."""
    ledger.start(started(key("a")))
    ledger.finish(finished(key("b")))
    beat = T0 + timedelta(minutes=10)
    assert ledger.heartbeat(key("a"), beat) is True
    assert ledger.heartbeat(key("b"), beat) is False
    assert ledger.heartbeat(key("nope"), beat) is False
    assert ledger.get(key("a")).heartbeat_at == beat and ledger.get(key("b")).heartbeat_at is None


# -- reading ---------------------------------------------------------------------------------------


def test_records_filters(ledger):
    """records() filters by start time (since inclusive, until exclusive), status, DAG and task."""
    ledger.finish(finished(key("1"), start=T0))
    ledger.finish(finished(key("2"), start=T0 + timedelta(hours=1), status="failed"))
    ledger.start(started(key("3", task="embed"), at=T0 + timedelta(hours=2)))
    ledger.start(started(key("4", dag="weekly"), at=T0 + timedelta(hours=3)))
    runs = lambda **kw: [r.key.run_id for r in ledger.records(**kw)]  # noqa: E731
    assert runs() == ["1", "2", "3", "4"]
    assert runs(since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3)) == ["2", "3"]
    assert runs(status="started") == ["3", "4"]
    assert runs(status=["success", "failed"]) == ["1", "2"]
    assert runs(dag_id="nightly", task_id="embed") == ["3"]
    assert runs(dag_id="weekly") == ["4"]
    with pytest.raises(ConfigurationError, match="unknown status"):
        ledger.records(status="done")


def test_durations_newest_first(ledger):
    """durations() gives the last successful tries of one task, newest first, at most ``limit``."""
    for i, minutes in enumerate([30, 10, 20]):  # ended in this order
        ledger.finish(finished(key(f"ok{i}"), start=T0 + timedelta(days=i), minutes=minutes))
    ledger.finish(finished(key("failed"), start=T0 + timedelta(days=5), minutes=99, status="failed"))
    ledger.finish(finished(key("other", task="embed"), start=T0 + timedelta(days=6), minutes=77))
    ledger.start(started(key("running"), at=T0 + timedelta(days=7)))
    assert ledger.durations("airflow", "nightly", "enrich") == [timedelta(minutes=m) for m in (20, 10, 30)]
    assert ledger.durations("airflow", "nightly", "enrich", limit=2) == [timedelta(minutes=20), timedelta(minutes=10)]
    assert ledger.durations("prefect", "nightly", "enrich") == []


# -- reconciling -----------------------------------------------------------------------------------


def test_abandon_stale(ledger):
    """Started tries silent for too long become abandoned at their last sign of life, with a note."""
    now = T0 + timedelta(hours=2)
    ledger.start(started(key("beat-long-ago"), heartbeat_at=T0 + timedelta(hours=1)))
    ledger.start(started(key("beat-recently"), heartbeat_at=now - timedelta(minutes=5)))
    ledger.start(started(key("never-beat"), at=T0 + timedelta(minutes=30)))
    ledger.start(started(key("just-started"), at=now - timedelta(minutes=1)))
    ledger.finish(finished(key("done")))

    closed = ledger.abandon_stale(timedelta(minutes=15), now)

    assert closed == [key("beat-long-ago"), key("never-beat")]
    first, second = ledger.get(key("beat-long-ago")), ledger.get(key("never-beat"))
    assert first.status == second.status == "abandoned"
    assert first.ended_at == T0 + timedelta(hours=1) and second.ended_at == T0 + timedelta(minutes=30)
    assert "no heartbeat since 2026-06-15T03:00:00+00:00" in first.notes[-1]
    assert ledger.get(key("beat-recently")).status == "started"
    assert ledger.get(key("just-started")).status == "started"
    assert ledger.get(key("done")).status == "success"
    assert ledger.abandon_stale(timedelta(minutes=15), now) == []
    assert ledger.abandon_stale(240.0, now) == [key("beat-recently")]  # seconds work too


def test_a_finish_after_abandoning_wins(ledger):
    """A worker that was alive after all completes its record over the abandoned one."""
    ledger.start(started(key()))
    assert ledger.abandon_stale(timedelta(minutes=15), T0 + timedelta(hours=5)) == [key()]
    ledger.start(started(key()))
    assert ledger.get(key()).status == "abandoned"
    ledger.finish(finished(key(), minutes=300))
    assert ledger.get(key()).status == "success"


def _reprice_forecasts(offered: list[RunKey]):
    def update(record: RunRecord) -> RunRecord | None:
        offered.append(record.key)
        if record.key.run_id.startswith("keep"):
            return None
        new = record.carbon_g * 0.5
        return replace(record, carbon_basis="measured", carbon_g=new, repriced_at=T0 + timedelta(days=1),
                       changes={"carbon_g": [record.carbon_g, new]})
    return update


def test_reprice(ledger):
    """Finished forecast-priced records are offered; what update returns is stored and counted."""
    ledger.finish(finished(key("ok"), carbon_basis="forecast", carbon_g=100.0))
    ledger.finish(finished(key("failed"), status="failed", carbon_basis="forecast", carbon_g=40.0))
    ledger.finish(finished(key("keep"), carbon_basis="forecast", carbon_g=10.0))
    ledger.finish(finished(key("measured"), carbon_basis="measured", carbon_g=7.0))
    ledger.start(started(key("running"), carbon_basis="forecast", carbon_g=1.0))
    offered: list[RunKey] = []

    assert ledger.reprice(_reprice_forecasts(offered)) == 2

    assert sorted(k.run_id for k in offered) == ["failed", "keep", "ok"]
    ok = ledger.get(key("ok"))
    assert (ok.carbon_basis, ok.carbon_g, ok.changes, ok.repriced_at) == ("measured", 50.0, {"carbon_g": [100.0, 50.0]},
                                                                         T0 + timedelta(days=1))
    assert ledger.get(key("keep")).carbon_g == 10.0
    offered.clear()
    assert ledger.reprice(_reprice_forecasts(offered)) == 0
    assert [k.run_id for k in offered] == ["keep"]


def test_reprice_since_and_key_changes(ledger):
    """reprice(since=...) skips older runs, and an update that changes the key is refused."""
    ledger.finish(finished(key("old"), start=T0, carbon_basis="forecast", carbon_g=1.0))
    ledger.finish(finished(key("new"), start=T0 + timedelta(days=2), carbon_basis="forecast", carbon_g=1.0))
    offered: list[RunKey] = []
    assert ledger.reprice(_reprice_forecasts(offered), since=T0 + timedelta(days=1)) == 1
    assert offered == [key("new")]
    with pytest.raises(ConfigurationError, match="same key"):
        ledger.reprice(lambda r: replace(r, key=key("elsewhere")))


def test_reprice_leaves_a_record_that_changed_meanwhile(ledger):
    """A write that lands while update() runs wins over the re-priced copy of the older record."""
    ledger.finish(finished(key(), carbon_basis="forecast", carbon_g=100.0))

    def update(record: RunRecord) -> RunRecord:
        ledger.finish(replace(record, error="rewritten meanwhile"))
        return replace(record, carbon_basis="measured", carbon_g=1.0)

    assert ledger.reprice(update) == 0
    stored = ledger.get(key())
    assert (stored.error, stored.carbon_g, stored.carbon_basis) == ("rewritten meanwhile", 100.0, "forecast")


# -- schema ----------------------------------------------------------------------------------------


def test_a_fresh_database_gets_the_current_schema(ledger):
    """First use creates the tables at this package's version; migrating again changes nothing."""
    assert ledger.schema_version() == 0
    ledger.records()
    assert ledger.schema_version() == SCHEMA_VERSION
    assert ledger.migrate() == SCHEMA_VERSION


def test_a_newer_schema_is_refused(ledger, tmp_path):
    """A database migrated by a newer carbon-sensors is refused with advice to upgrade, and left alone."""
    ledger.start(started(key()))
    with ledger.engine.begin() as conn:
        conn.execute(sa.text("UPDATE carbon_sensors_schema SET version = :v"), {"v": SCHEMA_VERSION + 1})
    other = Ledger(ledger.url, spool_dir=tmp_path / "spool")
    with pytest.raises(LedgerSchemaError, match=rf"has schema v{SCHEMA_VERSION + 1}, this carbon-sensors understands up "
                                                rf"to v{SCHEMA_VERSION}: upgrade carbon-sensors"):
        other.get(key())
    assert other.schema_version() == SCHEMA_VERSION + 1
    other.close()


def test_a_v1_ledger_is_migrated(url, tmp_path):
    """A ledger left at schema v1 is upgraded on first use: its records stay and the report columns are filled in."""
    # v1 had no price columns: a record it stored has none
    record = replace(full_record(), **{name: None for name in V4_PRICE_FIELDS})
    metadata = sa.MetaData()
    v1_runs = ledger_module._runs_table(metadata, 1)
    row = {name: value for name, value in ledger_module._to_row(record, T0).items() if name in v1_runs.c}
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        ledger_module._MIGRATIONS[0](conn)
        conn.execute(ledger_module.SCHEMA.insert().values(id=1, version=1, migrated_at=T0))
        conn.execute(v1_runs.insert().values(row))
        assert "total_tokens" not in {c["name"] for c in sa.inspect(conn).get_columns("carbon_sensors_runs")}
    engine.dispose()

    with Ledger(url, spool_dir=tmp_path / "spool") as ledger:
        assert ledger.schema_version() == 1
        assert ledger.get(record.key) == record
        assert ledger.schema_version() == SCHEMA_VERSION == 4
        assert _rows(ledger)[0]["total_tokens"] == 1505
        assert ledger.durations("airflow", "nightly", "enrich") == [record.ended_at - record.started_at]
        with ledger.engine.connect() as conn:
            indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes("carbon_sensors_runs")}
        assert {"ix_carbon_sensors_runs_dag_task", "ix_carbon_sensors_runs_status"} <= indexes


# -- settings and errors ---------------------------------------------------------------------------


def test_default_locations(monkeypatch, tmp_path):
    """The URL and spool come from the environment, else from $AIRFLOW_HOME, else from the home directory."""
    monkeypatch.setenv("CARBON_SENSORS_LEDGER_URL", "postgresql+psycopg://u@db/carbon")
    monkeypatch.setenv("CARBON_SENSORS_SPOOL_DIR", str(tmp_path / "mine"))
    assert default_ledger_url() == "postgresql+psycopg://u@db/carbon"
    assert default_spool_dir() == tmp_path / "mine"
    monkeypatch.delenv("CARBON_SENSORS_LEDGER_URL")
    monkeypatch.delenv("CARBON_SENSORS_SPOOL_DIR")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    assert default_ledger_url() == f"sqlite:///{tmp_path / 'airflow' / 'carbon_sensors_ledger.db'}"
    assert default_spool_dir() == tmp_path / "airflow" / "carbon_sensors_spool"
    monkeypatch.delenv("AIRFLOW_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_ledger_url() == f"sqlite:///{tmp_path / 'home/.local/share/carbon-sensors/carbon_sensors_ledger.db'}"


def test_the_default_sqlite_file_is_created_with_its_directory(monkeypatch, tmp_path):
    """Ledger() with no URL works out of the box: it makes the data directory and the file."""
    monkeypatch.delenv("CARBON_SENSORS_LEDGER_URL", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "not" / "yet"))
    with Ledger() as ledger:
        ledger.start(started(key()))
        assert ledger.url.endswith("not/yet/carbon_sensors_ledger.db")
    assert (tmp_path / "not" / "yet" / "carbon_sensors_ledger.db").is_file()


@pytest.mark.parametrize(
    ("url", "phrase"),
    [("mysql://u@db/x", "supports SQLite and PostgreSQL"), ("no url at all", "cannot read the ledger URL")],
)
def test_unsupported_urls_are_configuration_errors(url, phrase):
    """A URL of another database, or no URL at all, is refused at once with an example of a good one."""
    with pytest.raises(ConfigurationError, match=phrase):
        Ledger(url)


def test_an_unreachable_server_is_a_ledger_error_without_the_password(tmp_path):
    """The error names the server with the password masked, and says what to check."""
    ledger = Ledger(UNREACHABLE_PG, spool_dir=tmp_path / "spool")
    with pytest.raises(LedgerError) as info:
        ledger.finish(finished(key()))
    message = str(info.value)
    assert "cannot reach the ledger at postgresql+psycopg://carbon:***@127.0.0.1:1/ledger" in message
    assert "s3cret-pw" not in message and "check that the server is running" in message
    assert "s3cret-pw" not in repr(ledger)


def test_an_unopenable_sqlite_file_is_a_ledger_error(tmp_path):
    """An SQLite path that cannot be opened is a LedgerError saying to check the directory."""
    (tmp_path / "a-file").write_text("")
    with pytest.raises(LedgerError, match="check that the file's directory exists"):
        Ledger(f"sqlite:///{tmp_path / 'a-file' / 'ledger.db'}", spool_dir=tmp_path / "spool").get(key())


# -- the spool -------------------------------------------------------------------------------------


def test_spool_while_unreachable_then_flush(tmp_path):
    """Records spooled while the database is away land later with their start or finish meaning."""
    spool = tmp_path / "spool"
    away = Ledger(UNREACHABLE_PG, spool_dir=spool)
    a_done = finished(key("b"), energy_kwh=3.0)
    for record, operation in [(started(key("a")), "start"), (started(key("b")), None), (a_done, "finish"),
                              (started(key("b"), zone="late"), "start")]:
        try:
            getattr(away, operation or "start")(record)
        except LedgerError:
            away.spool(record, operation=operation)
    assert len(away.spooled()) == 4
    with pytest.raises(LedgerError):
        away.flush_spool()
    assert len(away.spooled()) == 4  # still there for the next try

    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", spool_dir=spool) as back:
        assert back.flush_spool() == 4
        assert back.get(key("a")).status == "started"
        assert back.get(key("b")) == a_done  # the later start did not downgrade it
        assert back.spooled() == [] and list(spool.iterdir()) == []
        assert back.flush_spool() == 0


def test_spool_refuses_what_could_never_be_stored(tmp_path):
    """Only start and finish can be spooled, each with records of the status it takes."""
    ledger = Ledger("sqlite://", spool_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="'start' or 'finish'"):
        ledger.spool(started(key()), operation="delete")
    with pytest.raises(ConfigurationError, match="start\\(\\) takes started records"):
        ledger.spool(finished(key()), operation="start")
    assert ledger.spooled() == []


def test_unusable_spool_files_are_set_aside(tmp_path):
    """Spool files that hold no storable record are renamed .bad and do not block the others."""
    spool = tmp_path / "spool"
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", spool_dir=spool) as ledger:
        ledger.spool(finished(key("good")))
        (spool / "0-garbage.jsonl").write_text("{not json\n")
        (spool / "1-a-list.jsonl").write_text("[1, 2]\n")
        wrong = {"operation": "start", "record": record_to_json(finished(key("wrong")))}
        (spool / "2-wrong-status.jsonl").write_text(json.dumps(wrong) + "\n")
        assert ledger.flush_spool() == 1
        assert ledger.get(key("good")).status == "success" and ledger.get(key("wrong")) is None
        assert sorted(p.name for p in spool.iterdir()) == [
            "0-garbage.jsonl.bad", "1-a-list.jsonl.bad", "2-wrong-status.jsonl.bad",
        ]


@pytest.mark.postgres
def test_a_record_the_database_refuses_is_set_aside(postgres_url, tmp_path):
    """A spooled record PostgreSQL refuses (a DAG id over 250 characters) goes to .bad; the others still land."""
    with Ledger(postgres_url, spool_dir=tmp_path / "spool") as ledger:
        ledger.spool(finished(key(dag="x" * 300)))
        ledger.spool(finished(key("fine")))
        assert ledger.flush_spool() == 1
        assert [r.key.run_id for r in ledger.records()] == ["fine"]
        assert [p.suffix for p in (tmp_path / "spool").iterdir()] == [".bad"]


def test_a_dead_flushers_claim_is_taken_over(tmp_path):
    """A file claimed by a flusher that died long ago is flushed by the next one."""
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", spool_dir=tmp_path / "spool") as ledger:
        path = ledger.spool(finished(key("orphan")))
        claimed = path.with_name(path.name + ".claimed-deadhost-1-abc")
        path.rename(claimed)
        fresh = ledger.spool(finished(key("fresh-claim")))
        fresh_claimed = fresh.with_name(fresh.name + ".claimed-livehost-2-def")
        fresh.rename(fresh_claimed)
        old = time.time() - 3600
        os.utime(claimed, (old, old))
        assert ledger.flush_spool() == 1
        assert ledger.get(key("orphan")) is not None and ledger.get(key("fresh-claim")) is None
        assert fresh_claimed.exists()  # a live flusher's claim is left alone


def _flush(url: str, spool: str, results) -> None:
    with Ledger(url, spool_dir=spool) as ledger:
        results.put(ledger.flush_spool())


def test_two_processes_flushing_at_once_store_each_record_once(tmp_path):
    """Two flushers racing over one spool land every record exactly once between them."""
    url, spool = f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path / "spool"
    with Ledger(url, spool_dir=spool) as ledger:
        ledger.records()  # create the tables before the race
        for i in range(60):
            ledger.spool(finished(key(f"r{i}")))
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_flush, args=(url, str(spool), results)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert results.get(timeout=5) + results.get(timeout=5) == 60
    with Ledger(url, spool_dir=spool) as ledger:
        assert len(ledger.records()) == 60 and ledger.spooled() == []
    assert list(spool.iterdir()) == []


# -- concurrency -----------------------------------------------------------------------------------


def _write_many(url: str, worker: int, count: int, shared: int, barrier) -> None:
    barrier.wait(timeout=120)  # all at once, on a database nobody has migrated yet
    with Ledger(url, spool_dir=os.devnull) as ledger:
        for i in range(count):
            k = key(f"w{worker}-{i}")
            ledger.start(started(k, at=T0 + timedelta(seconds=i)))
            ledger.finish(finished(k, start=T0 + timedelta(seconds=i), minutes=1, team=f"w{worker}"))
            if i < shared:
                ledger.start(started(key(f"shared-{i}")))
                ledger.finish(finished(key(f"shared-{i}"), team=f"w{worker}"))


def _concurrent_writers(url: str, processes: int, count: int = 200, shared: int = 20) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    procs = [ctx.Process(target=_write_many, args=(url, w, count, shared, barrier)) for w in range(processes)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(240)
    assert [p.exitcode for p in procs] == [0] * processes
    with Ledger(url) as ledger:
        records = ledger.records()
        assert ledger.schema_version() == SCHEMA_VERSION
    keys = [r.key for r in records]
    assert len(keys) == len(set(keys)) == processes * count + shared
    for w in range(processes):
        mine = [r for r in records if r.key.run_id.startswith(f"w{w}-")]
        assert len(mine) == count and all(r.status == "success" and r.team == f"w{w}" for r in mine)
    assert all(r.status == "success" for r in records if r.key.run_id.startswith("shared-"))


def test_concurrent_writers_on_sqlite(tmp_path):
    """Four processes writing 200 records each into one fresh SQLite file lose nothing and duplicate nothing."""
    _concurrent_writers(f"sqlite:///{tmp_path / 'ledger.db'}", processes=4)


@pytest.mark.postgres
def test_concurrent_writers_on_postgres(postgres_url):
    """Eight processes opening a fresh PostgreSQL database at once migrate it once and write every record once."""
    _concurrent_writers(postgres_url, processes=8)
