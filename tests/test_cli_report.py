"""The report and reconcile commands, run through the CLI's main() against an SQLite ledger."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from forecast_csv import write_forecast_csv

from carbon_sensors.cli import main
from carbon_sensors.ledger import Ledger
from carbon_sensors.records import RunKey, RunRecord, TokenUsage
from carbon_sensors.signals import FileSource

NOW = datetime.now(UTC).replace(microsecond=0)


def key(dag: str, run_id: str) -> RunKey:
    return RunKey("airflow", dag, "enrich", run_id)


@pytest.fixture
def ledger_url(tmp_path, monkeypatch):
    """An SQLite ledger with three recent runs and one from 40 days ago; the spool lives in tmp_path."""
    monkeypatch.setenv("CARBON_SENSORS_SPOOL_DIR", str(tmp_path / "spool"))
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    day = NOW - timedelta(days=1)
    with Ledger(url) as ledger:
        ledger.finish(RunRecord(key("nightly", "a"), status="success", team="search", started_at=day,
                                ended_at=day + timedelta(hours=1), energy_kwh=2.0, carbon_g=300.0,
                                counterfactual_carbon_g=400.0, saved_carbon_g=100.0, carbon_signal="average",
                                tokens=(TokenUsage("m", 600, 400),), cost_usd=0.5))
        ledger.finish(RunRecord(key("nightly", "b"), status="success", team="search", started_at=day,
                                ended_at=day + timedelta(hours=1), energy_kwh=1.0, carbon_g=100.0,
                                counterfactual_carbon_g=150.0, saved_carbon_g=50.0, carbon_signal="average",
                                forced=True, cost_usd=0.25))
        ledger.finish(RunRecord(key("=cmd()", "c"), status="failed", team="@evil", started_at=day,
                                ended_at=day + timedelta(minutes=5), carbon_g=9.0, carbon_signal="marginal"))
        ledger.finish(RunRecord(key("nightly", "old"), status="success", started_at=NOW - timedelta(days=40),
                                ended_at=NOW - timedelta(days=40) + timedelta(hours=1), carbon_g=1e6,
                                carbon_signal="average"))
    return url


def test_report_json_by_dag(ledger_url, capsys):
    """`report --format json` gives the hand-computed figures for the last 30 days only."""
    assert main(["report", "--ledger", ledger_url, "--since", "30d", "--by", "dag", "--format", "json"]) == 0
    rows = {(r["dag_id"], r["carbon_signal"]): r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {("nightly", "average"), ("=cmd()", "marginal")}
    nightly = rows["nightly", "average"]
    assert (nightly["runs"], nightly["kwh"], nightly["carbon_g"], nightly["saved_carbon_g"]) == (2, 3.0, 400.0, 150.0)
    assert nightly["saved_pct"] == pytest.approx(150 / 550 * 100)
    assert nightly["g_per_1k_tokens"] == pytest.approx(300.0) and nightly["cost_per_run_usd"] == pytest.approx(0.375)
    assert nightly["forced_rate"] == 0.5 and nightly["tokens"] == 1000


def test_report_since_an_iso_time_and_until(ledger_url, capsys):
    """--since takes an ISO time, and --until bounds the window (here: only the old run)."""
    since = (NOW - timedelta(days=41)).isoformat().replace("+00:00", "Z")
    assert main(["report", "--ledger", ledger_url, "--since", since, "--until", "20d", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["dag_id"], r["runs"], r["carbon_g"]) for r in rows] == [("nightly", 1, 1e6)]


def test_report_csv_by_team_neutralises_formulas(ledger_url, capsys):
    """CSV output quotes user strings that a spreadsheet would run as formulas."""
    assert main(["report", "--ledger", ledger_url, "--by", "team", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["team"] for r in rows] == ["'@evil", "search"]


def test_report_parquet_to_a_file(ledger_url, tmp_path, capsys):
    """`--format parquet --out` writes a file that reads back with the report's rows."""
    out = tmp_path / "report.parquet"
    assert main(["report", "--ledger", ledger_url, "--by", "task", "--format", "parquet", "--out", str(out)]) == 0
    assert f"wrote {out}: 2 rows from 3 runs" in capsys.readouterr().out
    back = pd.read_parquet(out)
    assert list(back.columns[:3]) == ["dag_id", "task_id", "carbon_signal"] and back.runs.sum() == 3


def test_report_table(ledger_url, capsys):
    """The default table names each group."""
    assert main(["report", "--ledger", ledger_url]) == 0
    out = capsys.readouterr().out
    assert "nightly" in out and "=cmd()" in out and "carbon_g" in out


def test_report_table_is_compact_by_default_and_wide_on_request(ledger_url, capsys):
    """The default table fits a terminal (120 columns); --wide adds the rest; CSV keeps every column."""
    assert main(["report", "--ledger", ledger_url, "--by", "team"]) == 0
    compact = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in compact) <= 120, compact
    assert "mean_delay_s" not in compact[0] and "saved_pct" in compact[0]
    assert main(["report", "--ledger", ledger_url, "--by", "team", "--wide"]) == 0
    wide = capsys.readouterr().out.splitlines()
    assert "mean_delay_s" in wide[0] and "cost_per_1k_tokens_usd" in wide[0]
    assert main(["report", "--ledger", ledger_url, "--by", "team", "--format", "csv"]) == 0
    assert "mean_delay_s" in capsys.readouterr().out.splitlines()[0]


def test_report_on_an_empty_ledger(tmp_path, capsys):
    """An empty window says so in words."""
    assert main(["report", "--ledger", f"sqlite:///{tmp_path / 'empty.db'}"]) == 0
    assert capsys.readouterr().out.startswith("no runs in the ledger at sqlite:///")


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["--since", "last tuesday"], "cannot read --since"),
        (["--since", "2026-01-01T00:00"], "has no time zone"),
        (["--format", "parquet"], "--out"),
        (["--ledger", "mysql://u@db/x"], "supports SQLite and PostgreSQL"),
        (["--ledger", "postgresql+psycopg://u:topsecret@127.0.0.1:1/x"], "cannot reach the ledger at postgresql+psycopg://u:***@"),
    ],
)
def test_report_errors_are_one_line_and_exit_2(ledger_url, capsys, argv, phrase):
    """Bad options and unreachable ledgers print one line saying what to do, and exit 2."""
    argv = ["report", *(["--ledger", ledger_url] if "--ledger" not in argv else []), *argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("carbon-sensors: error:") and phrase in err and err.count("\n") == 1
    assert "topsecret" not in err


def _stale_and_spooled(url: str) -> None:
    with Ledger(url) as ledger:
        ledger.start(RunRecord(key("nightly", "dead"), started_at=NOW - timedelta(hours=3),
                               heartbeat_at=NOW - timedelta(hours=2)))
        ledger.start(RunRecord(key("nightly", "alive"), started_at=NOW - timedelta(hours=3),
                               heartbeat_at=NOW - timedelta(minutes=1)))
        ledger.spool(RunRecord(key("nightly", "spooled"), status="success", started_at=NOW - timedelta(hours=1)))


def test_reconcile_json_without_repricing(ledger_url, capsys):
    """reconcile lands the spool and closes silent runs, and reports the counts as JSON."""
    _stale_and_spooled(ledger_url)
    assert main(["reconcile", "--ledger", ledger_url, "--stale-after", "15m", "--no-reprice", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"spooled_flushed": 1, "abandoned": 1, "repriced": None}
    with Ledger(ledger_url) as ledger:
        assert ledger.get(key("nightly", "dead")).status == "abandoned"
        assert ledger.get(key("nightly", "alive")).status == "started"
        assert ledger.get(key("nightly", "spooled")).status == "success"
        assert ledger.spooled() == []


def test_reconcile_in_words(ledger_url, capsys):
    """Without --json, reconcile says what it did, naming the runs it closed."""
    _stale_and_spooled(ledger_url)
    assert main(["reconcile", "--ledger", ledger_url, "--stale-after", "2h30m", "--no-reprice"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["1 spooled record written to the ledger", "0 stale runs closed as abandoned (no heartbeat for 2h30m)",
                     "re-pricing skipped (--no-reprice)"]


def test_reconcile_reprices_forecast_records_with_measured_actuals(ledger_url, tmp_path, capsys):
    """reconcile asks a record's own source for actuals and stores the re-priced carbon with its changes."""
    start = datetime(2026, 6, 15, 2, tzinfo=UTC)
    actuals = write_forecast_csv(tmp_path / "actuals.csv", start - timedelta(hours=4), [400, 400, 350, 300, 100, 120, 140, 160])
    record = RunRecord(
        key("nightly", "priced"), status="success", zone="DE", submitted_at=start - timedelta(hours=2),
        started_at=start, ended_at=start + timedelta(hours=1), energy_kwh=2.0, carbon_signal="average",
        carbon_basis="forecast", carbon_source="embedded-profile", intensity_g_per_kwh=200.0, carbon_g=400.0,
        counterfactual_intensity_g_per_kwh=360.0, counterfactual_carbon_g=720.0, saved_carbon_g=320.0,
        source_spec=FileSource(actuals, measured=True).to_spec(),
    )
    with Ledger(ledger_url) as ledger:
        ledger.finish(record)
    assert main(["reconcile", "--ledger", ledger_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"spooled_flushed": 0, "abandoned": 0, "repriced": 1}
    with Ledger(ledger_url) as ledger:
        repriced = ledger.get(record.key)
    assert repriced.carbon_basis == "measured" and repriced.repriced_at is not None
    assert repriced.intensity_g_per_kwh == pytest.approx(100.0) and repriced.carbon_g == pytest.approx(200.0)
    assert repriced.counterfactual_carbon_g == pytest.approx(700.0) and repriced.saved_carbon_g == pytest.approx(500.0)
    assert repriced.changes["carbon_g"] == [400.0, pytest.approx(200.0)]
