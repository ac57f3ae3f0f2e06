"""Tests for carbon_sensors.forecast: building, validating and averaging piecewise-constant forecasts."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from carbon_sensors.errors import ConfigurationError, InvalidForecastError, SignalMismatchError
from carbon_sensors.forecast import MAX_PLAUSIBLE_G_PER_KWH, Forecast, common_signal

T0 = datetime(2026, 6, 15, 6, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)


def hourly(values, *, start=T0, zone="DE", signal="average", source="test"):
    return Forecast.from_points(
        [(start + i * H, v) for i, v in enumerate(values)], zone=zone, source=source, signal=signal
    )


# -- from_points ----------------------------------------------------------------------------------


def test_from_points_builds_epoch_slots_and_default_end():
    """from_points stores UTC epoch starts, float values, and lets the last point hold one previous step."""
    f = hourly([300, 100, 250])
    assert f.starts_s == tuple((T0 + i * H).timestamp() for i in range(3))
    assert f.values == (300.0, 100.0, 250.0)
    assert all(isinstance(v, float) for v in f.values)
    assert f.start == T0
    assert f.end == T0 + 3 * H
    assert f.issued_at == T0
    assert f.points() == [(T0, 300.0), (T0 + H, 100.0), (T0 + 2 * H, 250.0)]


def test_from_points_default_end_uses_the_last_step_not_the_first():
    """Without resolution=, the last point holds as long as the step just before it, even for uneven steps."""
    f = Forecast.from_points([(T0, 1.0), (T0 + H, 2.0), (T0 + H + 5 * M, 3.0)], zone="DE", source="t")
    assert f.end == T0 + H + 10 * M


def test_from_points_explicit_resolution_sets_end_and_issued_at_is_kept():
    """resolution= decides how long the last point holds, and issued_at/measured_until are stored in UTC."""
    issued = datetime(2026, 6, 15, 7, tzinfo=ZoneInfo("Europe/Berlin"))  # 05:00 UTC
    f = Forecast.from_points(
        [(T0, 1.0), (T0 + H, 2.0)], zone="DE", source="t", resolution=30 * M, issued_at=issued,
        measured_until=T0 + H,
    )
    assert f.end == T0 + H + 30 * M
    assert f.issued_at == datetime(2026, 6, 15, 5, tzinfo=UTC)
    assert f.issued_at.tzinfo == UTC
    assert f.measured_until == T0 + H


def test_from_points_converts_aware_non_utc_times_to_utc():
    """Points given in another time zone land on the same UTC instants."""
    berlin = ZoneInfo("Europe/Berlin")
    f = Forecast.from_points(
        [(datetime(2026, 6, 15, 8, tzinfo=berlin), 10.0), (datetime(2026, 6, 15, 9, tzinfo=berlin), 20.0)],
        zone="DE", source="t",
    )
    assert f.start == T0
    assert f.points()[0][0].tzinfo == UTC


def test_single_point_with_resolution_is_valid():
    """A single point is fine once resolution= says how long it holds."""
    f = Forecast.from_points([(T0, 42.0)], zone="DE", source="t", resolution=5 * M)
    assert (f.start, f.end, f.values) == (T0, T0 + 5 * M, (42.0,))


def test_boundary_values_zero_and_maximum_are_accepted():
    """0 and exactly MAX_PLAUSIBLE_G_PER_KWH are valid intensities."""
    f = hourly([0.0, MAX_PLAUSIBLE_G_PER_KWH])
    assert f.values == (0.0, 2000.0)


# -- validation -----------------------------------------------------------------------------------


def test_empty_points_raise_invalid_forecast():
    """An empty point list is refused with InvalidForecastError naming the zone."""
    with pytest.raises(InvalidForecastError, match=r"'DE'.*no points"):
        Forecast.from_points([], zone="DE", source="t")


def test_constructor_with_no_starts_raises_invalid_forecast():
    """The constructor itself refuses an empty forecast."""
    with pytest.raises(InvalidForecastError, match="no points"):
        Forecast(zone="DE", source="t", signal="average", issued_at=T0, starts_s=(), values=(), end_s=1.0)


def test_mismatched_lengths_raise_invalid_forecast():
    """The constructor refuses different numbers of times and values."""
    with pytest.raises(InvalidForecastError, match="2 times but 1 values"):
        Forecast(zone="DE", source="t", signal="average", issued_at=T0, starts_s=(0.0, 1.0), values=(1.0,), end_s=2.0)


@pytest.mark.parametrize(
    "times",
    [
        [T0, T0, T0 + H],  # duplicate
        [T0, T0 + 2 * H, T0 + H],  # out of order
    ],
    ids=["duplicate", "decreasing"],
)
def test_non_increasing_times_raise_invalid_forecast(times):
    """Duplicate or out-of-order timestamps are refused with a hint to sort and deduplicate."""
    with pytest.raises(InvalidForecastError, match=r"strictly increasing.*sort the points"):
        Forecast.from_points([(t, 100.0) for t in times], zone="DE", source="t")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -0.5, -100.0, MAX_PLAUSIBLE_G_PER_KWH + 0.1, 5000.0])
def test_implausible_values_raise_invalid_forecast(bad):
    """NaN, infinite, negative and > 2000 g/kWh values are refused with a unit hint."""
    with pytest.raises(InvalidForecastError, match=r"must be finite and within 0\.\.2000") as info:
        hourly([100.0, bad, 100.0])
    assert "unit" in str(info.value)
    assert (T0 + H).isoformat() in str(info.value)  # names the bad point


def test_infinities_of_both_signs_are_refused():
    """+inf and -inf together sum to NaN; the check still finds and names the first of them."""
    with pytest.raises(InvalidForecastError, match=r"intensity inf at 2026-06-15T07:00:00\+00:00"):
        hourly([100.0, math.inf, -math.inf, 100.0])


def test_single_point_without_resolution_raises_invalid_forecast():
    """A single point without resolution= is refused, telling the caller to pass resolution=."""
    with pytest.raises(InvalidForecastError, match="resolution="):
        Forecast.from_points([(T0, 100.0)], zone="DE", source="t")


def test_naive_point_time_raises_configuration_error():
    """A naive point datetime is a ConfigurationError that suggests an aware datetime."""
    with pytest.raises(ConfigurationError, match="no time zone") as info:
        Forecast.from_points([(datetime(2026, 6, 15, 6), 100.0), (datetime(2026, 6, 15, 7), 100.0)],
                             zone="DE", source="t")
    assert not isinstance(info.value, InvalidForecastError)


def test_naive_issued_at_raises_configuration_error():
    """A naive issued_at is refused too."""
    with pytest.raises(ConfigurationError, match="issued_at"):
        Forecast.from_points([(T0, 1.0), (T0 + H, 2.0)], zone="DE", source="t", issued_at=datetime(2026, 1, 1))


@pytest.mark.parametrize("resolution", [timedelta(0), -H])
def test_non_positive_resolution_raises_configuration_error(resolution):
    """A zero or negative resolution is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="resolution must be positive"):
        Forecast.from_points([(T0, 1.0)], zone="DE", source="t", resolution=resolution)


def test_unknown_signal_raises_configuration_error():
    """Only 'average' and 'marginal' signals exist."""
    with pytest.raises(ConfigurationError, match="'average' or 'marginal'"):
        hourly([1.0, 2.0], signal="moer")


# -- window_mean / mean_between / value_at --------------------------------------------------------


def test_window_mean_half_slot_plus_half_slot():
    """A 1 h window starting mid-slot averages half of each slot: (300 + 100) / 2 = 200."""
    f = hourly([300, 100, 900])
    assert f.window_mean(T0 + 30 * M, H) == pytest.approx(200.0)


def test_window_mean_quarter_and_three_quarters():
    """A 1 h window from :45 weighs the first slot 1/4 and the next 3/4: 0.25*100 + 0.75*400 = 325."""
    f = hourly([100, 400, 700])
    assert f.window_mean(T0 + 45 * M, H) == pytest.approx(325.0)


def test_window_mean_spanning_three_slots():
    """A 2 h window from :30 covers 0.5 h, 1 h and 0.5 h: (50 + 400 + 350) / 2 = 400."""
    f = hourly([100, 400, 700])
    assert f.window_mean(T0 + 30 * M, 2 * H) == pytest.approx(400.0)


def test_window_mean_inside_one_slot_is_that_slot():
    """A window that stays within one slot has exactly that slot's value."""
    f = hourly([100, 400, 700])
    assert f.window_mean(T0 + H + 10 * M, 20 * M) == pytest.approx(400.0)


def test_window_mean_accepts_non_utc_start():
    """window_mean accepts aware starts in any time zone."""
    f = hourly([300, 100])
    start = datetime(2026, 6, 15, 8, 30, tzinfo=ZoneInfo("Europe/Berlin"))  # 06:30 UTC
    assert f.window_mean(start, H) == pytest.approx(200.0)


def test_window_mean_naive_start_raises_configuration_error():
    """A naive window start is refused."""
    with pytest.raises(ConfigurationError):
        hourly([300, 100]).window_mean(datetime(2026, 6, 15, 6), H)


def test_mean_between_clips_to_the_forecast_start():
    """A window starting before the forecast is averaged over the covered part only."""
    f = hourly([100, 500])
    s = (T0 - H).timestamp()
    assert f.mean_between(s, s + 2 * 3600) == pytest.approx(100.0)
    assert f.mean_between(s, s + 3 * 3600) == pytest.approx(300.0)


def test_mean_between_clips_to_the_forecast_end():
    """A window running past the forecast end is averaged over the covered part only."""
    f = hourly([100, 500])
    s = (T0 + H + 30 * M).timestamp()
    assert f.mean_between(s, s + 10 * 3600) == pytest.approx(500.0)
    s = (T0 + 30 * M).timestamp()
    assert f.mean_between(s, s + 10 * 3600) == pytest.approx((0.5 * 100 + 500) / 1.5)


def test_mean_between_outside_the_forecast_is_nan():
    """Windows that do not overlap the forecast, or run backwards, give NaN."""
    f = hourly([100, 500])
    before, after = (T0 - 3 * H).timestamp(), (T0 + 3 * H).timestamp()
    assert math.isnan(f.mean_between(before, before + 3600))
    assert math.isnan(f.mean_between(after, after + 3600))
    mid = (T0 + 30 * M).timestamp()
    assert math.isnan(f.mean_between(mid, mid - 60))


def test_mean_between_zero_width_inside_is_the_value_there():
    """A zero-length window inside the forecast gives the value that holds at that instant."""
    f = hourly([100, 500])
    t = (T0 + H).timestamp()
    assert f.mean_between(t, t) == 500.0


def test_covers_and_integral_to():
    """covers() is inclusive of both ends and integral_to() sums value x seconds."""
    f = hourly([100, 500])
    assert f.covers(T0.timestamp(), (T0 + 2 * H).timestamp())
    assert not f.covers((T0 - M).timestamp(), (T0 + H).timestamp())
    assert not f.covers(T0.timestamp(), (T0 + 2 * H + M).timestamp())
    assert f.integral_to((T0 + H + 30 * M).timestamp()) == pytest.approx(100 * 3600 + 500 * 1800)


def test_value_at_inside_boundaries_and_outside():
    """value_at returns the slot's value, switches exactly at a boundary, and is NaN outside [start, end)."""
    f = hourly([100, 500])
    assert f.value_at(T0) == 100.0
    assert f.value_at(T0 + 59 * M) == 100.0
    assert f.value_at(T0 + H) == 500.0
    assert f.value_at(T0 + 2 * H - M) == 500.0
    assert math.isnan(f.value_at(T0 - M))
    assert math.isnan(f.value_at(T0 + 2 * H))  # the end itself is not covered by any slot
    assert math.isnan(f.value_at(T0 + 3 * H))


def test_mixed_5min_30min_1h_resolution():
    """Uneven slots (5 min, 25 min, then 1 h) are weighted by their real lengths."""
    f = Forecast.from_points(
        [(T0, 600.0), (T0 + 5 * M, 300.0), (T0 + 30 * M, 120.0)], zone="GB", source="t", resolution=H
    )
    assert f.end == T0 + 90 * M
    assert f.window_mean(T0, 90 * M) == pytest.approx((600 * 5 + 300 * 25 + 120 * 60) / 90)
    assert f.window_mean(T0 + 2 * M, 30 * M) == pytest.approx((600 * 3 + 300 * 25 + 120 * 2) / 30)
    assert f.window_mean(T0 + 5 * M, 25 * M) == pytest.approx(300.0)
    assert f.value_at(T0 + 4 * M) == 600.0
    assert f.value_at(T0 + 29 * M) == 300.0


def test_forecast_is_immutable():
    """A Forecast is frozen, so a plan cannot change the data it was judged on."""
    f = hourly([1.0, 2.0])
    with pytest.raises(AttributeError):
        f.values = (3.0, 4.0)  # type: ignore[misc]


# -- common_signal --------------------------------------------------------------------------------


def test_common_signal_returns_the_shared_signal():
    """Forecasts that share a signal report it."""
    assert common_signal([hourly([1, 2]), hourly([3, 4], zone="FR")]) == "average"
    assert common_signal([hourly([1, 2], signal="marginal")]) == "marginal"


def test_common_signal_refuses_mixing_average_and_marginal():
    """Mixing average and marginal raises SignalMismatchError that lists each zone's signal."""
    forecasts = [hourly([1, 2], zone="DE"), hourly([3, 4], zone="FR", signal="marginal", source="wt")]
    with pytest.raises(SignalMismatchError, match="average with marginal") as info:
        common_signal(forecasts)
    message = str(info.value)
    assert "DE=average" in message and "FR=marginal (wt)" in message
    assert "same signal" in message
