"""The martingale forecast model (mmfe) and the plain re-plan baseline in backtests."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime, timedelta

import pytest

from carbon_sensors import ConfigurationError, Forecast
from carbon_sensors.cli import main
from carbon_sensors.forecast_models import make_forecasts
from carbon_sensors.planning import Policy
from carbon_sensors.simulate import WORKLOADS, MMFEForecasts, SimulationSettings, Trace, simulate

T0 = datetime(2022, 1, 3, tzinfo=UTC)


def actual(values, zone="XX"):
    return Forecast.from_points([(T0 + timedelta(hours=i), v) for i, v in enumerate(values)], zone=zone, source="test")


def errors(model, i, h):
    return model.issued_at(model.actual.starts_s[i]).values[h] / model.actual.values[i + h] - 1


def test_issue_time_is_exact_and_every_lead_up_to_exact_h_too():
    flat = actual([300.0] * 24 * 10)
    model = MMFEForecasts(flat, sigma24=0.3, rho=0.9, seed=1)
    foresight = MMFEForecasts(flat, sigma24=0.3, rho=0.9, seed=1, exact_h=6)
    for i in range(0, 24 * 5, 7):
        assert model.issued_at(flat.starts_s[i]).values[0] == 300.0
        assert foresight.issued_at(flat.starts_s[i]).values[:7] == (300.0,) * 7
        assert foresight.issued_at(flat.starts_s[i]).values[7:] == model.issued_at(flat.starts_s[i]).values[7:]


def test_the_error_variance_grows_linearly_with_the_horizon():
    """Var E[t, h] = sigma24^2 * h / 24, empirically over many issue times and seeds (loose tolerance)."""
    flat = actual([300.0] * 24 * 60)
    draws = {h: [] for h in (1, 6, 24, 48, 72)}
    for seed in range(6):
        model = MMFEForecasts(flat, sigma24=0.1, rho=0.9, seed=seed)
        for i in range(0, 24 * 55, 3):
            for h in draws:
                draws[h].append(model.error(i, h))
    for h, sample in draws.items():
        assert statistics.pvariance(sample) == pytest.approx(0.1**2 * h / 24, rel=0.25), h
        assert abs(statistics.fmean(sample)) < 0.3 * 0.1 * math.sqrt(h / 24) + 0.002


def test_revisions_are_uncorrelated_with_earlier_revisions():
    """The martingale property: the revision of a target between consecutive issue times is uncorrelated with
    the revision before it (the fixed model's revisions all point the same way)."""
    flat = actual([300.0] * 24 * 60)
    later, earlier = [], []
    for seed in range(4):
        model = MMFEForecasts(flat, sigma24=0.2, rho=0.9, seed=seed)
        for target in range(80, 24 * 58, 2):
            e = [model.error(target - h, h) for h in (26, 25, 24)]
            earlier.append(e[1] - e[0])
            later.append(e[2] - e[1])
    assert abs(statistics.correlation(earlier, later)) < 0.05


def test_two_forecasts_of_one_hour_do_not_reveal_the_actual():
    """Knowing the forecasts issued 24 h and 12 h ahead, extrapolating their revision misses the actual by as
    much as the 12 h forecast itself; under the fixed model the same extrapolation lands on the truth."""
    from carbon_sensors.simulate import ModelForecasts

    flat = actual([300.0] * 24 * 60)
    for cls, revealed in ((MMFEForecasts, False), (ModelForecasts, True)):
        guesses, plain = [], []
        for seed in range(3):
            model = cls(flat, sigma24=0.2, rho=0.9, seed=seed)
            for target in range(30, 24 * 58, 5):
                far = model.issued_at(flat.starts_s[target - 24]).values[24]
                near = model.issued_at(flat.starts_s[target - 12]).values[12]
                # fixed model: error scales like sqrt(h), so actual = (near - far * k) / (1 - k), k = sqrt(1/2)
                k = math.sqrt(12 / 24)
                guesses.append(((near - k * far) / (1 - k)) / 300.0 - 1)
                plain.append(near / 300.0 - 1)
        spread = statistics.pstdev(guesses)
        if revealed:
            assert spread < 1e-9
        else:
            assert spread > statistics.pstdev(plain)


def test_the_same_trace_and_seed_give_the_same_forecasts_and_others_differ():
    values = [300.0 + 50 * math.sin(h / 4) for h in range(24 * 5)]
    one, two = MMFEForecasts(actual(values), sigma24=0.1, rho=0.9, seed=4), MMFEForecasts(
        actual(values), sigma24=0.1, rho=0.9, seed=4)
    assert one.factors == two.factors
    assert MMFEForecasts(actual(values), sigma24=0.1, rho=0.9, seed=5).factors != one.factors
    assert MMFEForecasts(actual(values, zone="YY"), sigma24=0.1, rho=0.9, seed=4).factors != one.factors


def test_an_unknown_model_is_a_configuration_error_naming_the_choices(capsys, tmp_path):
    with pytest.raises(ConfigurationError, match="choose from mmfe, fixed"):
        SimulationSettings(workloads=(WORKLOADS["nightly_enrichment"],), forecast_model="perfect")
    path = tmp_path / "ZZ.csv"
    path.write_text("datetime_utc,carbon_intensity\n2022-01-01 00:00:00,100\n2022-01-01 01:00:00,100\n")
    assert main(["simulate", "--trace", str(path), "--forecast-model", "perfect"]) == 2
    assert "unknown forecast model 'perfect'; choose from mmfe, fixed" in capsys.readouterr().err


def noisy_daily(days):
    return [300.0 - 80 * math.cos((h - 5) / 24 * 2 * math.pi) + 40 * math.sin(h * 0.37) for h in range(24 * days)]


@pytest.mark.parametrize("model", ["mmfe", "fixed"])
def test_replan_never_starts_after_the_latest_start(model):
    """However noisy the forecasts, the plain re-plan starts at or before every job's latest start."""
    from carbon_sensors.simulate import _replan_start

    trace = Trace("XX.csv", "XX", actual(noisy_daily(40)))
    forecasts = {"XX": make_forecasts(model, trace.actual, sigma24=0.4, rho=0.9, seed=2)}
    policy = Policy(min_saving_pct=0)
    for workload in WORKLOADS.values():
        expected = timedelta(hours=workload.duration_h)
        submissions = workload.submissions(trace.actual.starts_s[0], trace.actual.end_s - 4 * workload.duration_h * 3600)
        assert submissions
        for submit_s in submissions:
            deadline_s = submit_s + workload.slack_h * 3600
            latest_s = deadline_s - (expected + policy.margin_for(expected)).total_seconds()
            start, zone = _replan_start([trace], forecasts, submit_s, deadline_s, expected, policy)
            assert submit_s <= start <= latest_s + 1e-6 and zone == "XX"


def test_replan_on_exact_forecasts_gets_the_oracle_saving():
    trace = Trace("XX.csv", "XX", actual(noisy_daily(40)))
    out = simulate([[trace]], SimulationSettings(workloads=tuple(WORKLOADS.values()), sigma24=0.0, seeds=1,
                                                 policy=Policy(min_saving_pct=0)), workers=1)
    for workload in WORKLOADS:
        assert out["summary"][workload]["replan"]["fraction_of_oracle"] == pytest.approx(1.0, abs=0.01), workload


def test_without_correction_the_gate_plans_on_each_forecast_as_replan_does():
    """Under mmfe the gate's default (no correction by the current error) makes the plain re-plan's choices."""
    values = [300.0 + 150.0 * math.sin(h / 24 * 2 * math.pi) + 40.0 * math.sin(h / 7.0) for h in range(24 * 21)]
    home = Trace(name="XX.csv", zone="XX", actual=actual(values))
    settings = SimulationSettings(workloads=(WORKLOADS["index_rebuild"],), strategies=("replan", "carbon_sensors"),
                                  sigma24=0.2, seeds=1, policy=Policy(min_saving_pct=0.0))
    rows = {r["strategy"]: r for r in simulate([[home]], settings, workers=1)["results"]}
    assert rows["carbon_sensors"]["mean_intensity"] == pytest.approx(rows["replan"]["mean_intensity"])
