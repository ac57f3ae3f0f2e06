"""PriceForecast: the same time model as carbon forecasts, its own type, negative prices kept."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from carbon_sensors.errors import ConfigurationError, InvalidForecastError
from carbon_sensors.prices import PriceForecast

T0 = datetime(2023, 5, 14, 10, tzinfo=UTC)
HOUR = timedelta(hours=1)


def prices(values, currency="EUR"):
    return PriceForecast.from_points([(T0 + i * HOUR, v) for i, v in enumerate(values)], zone="DE", source="test",
                                     currency=currency, resolution=HOUR)


def test_window_means_weigh_time_and_keep_negative_prices():
    p = prices([90.0, -30.0, 10.0])
    assert p.window_mean(T0, 2 * HOUR) == pytest.approx(30.0)
    assert p.window_mean(T0 + HOUR, HOUR) == pytest.approx(-30.0)
    assert p.window_mean(T0 + timedelta(minutes=30), HOUR) == pytest.approx(30.0)
    assert p.energy_cost(T0 + HOUR, HOUR, energy_kwh=500.0) == pytest.approx(-15.0)
    assert p.unit == "EUR/MWh" and p.end == T0 + 3 * HOUR


def test_a_window_past_the_end_is_nan_not_a_guess():
    assert math.isnan(prices([1.0, 2.0]).window_mean(T0 + HOUR, 2 * HOUR))


@pytest.mark.parametrize("bad", ["usd", "US$", "", None, "EURO"])
def test_the_currency_is_an_iso_code(bad):
    with pytest.raises(ConfigurationError, match="ISO 4217"):
        prices([1.0, 2.0], currency=bad)


def test_nan_prices_are_named_with_their_hour():
    with pytest.raises(InvalidForecastError, match=r"2023-05-14T11:00:00.*fill or drop missing hours"):
        prices([1.0, math.nan, 3.0])


def test_a_price_in_cents_or_per_kwh_read_as_per_mwh_is_caught():
    with pytest.raises(InvalidForecastError, match="check the unit"):
        prices([45_000.0, 1.0])


def test_duplicate_hours_are_refused():
    with pytest.raises(InvalidForecastError, match="strictly increasing"):
        PriceForecast.from_points([(T0, 1.0), (T0, 2.0)], zone="DE", source="t", currency="EUR", resolution=HOUR)
