"""Reports: figures per group and signal checked by hand, safe ratios, and CSV, Parquet, JSON and table output."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from carbon_sensors.errors import ConfigurationError
from carbon_sensors.records import RunKey, RunRecord, TokenUsage
from carbon_sensors.report import REPORT_COLUMNS, build_report, neutralise_csv_cell, write_report

T0 = datetime(2026, 6, 15, 2, tzinfo=UTC)


def run(dag: str, run_id: str, task: str = "enrich", **fields) -> RunRecord:
    return RunRecord(key=RunKey("airflow", dag, task, run_id), **fields)


def sample() -> list[RunRecord]:
    """Five runs: three average-signal and one marginal-signal run of nightly, one unknown-signal run of weekly."""
    return [
        run("nightly", "r1", status="success", team="search", zone="DE", project="catalog", energy_kwh=2.0,
            carbon_g=300.0, counterfactual_carbon_g=400.0, saved_carbon_g=100.0, carbon_signal="average",
            tokens=(TokenUsage("m", 1000, 500),), cost_usd=0.6, submitted_at=T0 - timedelta(hours=1), started_at=T0,
            ended_at=T0 + timedelta(hours=1), deadline=T0 + timedelta(hours=4), carbon_basis="measured"),
        run("nightly", "r2", task="embed", status="success", team="search", zone="GB", energy_kwh=1.0,
            carbon_g=200.0, saved_carbon_g=50.0, carbon_signal="average", cost_usd=0.4, forced=True,
            submitted_at=T0 - timedelta(minutes=30), started_at=T0, ended_at=T0 + timedelta(hours=5),
            deadline=T0 + timedelta(hours=4), carbon_basis="forecast"),
        run("nightly", "r3", status="failed", team="search", carbon_signal="average",
            tokens=(TokenUsage("m", 100, 300), TokenUsage("n", 0, 100))),
        run("nightly", "r4", status="success", team="ranking", energy_kwh=1.0, carbon_g=700.0,
            counterfactual_carbon_g=900.0, saved_carbon_g=200.0, carbon_signal="marginal",
            tokens=(TokenUsage("m", 250, 250),), cost_usd=0.3, carbon_basis="measured"),
        run("weekly", "r5", status="started"),
    ]


def row(df: pd.DataFrame, **where) -> pd.Series:
    mask = pd.Series(True, index=df.index)
    for name, value in where.items():
        mask &= df[name] == value
    assert mask.sum() == 1, (where, df)
    return df[mask].iloc[0]


def test_columns_and_one_row_per_group_and_signal():
    """The report has the group, the signal and the agreed figures, one row per (group, signal)."""
    df = build_report(sample(), by="dag")
    assert list(df.columns) == ["dag_id", "carbon_signal", *REPORT_COLUMNS, "price_currency"]
    assert list(zip(df.dag_id, df.carbon_signal, strict=True)) == [
        ("nightly", "average"), ("nightly", "marginal"), ("weekly", "unknown"),
    ]


def test_average_group_by_hand():
    """Every figure of nightly's average-signal row matches the hand computation."""
    r = row(build_report(sample(), by="dag"), dag_id="nightly", carbon_signal="average")
    assert r.runs == 3
    assert r.kwh == pytest.approx(3.0)
    assert r.carbon_g == pytest.approx(500.0)
    assert r.saved_carbon_g == pytest.approx(150.0)
    assert r.saved_pct == pytest.approx(150 / (400 + 250) * 100)  # r2's counterfactual is carbon + saved
    assert (r.prompt_tokens, r.completion_tokens, r.tokens) == (1100, 900, 2000)
    assert r.g_per_1k_tokens == pytest.approx(300 / 1500 * 1000)  # r3 used tokens but its grams are unknown
    assert r.cost_usd == pytest.approx(1.0)
    assert r.cost_per_run_usd == pytest.approx(0.5)  # over the two runs whose cost is known
    assert r.cost_per_1k_tokens_usd == pytest.approx(0.6 / 1500 * 1000)
    assert r.forced_rate == pytest.approx(1 / 3)
    assert r.deadline_misses == 1
    assert r.mean_delay_s == pytest.approx((3600 + 1800) / 2)
    assert r.measured_share == pytest.approx(1 / 3)


def test_average_and_marginal_are_never_summed():
    """Marginal grams stay in their own row; no row adds them to average grams."""
    df = build_report(sample(), by="dag")
    marginal = row(df, dag_id="nightly", carbon_signal="marginal")
    assert marginal.carbon_g == pytest.approx(700.0) and marginal.saved_pct == pytest.approx(200 / 900 * 100)
    assert marginal.g_per_1k_tokens == pytest.approx(1400.0)
    assert 1200.0 not in set(df.carbon_g.dropna()) and 500.0 in set(df.carbon_g.dropna())


def test_unknown_figures_are_nan_never_inf_or_zero():
    """A group that knows nothing has NaN sums and ratios and zero counts, never an infinite ratio."""
    df = build_report(sample(), by="dag")
    r = row(df, dag_id="weekly", carbon_signal="unknown")
    assert (r.runs, r.tokens, r.deadline_misses, r.forced_rate, r.measured_share) == (1, 0, 0, 0.0, 0.0)
    for name in ("kwh", "carbon_g", "saved_carbon_g", "saved_pct", "g_per_1k_tokens", "cost_usd", "cost_per_run_usd",
                 "cost_per_1k_tokens_usd", "mean_delay_s"):
        assert math.isnan(r[name]), name
    numbers = df[list(REPORT_COLUMNS)].to_numpy(dtype=float)
    assert not (abs(numbers) == math.inf).any()


def test_zero_counterfactual_gives_nan_not_inf():
    """A zero counterfactual (a run with no energy) makes saved_pct NaN rather than infinite."""
    df = build_report([run("d", "r", carbon_g=0.0, counterfactual_carbon_g=0.0, saved_carbon_g=0.0)], by="dag")
    assert math.isnan(df.saved_pct[0]) and df.carbon_g[0] == 0.0


@pytest.mark.parametrize(
    ("by", "groups", "expected"),
    [
        ("task", ["dag_id", "task_id"], [("nightly", "embed", "average", 1), ("nightly", "enrich", "average", 2),
                                         ("nightly", "enrich", "marginal", 1), ("weekly", "enrich", "unknown", 1)]),
        ("team", ["team"], [("ranking", "marginal", 1), ("search", "average", 3), ("unknown", "unknown", 1)]),
        ("zone", ["zone"], [("DE", "average", 1), ("GB", "average", 1), ("unknown", "average", 1),
                            ("unknown", "marginal", 1), ("unknown", "unknown", 1)]),
        ("project", ["project"], [("catalog", "average", 1), ("unknown", "average", 2), ("unknown", "marginal", 1),
                                  ("unknown", "unknown", 1)]),
    ],
)
def test_groupings(by, groups, expected):
    """Each grouping puts the runs in the expected rows; a missing tag is the group 'unknown'."""
    df = build_report(sample(), by=by)
    assert list(df.columns[: len(groups) + 1]) == [*groups, "carbon_signal"]
    assert [tuple(t) for t in df[[*groups, "carbon_signal", "runs"]].itertuples(index=False)] == expected


def test_empty_and_bad_grouping():
    """No records give an empty report with the same columns; an unknown grouping is a clear error."""
    df = build_report([], by="team")
    assert df.empty and list(df.columns) == ["team", "carbon_signal", *REPORT_COLUMNS, "price_currency"]
    with pytest.raises(ConfigurationError, match="dag, task, team, zone, project"):
        build_report(sample(), by="colour")


# -- output ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "written"),
    [("=cmd()", "'=cmd()"), ("+SUM(1)", "'+SUM(1)"), ("-2+3", "'-2+3"), ("@A1", "'@A1"), ("\tx", "'\tx"),
     ("\rx", "'\rx"), ("-3.5", "-3.5"), ("+1e3", "+1e3"), ("nightly", "nightly"), (-20.0, -20.0), (None, None)],
)
def test_neutralise_csv_cell(cell, written):
    """Text a spreadsheet would run gets a leading quote; numbers and plain names pass unchanged."""
    assert neutralise_csv_cell(cell) == written


def test_csv_neutralises_formulas_in_user_strings(capsys):
    """A DAG id like =cmd() is written as '=cmd() in CSV, while negative figures stay numbers."""
    records = [run("=cmd()", "r1", carbon_g=120.0, counterfactual_carbon_g=100.0, saved_carbon_g=-20.0,
                   carbon_signal="average")]
    write_report(build_report(records, by="dag"), "csv")
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[0]["dag_id"] == "'=cmd()"
    assert rows[0]["saved_carbon_g"] == "-20.0" and rows[0]["saved_pct"] == "-20.0"


def test_csv_to_a_file(tmp_path):
    """CSV goes to the file given, with a header and one line per row."""
    path = tmp_path / "r.csv"
    write_report(build_report(sample(), by="dag"), "csv", path)
    lines = path.read_text().splitlines()
    assert lines[0].startswith("dag_id,carbon_signal,runs,kwh") and len(lines) == 4


def test_parquet_round_trip(tmp_path):
    """A report written as Parquet reads back equal."""
    df = build_report(sample(), by="task")
    write_report(df, "parquet", tmp_path / "r.parquet")
    back = pd.read_parquet(tmp_path / "r.parquet")
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert back.runs.dtype.kind == "i" and back.kwh.dtype.kind == "f"


def test_parquet_needs_a_file():
    """Parquet to stdout is refused with advice to give --out."""
    with pytest.raises(ConfigurationError, match="--out"):
        write_report(build_report(sample()), "parquet")


def test_json_has_nulls_for_unknowns(capsys):
    """JSON output is a list of rows with null where a figure is unknown."""
    write_report(build_report(sample(), by="dag"), "json")
    rows = json.loads(capsys.readouterr().out)
    assert [r["dag_id"] for r in rows] == ["nightly", "nightly", "weekly"]
    assert rows[2]["carbon_g"] is None and rows[0]["runs"] == 3 and rows[0]["tokens"] == 2000


def test_table_is_readable(capsys):
    """The table shows every row, and '-' for unknown figures."""
    write_report(build_report(sample(), by="dag"), "table")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and "saved_pct" in lines[0]
    assert "weekly" in lines[3] and " - " in lines[3]


def test_unknown_format():
    """An unknown format is a clear error naming the ones there are."""
    with pytest.raises(ConfigurationError, match="table, csv, parquet, json"):
        write_report(build_report(sample()), "xlsx")


E_NOTATION = re.compile(r"\d[eE][+-]?\d")


def tiny_and_large() -> list[RunRecord]:
    """A few-millisecond task metered by estimate (the demo's magnitudes) and a large training run."""
    return [
        run("embedding_refresh", "r1", status="success", energy_kwh=5.643e-10, carbon_g=9.712e-08,
            saved_carbon_g=1.8e-08, counterfactual_carbon_g=1.151e-07, carbon_signal="average",
            tokens=(TokenUsage("m", 128, 0),), cost_usd=3.2e-11),
        run("weekly_retrain", "r1", status="success", energy_kwh=1520.0, carbon_g=2.5e5, saved_carbon_g=4.1e4,
            carbon_signal="average", cost_usd=319.2),
    ]


def test_the_table_picks_a_unit_per_column_and_names_it_in_the_header(capsys):
    """Tiny figures get µWh and µg, each column one unit named in its header; no e-notation anywhere."""
    write_report(build_report(tiny_and_large()[:1], by="dag"), "table", wide=True)  # per-1k-token figures: wide only
    out = capsys.readouterr().out
    header, line = out.splitlines()
    assert "energy_µWh" in header.split() and "carbon_µg" in header.split() and "saved_carbon_µg" in header.split()
    assert "µg_per_1k_tokens" in header.split()
    assert "0.564" in line.split() and "0.0971" in line.split() and "0.0180" in line.split()
    assert not E_NOTATION.search(out), out


def test_a_column_spanning_magnitudes_shares_the_unit_of_its_largest_value(capsys):
    """A tiny run beside a large one: the column is in MWh and kg, the tiny one in plain decimals."""
    write_report(build_report(tiny_and_large(), by="dag"), "table")
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert "energy_MWh" in header and "carbon_kg" in header and "saved_carbon_kg" in header
    assert "1.52" in out and "250" in out and "41.0" in out
    assert not E_NOTATION.search(out), out


def test_machine_formats_keep_base_units(tmp_path):
    """JSON and CSV keep kwh and carbon_g in kWh and grams, as the records hold them."""
    df = build_report(tiny_and_large(), by="dag")
    out = tmp_path / "r.json"
    write_report(df, "json", out)
    rows = json.loads(out.read_text())
    assert rows[0]["kwh"] == pytest.approx(5.643e-10) and rows[1]["carbon_g"] == pytest.approx(2.5e5)
    write_report(df, "csv", tmp_path / "r.csv")
    first = next(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())))
    assert float(first["kwh"]) == pytest.approx(5.643e-10) and "energy_µWh" not in first


def priced(run_id: str, currency: str | None, cost: float, counterfactual: float, team: str = "search") -> RunRecord:
    return run("nightly", run_id, status="success", team=team, energy_kwh=1.0, carbon_g=100.0, carbon_signal="average",
               price_currency=currency, energy_cost=cost, counterfactual_energy_cost=counterfactual,
               saved_energy_cost=counterfactual - cost)


def test_energy_cost_is_summed_and_saved_like_carbon_in_its_own_currency():
    """Cost saved is grouped as carbon saved is: sums per group, and saved / |counterfactual| (prices go negative)."""
    df = build_report([priced("a", "EUR", 0.05, 0.08), priced("b", "EUR", -0.01, 0.02),
                       priced("c", None, 0.0, 0.0)], by="team")
    r = row(df, team="search")
    assert r.price_currency == "EUR"
    assert r.energy_cost == pytest.approx(0.04) and r.saved_energy_cost == pytest.approx(0.06)
    assert r.saved_cost_pct == pytest.approx(0.06 / 0.10 * 100)
    negative = build_report([priced("a", "EUR", -0.03, -0.01)], by="team")
    assert row(negative, team="search").saved_cost_pct == pytest.approx(200.0)  # paid more to draw power: a saving


def test_a_group_that_mixes_currencies_has_no_cost_figure():
    """EUR and USD are never added up: the group says ``mixed`` and leaves its cost figures unknown."""
    df = build_report([priced("a", "EUR", 0.05, 0.08), priced("b", "USD", 0.06, 0.07), priced("c", "USD", 1, 2, "x")],
                      by="team")
    mixed = row(df, team="search")
    assert mixed.price_currency == "mixed"
    assert all(math.isnan(mixed[name]) for name in ("energy_cost", "saved_energy_cost", "saved_cost_pct"))
    assert row(df, team="x").price_currency == "USD" and row(df, team="x").energy_cost == 1
    assert row(build_report(sample(), by="dag"), dag_id="weekly", carbon_signal="unknown").price_currency == ""
