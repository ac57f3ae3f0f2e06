"""The tariff price source: flat and time-of-use prices, DST-correct, and bad bands refused when built."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from carbon_sensors import ConfigurationError, TariffPrices
from carbon_sensors.signals import price_source_from_spec

BERLIN = [("00:00", "07:00", 80.0), ("07:00", "23:00", 150.0), ("23:00", "24:00", 80.0)]


def berlin():
    return TariffPrices(currency="EUR", bands=BERLIN, tz="Europe/Berlin")


def fetch(source, start, hours, zone="DE"):
    return asyncio.run(source.fetch(zone, start, start + timedelta(hours=hours), now=start))


def test_flat_tariff_covers_the_window_with_one_price():
    """A flat tariff is one point from the start's hour to past the end, in the stated currency."""
    start = datetime(2026, 6, 15, 10, 20, tzinfo=UTC)
    prices = fetch(TariffPrices(flat=120.0, currency="USD"), start, 30)
    assert prices.values == (120.0,) and prices.currency == "USD" and prices.source == "tariff"
    assert prices.start <= start and prices.end >= start + timedelta(hours=30)
    assert prices.window_mean(start, timedelta(hours=30)) == 120.0


def test_bands_follow_local_time_in_summer_and_winter():
    """07:00 Berlin is 05:00 UTC in summer and 06:00 UTC in winter."""
    summer = fetch(berlin(), datetime(2026, 6, 15, 0, tzinfo=UTC), 24)
    assert summer.points()[:3] == [(datetime(2026, 6, 15, 0, tzinfo=UTC), 80.0),
                                   (datetime(2026, 6, 15, 5, tzinfo=UTC), 150.0),
                                   (datetime(2026, 6, 15, 21, tzinfo=UTC), 80.0)]
    winter = fetch(berlin(), datetime(2026, 1, 15, 0, tzinfo=UTC), 24)
    assert winter.points()[1:3] == [(datetime(2026, 1, 15, 6, tzinfo=UTC), 150.0),
                                    (datetime(2026, 1, 15, 22, tzinfo=UTC), 80.0)]


@pytest.mark.parametrize(("day", "night_hours"), [(29, 7), (25, 9)])  # 2026-03-29 forward, 2026-10-25 back
def test_the_night_band_is_shorter_or_longer_on_dst_days(day, night_hours):
    """On the day clocks change, 23:00-07:00 local lasts 7 h (spring) or 9 h (autumn) of real time."""
    month = 3 if day == 29 else 10
    start = datetime(2026, month, day - 1, 12, tzinfo=UTC)
    prices = fetch(berlin(), start, 36)
    points = prices.points()
    night = [(t, n) for (t, p), (n, _) in itertools.pairwise(points) if p == 80.0]
    assert [(n - t) for t, n in night] == [timedelta(hours=night_hours)]


def test_a_band_starting_in_the_skipped_hour_still_gives_a_consistent_series():
    """A band from 02:30 (a time that does not exist on the spring-forward day) leaves the series in order."""
    tariff = TariffPrices(currency="EUR", tz="Europe/Berlin",
                          bands=[("00:00", "02:30", 50.0), ("02:30", "03:00", 60.0), ("03:00", "24:00", 70.0)])
    prices = fetch(tariff, datetime(2026, 3, 28, 12, tzinfo=UTC), 24)
    assert all(a < b for a, b in zip(prices.starts_s, prices.starts_s[1:], strict=False))
    assert tariff.price_at(datetime(2026, 3, 29, 1, 15, tzinfo=UTC)) == 70.0  # 03:15 CEST


def test_negative_prices_are_allowed():
    """A band may have a negative price (a tariff passing on negative wholesale prices)."""
    tariff = TariffPrices(currency="EUR", bands=[("00:00", "12:00", -10.0), ("12:00", "24:00", 20.0)])
    assert tariff.price_at(datetime(2026, 1, 1, 3, tzinfo=UTC)) == -10.0


@pytest.mark.parametrize(("bands", "message"), [
    ([("00:00", "08:00", 80.0), ("07:00", "24:00", 150.0)], "overlap"),
    ([("00:00", "07:00", 80.0), ("08:00", "24:00", 150.0)], "07:00-08:00 uncovered"),
    ([("01:00", "24:00", 80.0)], "00:00-01:00 uncovered"),
    ([("00:00", "23:00", 80.0)], "23:00-24:00 uncovered"),
    ([("23:00", "07:00", 80.0)], "crosses midnight"),
    ([("00:00", "25:00", 80.0)], "HH:MM"),
    ([("00:00", "24:00", float("nan"))], "finite"),
    ([], "empty"),
    ([("00:00", "24:00")], "start, end, price"),
])
def test_bad_bands_are_refused_when_built(bands, message):
    """Overlapping, gapped, incomplete or malformed bands raise ConfigurationError saying what to fix."""
    with pytest.raises(ConfigurationError, match=message):
        TariffPrices(currency="EUR", bands=bands)


def test_other_bad_arguments_are_refused():
    """Both flat and bands, neither, an unknown zone or a bad currency are configuration errors."""
    with pytest.raises(ConfigurationError, match="not both"):
        TariffPrices(100.0, currency="EUR", bands=BERLIN)
    with pytest.raises(ConfigurationError, match="not both"):
        TariffPrices(currency="EUR")
    with pytest.raises(ConfigurationError, match="IANA"):
        TariffPrices(currency="EUR", bands=BERLIN, tz="Mars/Olympus")
    with pytest.raises(ConfigurationError, match="ISO 4217"):
        TariffPrices(100.0, currency="euro")
    with pytest.raises(ConfigurationError, match="per kWh"):
        TariffPrices(1e6, currency="EUR")


def test_spec_round_trip_and_interning():
    """The spec rebuilds an equal tariff; equal specs give the same object."""
    spec = berlin().to_spec()
    assert price_source_from_spec(spec) == berlin()
    assert price_source_from_spec(dict(spec)) is price_source_from_spec(dict(spec))
    with pytest.raises(ConfigurationError, match="currency"):
        price_source_from_spec({"kind": "tariff", "flat": 100.0})
    with pytest.raises(ConfigurationError, match="unknown price source kind 'nope'"):
        price_source_from_spec("nope")
