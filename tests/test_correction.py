"""Correcting a forecast by the error its source is making now."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from carbon_sensors import Forecast
from carbon_sensors.correction import ForecastMemory, correct_forecast

T0 = datetime(2026, 6, 15, tzinfo=UTC)


def hourly(start, values, error_24h=0.1, **kwargs):
    return Forecast.from_points([(start + timedelta(hours=i), v) for i, v in enumerate(values)],
                                zone="GB", source="x", issued_at=start, error_24h=error_24h, **kwargs)


def test_a_forecast_that_ran_high_is_corrected_down_decaying_with_the_horizon():
    """A 5 % over-forecast of the current hour lowers the next hours, less and less the further out."""
    before = hourly(T0, [200, 210, 220, 230, 240, 250, 260])
    now = hourly(T0 + timedelta(hours=1), [200, 220, 230, 240, 250, 260])
    corrected = correct_forecast(now, before)
    assert corrected.values[0] == 200
    ratios = [c / v for c, v in zip(corrected.values[1:], now.values[1:], strict=True)]
    assert all(r < 1 for r in ratios)
    z = 0.05 / (0.1 * math.sqrt(1 / 24))
    assert ratios[0] == pytest.approx(1 / (1 + 0.1 * math.sqrt(1 / 24) * 0.9 * z))
    assert 1 - ratios[-1] < 1 - ratios[0] + 0.02  # the persistence decays the correction


def test_a_forecast_that_ran_low_is_corrected_up():
    """An under-forecast raises the next hours."""
    before = hourly(T0, [200, 190, 200, 200])
    now = hourly(T0 + timedelta(hours=1), [200, 200, 200])
    assert correct_forecast(now, before).values[1] > 200


def test_the_source_can_report_its_own_recent_error():
    """Without an earlier forecast, recent_error (as an API with forecast and actual reports it) is used."""
    now = hourly(T0, [200, 220, 230], recent_error=0.05, recent_error_lead_h=1.0)
    before = hourly(T0 - timedelta(hours=1), [999, 210, 220, 230])
    assert correct_forecast(now).values == pytest.approx(correct_forecast(now, before).values)


def test_nothing_changes_without_a_declared_error_or_a_comparison():
    """Measurements, the embedded profile (error_24h = 0) and a first forecast are left alone."""
    plain = hourly(T0, [200, 220, 230], error_24h=0.0, recent_error=0.3)
    assert correct_forecast(plain) is plain
    first = hourly(T0, [200, 220, 230])
    assert correct_forecast(first) is first


def test_a_glitch_cannot_swing_the_forecast_wildly():
    """An absurd recent error is capped at 4 sigma, so values stay plausible."""
    now = hourly(T0, [200, 220, 230], recent_error=5.0)
    corrected = correct_forecast(now)
    assert corrected.values[1] > 0.5 * 220


def test_memory_corrects_with_a_recent_earlier_forecast_only():
    """ForecastMemory uses the forecast seen earlier in the wait, but not one too old or from the future."""
    memory = ForecastMemory(max_age_h=6)
    first = hourly(T0, [200, 210, 220, 230])
    assert memory.correct(first) is first
    second = hourly(T0 + timedelta(hours=1), [200, 220, 230])
    assert memory.correct(second).values[1] < 220
    stale = hourly(T0 + timedelta(hours=12), [200, 220, 230])
    assert memory.correct(stale) is stale
    rewound = hourly(T0, [200, 210, 220, 230])  # a clock jump back: no comparison
    assert memory.correct(rewound) is rewound


@pytest.mark.parametrize(
    ("error_24h", "recent_error", "values"),
    [
        (0.1, 0.05, [200, 220, 230, 240, 250]),  # the usual case
        (0.1, -0.05, [200, 0, 230, 0, 250]),  # zeros stay zeros
        (3.0, -0.9, [200, 1500, 1900, 1800, 1700, 1600]),  # divisor floor and the 2000 g/kWh cap bite
    ],
    ids=["plain", "zeros", "clamped"],
)
def test_corrected_values_follow_the_documented_formula(error_24h, recent_error, values):
    """value / max(0.2, 1 + error_24h * sqrt(h/24) * persistence^h * z), kept within 0..2000 g/kWh."""
    from carbon_sensors.forecast import MAX_PLAUSIBLE_G_PER_KWH

    now = hourly(T0, values, error_24h=error_24h, recent_error=recent_error, recent_error_lead_h=1.0)
    z = max(-4.0, min(4.0, recent_error / (error_24h * math.sqrt(1 / 24))))
    expected = [values[0]] + [
        min(MAX_PLAUSIBLE_G_PER_KWH, max(0.0, v / max(0.2, 1 + error_24h * math.sqrt(h / 24) * 0.9**h * z)))
        for h, v in enumerate(values[1:], start=1)
    ]
    assert list(correct_forecast(now).values) == pytest.approx(expected, rel=1e-12)
    if error_24h == 3.0:
        assert max(correct_forecast(now).values) == MAX_PLAUSIBLE_G_PER_KWH
