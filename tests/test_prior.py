"""The persistence prior: a forecast blended with the measured past, and the gate that asks for it."""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import UTC, datetime, timedelta

import pytest
from static_source import StaticSource

from carbon_sensors import CarbonGate, Policy, decide
from carbon_sensors.errors import SourceError
from carbon_sensors.forecast import Forecast
from carbon_sensors.planning.prior import (
    HISTORY,
    MIN_PAIRS_H,
    PRIOR_MARK,
    blend_with_persistence,
    persistence_errors,
)
from carbon_sensors.simulate import load_trace
from carbon_sensors.simulate_strategies import SimulatedSource

NOW = datetime(2026, 6, 8, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def measured(days: int = 14, value_on_day=lambda d, h: 200.0 + 10 * d + h) -> Forecast:
    """``days`` of hourly measurements ending at NOW; day 0 is the oldest."""
    start = NOW - timedelta(days=days)
    points = [(start + k * HOUR, value_on_day(k // 24, k % 24)) for k in range(days * 24)]
    return Forecast.from_points(points, zone="DE", source="measured", resolution=HOUR, measured_until=NOW)


def forecast(values, error_24h=0.1, signal="average") -> Forecast:
    return Forecast.from_points([(NOW + k * HOUR, v) for k, v in enumerate(values)], zone="DE", source="fc",
                                issued_at=NOW, resolution=HOUR, error_24h=error_24h, signal=signal)


def test_each_hour_is_weighted_by_the_inverse_of_its_variance():
    """blended = w f + (1 - w) p, w = v_prior / (v_prior + sigma^2 h / 24), p the week's mean at the smallest lag measured."""
    history = measured()
    errors = persistence_errors(history)
    fc = forecast([300.0] * 80)
    blended = blend_with_persistence(fc, history, now=NOW)
    assert blended.source == "fc" + PRIOR_MARK
    assert blended.values[0] == 300.0  # the current hour: not blended
    for h, lag in ((1, 1), (23, 1), (24, 2), (47, 2), (48, 3), (71, 3)):  # the current hour is not yet measured
        prior = sum(history.value_at(NOW + h * HOUR - timedelta(days=d)) for d in range(lag, lag + 7)) / 7
        w = errors[lag] / (errors[lag] + 0.1 ** 2 * h / 24)
        assert blended.values[h] == pytest.approx(w * 300.0 + (1 - w) * prior), (h, lag)
    assert blended.values[72:] == (300.0,) * 8  # three days ahead and beyond: no lag is measured yet


def test_persistence_errors_are_mean_squared_relative_errors_per_lag():
    """Each lag's error is the mean of (1 - prior / m(t))^2 over its hourly samples."""
    history = measured(days=11, value_on_day=lambda d, h: 100.0 * (1 + d))  # one level per day
    errors = persistence_errors(history)
    for lag in (1, 2):
        # On day D the prior is the mean of days D - lag - 6 .. D - lag: a level of 1 + D - lag - 3.
        days = range(lag + 6, 11)
        expected = sum(((lag + 3) / (1 + day)) ** 2 for day in days) / len(days)
        assert errors[lag] == pytest.approx(expected)
    assert 3 not in errors  # two days of lag-3 samples: under MIN_PAIRS_H
    assert MIN_PAIRS_H == 72


def test_nothing_is_blended_without_a_stated_error_enough_history_or_the_same_signal():
    fc = forecast([300.0] * 30)
    assert blend_with_persistence(forecast([300.0] * 30, error_24h=0.0), measured(), now=NOW).source == "fc"
    assert blend_with_persistence(fc, measured(days=9), now=NOW) is fc  # 2 days of lag-1 samples only
    assert blend_with_persistence(forecast([300.0] * 30, signal="marginal"), measured(), now=NOW).source == "fc"
    assert blend_with_persistence(fc, measured(), now=NOW, scale=0.0) is fc


def test_hours_the_forecast_already_measured_are_kept():
    fc = Forecast.from_points([(NOW + k * HOUR, 300.0) for k in range(10)], zone="DE", source="fc", issued_at=NOW,
                              resolution=HOUR, error_24h=0.1, measured_until=NOW + 3 * HOUR)
    blended = blend_with_persistence(fc, measured(), now=NOW)
    assert blended.values[:3] == (300.0,) * 3 and all(v != 300.0 for v in blended.values[3:])


class MeasuringSource(StaticSource):
    """A StaticSource that also serves measured history, or fails to."""

    def __init__(self, forecasts, history=None, error=None):
        super().__init__(forecasts, refresh_interval=HOUR)
        self.history, self.error, self.asked = history, error, []

    async def fetch_measured(self, zone, start, end, *, now):
        self.asked.append((zone, start, end))
        if self.error is not None:
            raise self.error
        return self.history


def gate(source, **policy):
    return CarbonGate(zones="DE", deadline=NOW + timedelta(hours=30), expected_duration=HOUR, source=source,
                      policy=Policy(min_saving_pct=0.0, **policy))


def decide_now(g):
    return asyncio.run(decide(g, now=NOW, deadline=NOW + timedelta(hours=30), submitted_at=NOW))


def test_the_gate_plans_on_the_blended_forecast_where_its_source_serves_history():
    """A far dip that the measured past does not show is discounted: the plan says what it planned on."""
    values = [300.0] * 30
    values[20] = 150.0
    source = MeasuringSource({"DE": forecast(values)}, history=measured(value_on_day=lambda d, h: 300.0))
    decision = decide_now(gate(source))
    assert source.asked == [("DE", NOW - HISTORY, NOW)] and HISTORY == timedelta(days=28)
    assert decision.plan.source == "fc" + PRIOR_MARK
    assert decision.plan.intensity_planned > 150.0  # the dip, pulled towards the 300 measured every day

    plain = MeasuringSource({"DE": forecast(values)}, history=measured(value_on_day=lambda d, h: 300.0))
    as_is = decide_now(gate(plain, persistence_prior=False))
    assert plain.asked == [] and as_is.plan.source == "fc" and as_is.plan.intensity_planned == 150.0


def test_a_failing_history_never_holds_a_plan_up(caplog):
    values = [300.0] * 30
    values[20] = 150.0
    source = MeasuringSource({"DE": forecast(values)}, error=SourceError("history endpoint down"))
    with caplog.at_level(logging.INFO, logger="carbon_sensors.gate"):
        decision = decide_now(gate(source))
    assert decision.status == "wait" and decision.plan.source == "fc" and decision.plan.intensity_planned == 150.0
    assert "no measured history for DE (SourceError: history endpoint down)" in caplog.text


def test_policy_keeps_persistence_prior_through_its_dict_and_refuses_a_non_bool():
    assert "persistence_prior" not in Policy().to_dict()  # triggers serialized before it read the same
    off = Policy(persistence_prior=False)
    assert Policy.from_dict(off.to_dict()) == off and off.carbon_only().persistence_prior is False
    with pytest.raises(Exception, match="persistence_prior must be True or False"):
        Policy(persistence_prior="no")


def test_the_backtest_source_serves_only_what_was_measured_before_the_current_hour(shared_data):
    trace = load_trace(shared_data / "carbon" / "DE_2021-2023_hourly.csv")
    source = SimulatedSource({}, "average", {"DE": trace.actual})
    now = datetime(2022, 3, 1, 10, 40, tzinfo=UTC)
    history = asyncio.run(source.fetch_measured("DE", now - HISTORY, now, now=now))
    assert history.measured_until == datetime(2022, 3, 1, 10, tzinfo=UTC) == datetime.fromtimestamp(history.end_s, UTC)
    assert len(history.values) == 28 * 24 - 1  # from 11:00 four weeks before, the first whole hour after now - 28 d
    at = trace.actual.starts_s.index(history.starts_s[-1])
    assert history.values[-1] == trace.actual.values[at]


def test_an_unevenly_spaced_history_gives_the_same_errors_as_an_hourly_one():
    """The index shortcut for evenly spaced points and the general sampling agree."""
    hourly = measured(value_on_day=lambda d, h: 150.0 + 40 * ((d * 7 + h * 3) % 5))
    points = list(hourly.points())
    half_hour_later = (points[10][0] + timedelta(minutes=30), points[10][1])  # an extra point, same value
    uneven = [*points[:11], half_hour_later, *points[11:]]
    irregular = Forecast.from_points(uneven, zone="DE", source="measured", resolution=HOUR, measured_until=NOW)
    assert persistence_errors(irregular) == pytest.approx(persistence_errors(hourly))
    assert set(persistence_errors(hourly)) == {1, 2, 3}


def test_a_window_of_the_backtest_index_is_analysed_as_the_window_alone(shared_data):
    """PersistenceIndex gives any window of a real trace the errors and sums that analysing it alone gives."""
    from carbon_sensors.planning.prior import PersistenceIndex, _analysed, _history

    trace = load_trace(shared_data / "carbon" / "ZA_2021-2023_hourly.csv").actual
    index = PersistenceIndex(trace)
    for day in (3, 40, 400):
        start = trace.starts_s[0] + day * 86400 + 5 * 3600
        window = index.window(start, start + HISTORY.total_seconds())
        fast, alone = _history(window), _analysed(window)
        assert fast is not alone and fast.first == alone.first and set(fast.errors) == set(alone.errors)
        assert fast.errors == pytest.approx(alone.errors, rel=1e-9)
        assert [round(v, 6) for v in fast.sums[144:]] == [round(v, 6) for v in alone.sums[144:]]
        assert all(math.isnan(v) for v in fast.sums[:144] + alone.sums[:144])


def test_a_slow_history_is_given_up_and_the_plan_made_on_the_forecast(monkeypatch, caplog):
    """A history slower than HISTORY_TIMEOUT_S never holds a decision up."""
    import carbon_sensors.gate as gate_module

    class Slow(MeasuringSource):
        async def fetch_measured(self, zone, start, end, *, now):
            await asyncio.sleep(5)
            return measured()

    monkeypatch.setattr(gate_module, "HISTORY_TIMEOUT_S", 0.05)
    values = [300.0] * 30
    values[20] = 150.0
    with caplog.at_level(logging.INFO, logger="carbon_sensors.gate"):
        decision = decide_now(gate(Slow({"DE": forecast(values)})))
    assert decision.plan.source == "fc" and decision.plan.intensity_planned == 150.0
    assert "no measured history for DE (TimeoutError" in caplog.text
