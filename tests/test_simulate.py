"""Backtests: the forecast model, exact timing, each strategy, the summary arithmetic and the command."""

from __future__ import annotations

import json
import math
import statistics
from datetime import UTC, datetime, timedelta

import pytest

from carbon_sensors import ConfigurationError, Forecast
from carbon_sensors.cli import main
from carbon_sensors.planning import Policy, duration_quantile
from carbon_sensors.simulate import (
    WORKLOADS,
    ArchiveForecasts,
    ModelForecasts,
    Overrun,
    SimulationSettings,
    Trace,
    Workload,
    parse_workload,
    run_trace,
    simulate,
)

T0 = datetime(2022, 1, 3, tzinfo=UTC)  # a Monday
HOUR = 3600.0


def trace(values, zone="XX", start=T0):
    forecast = Forecast.from_points([(start + timedelta(hours=i), v) for i, v in enumerate(values)],
                                    zone=zone, source="test")
    return Trace(name=f"{zone}.csv", zone=zone, actual=forecast)


def daily(days, low_hour, base=400.0, dip=100.0):
    """A trace with the same clean hour every day."""
    return [dip if h % 24 == low_hour else base for h in range(24 * days)]


def tallies(traces, **settings):
    options = {"workloads": (WORKLOADS["nightly_enrichment"],), "seeds": 1, **settings}
    return run_trace(traces, SimulationSettings(**options), seed=0)


def test_forecast_model_is_exact_at_issue_time_and_grows_with_the_horizon():
    """h = 0 is the actual; the error's spread grows like sqrt(h/24) * sigma24."""
    actual = trace([300.0] * (24 * 40)).actual
    model = ModelForecasts(actual, sigma24=0.1, rho=0.9, seed=1)
    errors = {h: [] for h in (0, 6, 24, 48)}
    for i in range(0, 24 * 30, 5):
        forecast = model.issued_at(actual.starts_s[i])
        assert forecast.values[0] == 300.0 and forecast.error_24h == 0.1
        for h in errors:
            errors[h].append(forecast.values[h] / 300.0 - 1)
    assert statistics.pstdev(errors[0]) == 0.0
    assert statistics.pstdev(errors[24]) == pytest.approx(0.1, rel=0.35)
    assert statistics.pstdev(errors[48]) > statistics.pstdev(errors[24]) > statistics.pstdev(errors[6])


def test_forecast_model_revises_consistently_toward_the_truth():
    """The error for one target hour keeps its sign across issue times and shrinks as it nears."""
    actual = trace([300.0] * 200).actual
    model = ModelForecasts(actual, sigma24=0.2, rho=0.9, seed=3)
    target = 100
    errors = [model.issued_at(actual.starts_s[target - h]).values[h] - 300.0 for h in (48, 24, 6, 1)]
    assert len({math.copysign(1, e) for e in errors}) == 1
    assert [abs(e) for e in errors] == sorted((abs(e) for e in errors), reverse=True)


def test_the_foresight_diagnostic_makes_leads_up_to_exact_h_exact_and_leaves_the_rest_noisy():
    actual = trace([300.0] * (24 * 10)).actual
    noisy = ModelForecasts(actual, sigma24=0.1, rho=0.9, seed=1)
    foresight = ModelForecasts(actual, sigma24=0.1, rho=0.9, seed=1, exact_h=12)
    for i in range(1, 24 * 5, 7):
        seen, usual = foresight.issued_at(actual.starts_s[i]), noisy.issued_at(actual.starts_s[i])
        assert seen.values[:13] == (300.0,) * 13 and seen.recent_error == 0.0
        assert seen.values[13:] == usual.values[13:] and seen.error_24h == 0.1  # the planner is not told
        assert usual.values[1:13] != (300.0,) * 12
    with pytest.raises(ConfigurationError, match="exact_h"):
        ModelForecasts(actual, sigma24=0.1, rho=0.9, seed=1, exact_h=-1)
    with pytest.raises(ConfigurationError, match="exact_h is hours of exact foresight"):
        SimulationSettings(workloads=(WORKLOADS["nightly_enrichment"],), exact_h=float("nan"))


def test_foresight_over_the_whole_slack_puts_the_gate_at_the_oracle():
    """On a noisy daily trace, exact leads up to the whole slack put the plain gate at the oracle.

    The gate is not told the leads are exact: with its persistence prior on, it still discounts
    them by the stated error, and so stays below the oracle.
    """
    values = [300.0 - 80 * math.cos((h - 5) / 24 * 2 * math.pi) + 40 * math.sin(h * 0.37) for h in range(24 * 40)]

    def fraction(exact_h, prior):
        settings = SimulationSettings(workloads=(WORKLOADS["nightly_enrichment"],), sigma24=0.3, seeds=2,
                                      policy=Policy(min_saving_pct=0, persistence_prior=prior), exact_h=exact_h)
        out = simulate([[trace(values)]], settings, workers=1)["summary"]["nightly_enrichment"]
        return out["carbon_sensors"]["fraction_of_oracle"]

    assert fraction(0, False) < fraction(8, False) == pytest.approx(1.0)
    assert fraction(8, True) < 1.0


def test_with_perfect_forecasts_every_planning_strategy_matches_the_oracle():
    """At sigma24 = 0 the gate, commit-once and the oracle choose the same windows (exact time model)."""
    out = simulate([[trace(daily(30, low_hour=5))]], SimulationSettings(
        workloads=(WORKLOADS["nightly_enrichment"],), sigma24=0.0, seeds=1, policy=Policy(min_saving_pct=0)), workers=1)
    summary = out["summary"]["nightly_enrichment"]
    assert summary["oracle"]["savings_vs_now"] == pytest.approx(0.75)
    assert summary["carbon_sensors"]["fraction_of_oracle"] == pytest.approx(1.0)
    assert summary["commit_once"]["fraction_of_oracle"] == pytest.approx(1.0)


def test_a_job_starts_at_its_exact_latest_start_when_the_grid_cleans_up_too_late():
    """When the grid only gets cleaner from 07:00, jobs start at 06:54 (08:00 - 1 h - 6 min), not on the hour."""
    day = [400.0] * 7 + [200.0] * 17
    result = tallies([trace(day * 20)], sigma24=0.0, policy=Policy(min_saving_pct=0))
    gate = result[("nightly_enrichment", "carbon_sensors")]
    assert gate.forced == gate.jobs
    assert gate.delay_h_sum / gate.jobs == pytest.approx(6.9)
    assert gate.intensity_sum / gate.jobs == pytest.approx(0.1 * 400 + 0.9 * 200)


def test_no_deadline_is_missed_without_overrun():
    """Without overrun no strategy misses a deadline, whatever the noise."""
    result = tallies([trace(daily(30, low_hour=7))], sigma24=0.3)
    assert all(t.misses == 0 for t in result.values())


def test_overrun_margin_from_history_keeps_caused_misses_rare():
    """With lognormal overrun the margin learned from run-time history keeps caused misses at or below 0.1 %."""
    traces = [trace(daily(400, low_hour=7))]
    result = tallies(traces, sigma24=0.1, overrun=Overrun.parse("lognormal:p95=1.5"))
    gate = result[("nightly_enrichment", "carbon_sensors")]
    assert gate.caused <= 0.001 * gate.jobs
    fixed = tallies(traces, sigma24=0.1, overrun=Overrun.parse("lognormal:p95=1.5"),
                    policy=Policy(safety_margin=timedelta(minutes=6)))
    assert fixed[("nightly_enrichment", "carbon_sensors")].caused > gate.caused  # the learned margin matters


def test_spatial_shifting_moves_work_to_the_cleaner_zone():
    """With a zones group the gate and the oracle may run in the other zone, and they do when it is cleaner."""
    home, other = trace([400.0] * 24 * 20, "AA"), trace([100.0] * 24 * 20, "BB")
    out = simulate([[home, other]], SimulationSettings(
        workloads=(WORKLOADS["nightly_enrichment"],), sigma24=0.0, seeds=1), workers=1)
    summary = out["summary"]["nightly_enrichment"]
    assert summary["carbon_sensors"]["savings_vs_now"] == pytest.approx(0.75)
    assert summary["oracle"]["savings_vs_now"] == pytest.approx(0.75)


def test_summary_is_the_ratio_of_summed_gains():
    """fraction_of_oracle = sum(now - strategy) / sum(now - oracle) over traces."""
    out = simulate([[trace(daily(20, 3))], [trace(daily(20, 6), zone="YY")]],
                   SimulationSettings(workloads=(WORKLOADS["nightly_enrichment"],), sigma24=0.2, seeds=2), workers=2)
    rows = {(r["trace"], r["strategy"]): r for r in out["results"]}
    gains = {s: sum(rows[(t, "now")]["mean_intensity"] - rows[(t, s)]["mean_intensity"] for t in ("XX.csv", "YY.csv"))
             for s in ("carbon_sensors", "oracle")}
    assert out["summary"]["nightly_enrichment"]["carbon_sensors"]["fraction_of_oracle"] == pytest.approx(
        gains["carbon_sensors"] / gains["oracle"], abs=1e-6)


def test_workload_presets_submit_on_schedule():
    """Presets submit at their times: weekly on Mondays at 00:00, the index rebuild at 18:00."""
    start, end = T0.timestamp(), (T0 + timedelta(days=28)).timestamp()
    weekly = WORKLOADS["weekly_retrain"].submissions(start, end)
    assert [datetime.fromtimestamp(s, UTC).weekday() for s in weekly] == [0, 0, 0, 0]  # Jan 3, 10, 17, 24
    assert all(datetime.fromtimestamp(s, UTC).hour == 18 for s in WORKLOADS["index_rebuild"].submissions(start, end))
    assert len(WORKLOADS["embedding_refresh"].submissions(start, end)) == 28 * 6  # the last one ends at `end`


def test_custom_workloads_parse_and_refuse_nonsense():
    """Custom workloads read like the presets; a slack shorter than the job is refused."""
    assert parse_workload("etl:every=6h,duration=90m,slack=5h,offset=2h") == Workload(
        "etl", period_h=6, duration_h=1.5, slack_h=5, offset_h=2)
    with pytest.raises(ConfigurationError, match="slack"):
        parse_workload("bad:every=1h,duration=2h,slack=1h")
    with pytest.raises(ConfigurationError, match="needs 'slack'"):
        parse_workload("bad:every=1h,duration=2h")


def test_overrun_parsing():
    """--overrun takes none or lognormal:p95=X, with X >= 1."""
    assert Overrun.parse("none").p95 is None and Overrun.parse("lognormal:p95=1.5").p95 == 1.5
    for bad in ("gamma:k=2", "lognormal:p95=0.5"):
        with pytest.raises(ConfigurationError):
            Overrun.parse(bad)


def test_duration_quantile_extrapolates_the_lognormal_tail():
    """The learned quantile lies beyond the longest run for a high quantile, and refuses empty history."""
    history = [timedelta(minutes=m) for m in (55, 58, 60, 61, 63, 66, 70)]
    assert duration_quantile(history, 0.999) > max(history)
    assert duration_quantile(history, 0.5) == max(history)  # never below the longest run seen
    with pytest.raises(ConfigurationError):
        duration_quantile([], 0.99)


def test_a_real_forecast_archive_can_replace_the_model(tmp_path, shared_data):
    """--forecast-archive rows (issued_at, target_time, value) serve as the forecasts."""
    import csv

    source = shared_data / "forecasts" / "GB_national_2023-03-15_fw48h_vs_actual.csv"
    rows = list(csv.DictReader(source.open()))
    archive = tmp_path / "archive.csv"
    actual = tmp_path / "GB_actual.csv"
    with archive.open("w") as f:
        f.write("issued_at,target_time,value\n")
        for row in rows:
            f.write(f"2023-03-15T01:00Z,{row['from_utc']},{row['forecast_issued_2023-03-15T01:01Z']}\n")
    with actual.open("w") as f:
        f.write("datetime_utc,actual\n")
        for row in rows:
            f.write(f"{row['from_utc']},{row['actual']}\n")
    forecasts = ArchiveForecasts(archive, "GB")
    first = forecasts.issued_at(datetime(2023, 3, 15, 3, tzinfo=UTC).timestamp())
    assert first.source == "forecast-archive" and first.values[0] == float(rows[0]["forecast_issued_2023-03-15T01:01Z"])
    assert main(["simulate", "--trace", str(actual), "--forecast-archive", str(archive),
                 "--workload", "short:every=4h,duration=1h,slack=4h,offset=2h", "--seeds", "1", "--json",
                 "--workers", "1"]) == 0


def test_simulate_command_json_shape(capsys, tmp_path):
    """The command prints results and summary in the documented JSON shape, and writes a plot."""
    path = tmp_path / "ZZ_trace.csv"
    path.write_text("datetime_utc,carbon_intensity\n" + "".join(
        f"{(T0 + timedelta(hours=h)).strftime('%Y-%m-%d %H:%M:%S')},{v}\n" for h, v in enumerate(daily(20, 4))))
    plot = tmp_path / "savings.png"
    assert main(["simulate", "--trace", str(path), "--workload", "nightly_enrichment", "--seeds", "1",
                 "--json", "--plot", str(plot), "--workers", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    row = out["results"][0]
    assert set(row) == {"trace", "zone", "workload", "strategy", "jobs", "mean_intensity", "savings_vs_now",
                        "deadline_misses", "caused_misses", "mean_delay_h", "forced_rate"}
    assert row["zone"] == "ZZ"
    assert set(out["summary"]["nightly_enrichment"]) == {"now", "commit_once", "replan", "carbon_sensors", "oracle"}
    assert out["forecast_model"].startswith("mmfe (martingale model of forecast evolution)")
    assert "sigma24" in out["forecast_model"] and out["settings"]["forecast_model"] == "mmfe"
    assert plot.stat().st_size > 10_000


def test_simulate_command_errors(capsys, tmp_path):
    """Unknown workloads and strategies, and a zones group without traces, are clear errors."""
    path = tmp_path / "ZZ.csv"
    path.write_text("datetime_utc,carbon_intensity\n2022-01-01 00:00:00,100\n2022-01-01 01:00:00,100\n")
    assert main(["simulate", "--trace", str(path), "--workload", "nope"]) == 2
    assert "unknown workload" in capsys.readouterr().err
    assert main(["simulate", "--trace", str(path), "--strategies", "now,magic"]) == 2
    assert "unknown strategies" in capsys.readouterr().err
    assert main(["simulate", "--trace", str(path), "--zones-group", "ZZ,QQ"]) == 2
    assert "no --trace for them" in capsys.readouterr().err


def _two_zone_traces(tmp_path):
    paths = []
    for zone, base in (("ZZ", 20), ("YY", 30)):
        path = tmp_path / f"{zone}_trace.csv"
        path.write_text("datetime_utc,carbon_intensity\n" + "".join(
            f"{(T0 + timedelta(hours=h)).strftime('%Y-%m-%d %H:%M:%S')},{v}\n" for h, v in enumerate(daily(base, 4))))
        paths.append(path)
    return paths


def test_the_simulate_table_reads_by_eye(capsys, tmp_path):
    """One-word headers that split into columns, the model labelled, a zone column with --zones-group, and
    every column (forced_pct too) explained under the table."""
    zz, yy = _two_zone_traces(tmp_path)
    assert main(["simulate", "--trace", str(zz), "--trace", str(yy), "--zones-group", "ZZ,YY", "--workload",
                 "nightly_enrichment", "--seeds", "1", "--workers", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Forecast model: ")
    header = lines[1].split()
    assert header == ["workload", "strategy", "saving_pct", "of_oracle", "misses", "caused_misses", "mean_delay_h",
                      "forced_pct", "zones"]
    rows = [line.split() for line in lines[2:7]]
    assert [r[1] for r in rows] == ["now", "commit_once", "replan", "carbon_sensors", "oracle"]
    assert all(r[8] == "YY,ZZ" and r[9:] == ["(one", "group)"] for r in rows), rows
    legend = " ".join(lines[7:])
    assert all(f"{name}:" in legend for name in header[2:])


@pytest.mark.parametrize("zone", ["DE", "GB", "ZA"])
def test_the_plot_legend_covers_no_bar_label(tmp_path, capsys, shared_data, zone):
    """The legend sits beside the bars: its box overlaps none of the bars' value labels (real traces)."""
    from carbon_sensors.cli import plot_figure

    rows = (shared_data / "carbon" / f"{zone}_2021-2023_hourly.csv").read_text().splitlines()
    trace = tmp_path / f"{zone}_2023_hourly.csv"
    trace.write_text("\n".join([rows[0], *[r for r in rows[1:] if r.startswith("2023-01")]]) + "\n")
    assert main(["simulate", "--trace", str(trace), "--workload", "all", "--seeds", "1", "--json", "--workers", "1"]) == 0
    fig = plot_figure(json.loads(capsys.readouterr().out))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (ax,) = fig.axes
    legend = ax.get_legend().get_window_extent(renderer)
    labels = [t.get_window_extent(renderer) for t in ax.texts]
    assert len(labels) >= 12  # a label per bar: 4 workloads x 3 strategies
    assert not [b for b in labels if b.overlaps(legend)]


def test_simulate_can_plan_without_the_persistence_prior(capsys, tmp_path):
    """--no-persistence-prior reaches the gate's policy, and on a noisy trace the prior changes the gate's choices."""
    import math as _math

    path = tmp_path / "ZZ_trace.csv"
    values = [300.0 - 80 * _math.cos((h - 5) / 24 * 2 * _math.pi) + 40 * _math.sin(h * 0.37) for h in range(24 * 60)]
    path.write_text("datetime_utc,carbon_intensity\n" + "".join(
        f"{(T0 + timedelta(hours=h)).strftime('%Y-%m-%d %H:%M:%S')},{v}\n" for h, v in enumerate(values)))
    common = ["simulate", "--trace", str(path), "--workload", "weekly_retrain", "--seeds", "2", "--sigma24", "0.3",
              "--strategies", "now,carbon_sensors,oracle", "--json", "--workers", "1"]
    shares = {}
    for flags in ([], ["--no-persistence-prior"]):
        assert main(common + flags) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["settings"]["policy"].get("persistence_prior", True) is not bool(flags)
        shares[bool(flags)] = out["summary"]["weekly_retrain"]["carbon_sensors"]["fraction_of_oracle"]
    assert shares[False] != shares[True]
