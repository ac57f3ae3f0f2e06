"""The persistence prior: a forecast blended with the measured past, and the gate that asks for it."""

from __future__ import annotations

import asyncio
import logging
import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from static_source import StaticSource

from carbon_sensors import CarbonGate, Policy, decide
from carbon_sensors.errors import SourceError
from carbon_sensors.forecast import Forecast
from carbon_sensors.planning.prior import (
    HISTORY,
    HOUR_OF_DAY_PSEUDO_SAMPLES,
    MIN_PAIRS_H,
    PRIOR_MARK,
    blend_with_persistence,
    persistence_fit,
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


def usual(history: Forecast, t: datetime, lag: int) -> float:
    """The mean of ``t``'s hour over the seven days from ``lag`` days before, written out."""
    return sum(history.value_at(t - timedelta(days=d)) for d in range(lag, lag + 7)) / 7


def wavy(d: int, h: int) -> float:
    """A day shape plus a slow, irregular departure, so every lead has something to fit."""
    return (200.0 + 60 * math.sin(h / 24 * 2 * math.pi)) * (1 + 0.15 * math.sin(d * 1.7 + h / 9))


def test_each_hour_is_blended_with_the_usual_level_moved_by_now_s_departure():
    """prior = usual_L(T) * exp(slope_h * departure(now)); blended = w f + (1 - w) prior, w by inverse variances."""
    history = measured(days=28, value_on_day=wavy)
    fits = persistence_fit(history)
    fc = forecast([300.0] * 80)
    blended = blend_with_persistence(fc, history, now=NOW)
    assert blended.source == "fc" + PRIOR_MARK
    assert blended.values[0] == 300.0  # the current hour: not blended
    for h, lag in ((1, 1), (23, 1), (24, 2), (47, 2), (48, 3), (71, 3)):  # the current hour is not yet measured
        target = NOW + h * HOUR
        fit = fits[h]
        prior = usual(history, target, lag) * math.exp(fit.slope * (math.log(300.0) - math.log(usual(history, NOW, lag))))
        v = fit.variance_at(target.hour)
        w = v / (v + 0.1 ** 2 * h / 24)
        assert blended.values[h] == pytest.approx(w * 300.0 + (1 - w) * prior), (h, lag)
    assert blended.values[72:] == (300.0,) * 8  # three days ahead and beyond: no usual level is measured yet


def test_the_fit_is_the_least_squares_slope_of_departures_and_its_error():
    """slope = sum(x y) / sum(x x) over the pairs (departure(s), departure(s + h)), clipped to [0, 1]; the
    variance is the mean squared residual, per hour of day shrunk towards all hours."""
    history = measured(days=28, value_on_day=wavy)
    values = [history.value_at(NOW - timedelta(days=28) + k * HOUR) for k in range(28 * 24)]
    for h in (1, 5, 30):
        lag = -(-(h + 1) // 24)

        def departure(j: int, lag: int = lag) -> float:
            return math.log(values[j]) - math.log(sum(values[j - 24 * d] for d in range(lag, lag + 7)) / 7)

        pairs = [(departure(j - h), departure(j), j % 24) for j in range(h + 24 * (lag + 6), len(values))]
        slope = min(1.0, max(0.0, sum(x * y for x, y, _ in pairs) / sum(x * x for x, _, _ in pairs)))
        squared = [(y - slope * x) ** 2 for x, y, _ in pairs]
        fit = persistence_fit(history)[h]
        assert fit.pairs == len(pairs) and fit.slope == pytest.approx(slope)
        assert fit.variance == pytest.approx(sum(squared) / len(squared))
        at_three = [e for e, (_, _, hour) in zip(squared, pairs, strict=True) if hour == 3]
        assert fit.variance_at(3) == pytest.approx(
            (sum(at_three) + HOUR_OF_DAY_PSEUDO_SAMPLES * fit.variance) / (len(at_three) + HOUR_OF_DAY_PSEUDO_SAMPLES))
    assert MIN_PAIRS_H == 72


def test_a_departure_that_lasts_moves_the_near_hours_and_fades_from_the_far_ones():
    """Where the grid's departures from its usual level last hours but not days, a forecast hour soon after
    now is pulled towards now's level, one a day and more ahead towards the usual level."""
    levels = [random.Random(k).uniform(0.7, 1.4) for k in range(60)]  # a level of its own every 12 hours

    def lasting(d: int, h: int) -> float:
        return 200.0 * levels[d * 2 + h // 12]

    history = measured(days=28, value_on_day=lasting)
    fits = persistence_fit(history)
    assert fits[1].slope > 0.8 and fits[40].slope < 0.3
    high_now = forecast([400.0] + [200.0] * 60, error_24h=0.6)  # runs high now; a rough forecast says it drops
    blended = blend_with_persistence(high_now, history, now=NOW)
    assert blended.values[1] > 250.0 and abs(blended.values[40] - 200.0) < 0.2 * (blended.values[1] - 200.0)


def test_an_hour_of_day_that_has_been_hard_to_call_trusts_the_forecast_more():
    """The prior's error is measured per hour of day: where it has been wrong, the forecast weighs more."""
    def noisy_at_nine(d: int, h: int) -> float:
        return 200.0 + (80.0 * (-1) ** d if h == 9 else 0.0)

    history = measured(days=28, value_on_day=noisy_at_nine)
    fit = persistence_fit(history)[9]
    assert fit.variance_at(9) > 10 * fit.variance_at(8)
    blended = blend_with_persistence(forecast([200.0] + [260.0] * 30), history, now=NOW)
    assert abs(blended.values[9] - 260.0) < abs(blended.values[8] - 260.0)


def test_nothing_is_blended_without_a_stated_error_enough_history_or_the_same_signal():
    fc = forecast([300.0] * 30)
    assert blend_with_persistence(forecast([300.0] * 30, error_24h=0.0), measured(), now=NOW).source == "fc"
    assert blend_with_persistence(fc, measured(days=9), now=NOW) is fc  # 2 days of lag-1 samples only
    assert blend_with_persistence(forecast([300.0] * 30, signal="marginal"), measured(), now=NOW).source == "fc"
    assert blend_with_persistence(fc, measured(), now=NOW, scale=0.0) is fc
    later = Forecast.from_points([(NOW + k * HOUR, 300.0) for k in range(1, 30)], zone="DE", source="fc", issued_at=NOW,
                                 resolution=HOUR, error_24h=0.1)
    assert blend_with_persistence(later, measured(), now=NOW) is later  # no value for now to measure a departure by
    blended = blend_with_persistence(fc, measured(), now=NOW, until=NOW + 5 * HOUR)
    assert blended.values[5:] == fc.values[5:] and blended.values[1:5] != fc.values[1:5]  # up to the deadline only


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


def test_an_unevenly_spaced_history_gives_the_same_fit_as_an_hourly_one():
    """The index shortcut for evenly spaced points and the general sampling agree."""
    hourly = measured(value_on_day=lambda d, h: 150.0 + 40 * ((d * 7 + h * 3) % 5))
    points = list(hourly.points())
    half_hour_later = (points[10][0] + timedelta(minutes=30), points[10][1])  # an extra point, same value
    uneven = [*points[:11], half_hour_later, *points[11:]]
    irregular = Forecast.from_points(uneven, zone="DE", source="measured", resolution=HOUR, measured_until=NOW)
    fits, expected = persistence_fit(irregular), persistence_fit(hourly)
    assert set(fits) == set(expected) and set(range(1, 72)) - set(fits)  # 14 days: the longest leads have too few pairs
    for h, fit in expected.items():
        assert (fits[h].slope, fits[h].variance, fits[h].pairs) == pytest.approx((fit.slope, fit.variance, fit.pairs))


def test_a_window_of_the_backtest_index_is_fitted_as_the_window_alone(shared_data):
    """PersistenceIndex fits any window of a real trace as fitting that window alone does."""
    from carbon_sensors.planning.prior import PersistenceIndex, _analysed, _history

    trace = load_trace(shared_data / "carbon" / "ZA_2021-2023_hourly.csv").actual
    index = PersistenceIndex(trace)
    for day in (3, 40, 400):
        start = trace.starts_s[0] + day * 86400 + 5 * 3600
        window = index.window(start, start + HISTORY.total_seconds())
        fast, alone = _history(window), _analysed(window)
        assert fast is not alone and fast.first == alone.first
        now_j = len(window.values)
        for h in (1, 7, 23, 24, 50, 71):
            a, b = fast.fit(h), alone.fit(h)
            assert a.pairs == b.pairs and (a.slope, a.variance) == pytest.approx((b.slope, b.variance), rel=1e-9)
            assert [a.variance_at(hour) for hour in range(24)] == pytest.approx(
                [b.variance_at(hour) for hour in range(24)], rel=1e-9)
            lag = -(-(h + 1) // 24)
            assert fast.usual(lag, now_j + h) == pytest.approx(alone.usual(lag, now_j + h), rel=1e-12)
        assert math.isnan(fast.usual(1, now_j + 24)) and math.isnan(alone.usual(1, now_j + 24))  # not yet measured


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
