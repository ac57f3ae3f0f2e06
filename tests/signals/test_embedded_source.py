"""Tests for carbon_sensors.signals.embedded: the offline month x UTC-hour profile source."""

from __future__ import annotations

import asyncio
import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from carbon_sensors.errors import UnknownZoneError
from carbon_sensors.signals import EMBEDDED_SOURCE_NAME, EmbeddedProfileSource, Source, embedded_zones, run_sync

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
EXPECTED_ZONES = (
    "AU-NSW", "BR-CS", "CA-ON", "DE", "GB", "US-CAL-CISO", "US-MIDA-PJM", "US-NY-NYIS", "US-TEX-ERCO", "ZA",
)
H = timedelta(hours=1)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def month_hour_means(zone: str) -> list[list[float]]:
    """Mean ci_lifecycle intensity by month (0-11) and UTC hour, computed straight from the real CSV."""
    path = DATA / "carbon" / f"{zone}_2021-2023_hourly.csv"
    if not path.is_file():
        pytest.skip(f"real data file {path} is absent (expected the shared/data folder next to the repository)")
    sums = [[0.0] * 24 for _ in range(12)]
    counts = [[0] * 24 for _ in range(12)]
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            moment = datetime.strptime(row["datetime_utc"], "%Y-%m-%d %H:%M:%S")
            sums[moment.month - 1][moment.hour] += float(row["ci_lifecycle_gco2eq_per_kwh"])
            counts[moment.month - 1][moment.hour] += 1
    assert all(c > 0 for month in counts for c in month)
    return [[sums[m][h] / counts[m][h] for h in range(24)] for m in range(12)]


def test_embedded_zones_are_exactly_the_ten_zones():
    """embedded_zones() lists exactly the ten zones of the shared data set, sorted."""
    assert embedded_zones() == EXPECTED_ZONES


@pytest.mark.parametrize("zone", EXPECTED_ZONES)
def test_every_zone_yields_hourly_average_points(zone):
    """Each zone gives 24 hourly points for a day, tagged embedded-profile / average, with plausible values."""
    start = utc(2026, 6, 15)
    f = EmbeddedProfileSource().fetch_now(zone, start, start + 24 * H, now=start)
    assert (f.zone, f.source, f.signal) == (zone, EMBEDDED_SOURCE_NAME, "average")
    assert f.source == "embedded-profile"
    assert len(f.values) == 24
    assert [t for t, _ in f.points()] == [start + i * H for i in range(24)]
    assert f.end == start + 24 * H
    assert f.issued_at == start
    assert all(0 < v < 1500 for v in f.values)
    assert len(set(f.values)) > 1  # a real daily profile, not a constant


@pytest.mark.parametrize("zone", ["DE", "ZA"])
def test_profile_equals_month_hour_mean_of_real_data(zone):
    """The profile at every month and UTC hour equals that month/hour's mean over the real 2021-2023 CSV."""
    means = month_hour_means(zone)
    source = EmbeddedProfileSource()
    for month in range(1, 13):
        day = utc(2026, month, 10)
        f = source.fetch_now(zone, day, day + 24 * H, now=day)
        assert len(f.values) == 24
        for hour, value in enumerate(f.values):
            assert value == pytest.approx(means[month - 1][hour], abs=0.06), (zone, month, hour)


def test_profile_values_do_not_depend_on_the_year():
    """A profile is by month and hour only, so 2024 and 2030 give the same values."""
    source = EmbeddedProfileSource()
    a = source.fetch_now("GB", utc(2024, 2, 3), utc(2024, 2, 4), now=utc(2024, 2, 3))
    b = source.fetch_now("GB", utc(2030, 2, 3), utc(2030, 2, 4), now=utc(2030, 2, 3))
    assert a.values == b.values


def test_unknown_zone_raises_unknown_zone_error_listing_known_zones():
    """An unknown zone is an UnknownZoneError (a LookupError) listing every embedded zone."""
    source = EmbeddedProfileSource()
    with pytest.raises(UnknownZoneError, match="no zone 'FR'") as info:
        source.fetch_now("FR", utc(2026, 1, 1), utc(2026, 1, 2), now=utc(2026, 1, 1))
    assert ", ".join(EXPECTED_ZONES) in str(info.value)
    assert isinstance(info.value, LookupError)
    with pytest.raises(UnknownZoneError):
        source.check_zone("de")  # zone ids are case-sensitive
    source.check_zone("DE")


def test_window_across_a_month_boundary_uses_each_months_profile():
    """Hours on 31 January use January's profile and hours on 1 February use February's."""
    source = EmbeddedProfileSource()
    f = source.fetch_now("DE", utc(2026, 1, 31, 22), utc(2026, 2, 1, 2), now=utc(2026, 1, 31, 22))
    jan = source.fetch_now("DE", utc(2026, 1, 15), utc(2026, 1, 16), now=utc(2026, 1, 15)).values
    feb = source.fetch_now("DE", utc(2026, 2, 15), utc(2026, 2, 16), now=utc(2026, 2, 15)).values
    assert f.values == (jan[22], jan[23], feb[0], feb[1])
    assert (jan[22], jan[23]) != (feb[22], feb[23])  # the months really differ, so the test can tell them apart


def test_unaligned_window_is_widened_to_whole_hours():
    """A window from 10:30 to 12:15 gets the 10:00, 11:00 and 12:00 slots."""
    f = EmbeddedProfileSource().fetch_now("GB", utc(2026, 6, 15, 10, 30), utc(2026, 6, 15, 12, 15),
                                          now=utc(2026, 6, 15))
    assert f.start == utc(2026, 6, 15, 10) and f.end == utc(2026, 6, 15, 13)
    assert len(f.values) == 3


def test_empty_window_still_gives_one_hour():
    """A zero-length window gets the one hour that contains it."""
    f = EmbeddedProfileSource().fetch_now("GB", utc(2026, 6, 15, 10, 30), utc(2026, 6, 15, 10, 30),
                                          now=utc(2026, 6, 15))
    assert f.start == utc(2026, 6, 15, 10) and f.end == utc(2026, 6, 15, 11)


def test_async_fetch_and_run_sync_match_fetch_now():
    """fetch() (via asyncio.run and run_sync) returns the same forecast as fetch_now()."""
    source = EmbeddedProfileSource()
    args = ("US-CAL-CISO", utc(2026, 6, 15), utc(2026, 6, 16))
    direct = source.fetch_now(*args, now=args[1])
    assert asyncio.run(source.fetch(*args, now=args[1])) == direct
    assert run_sync(source.fetch(*args, now=args[1])) == direct


def test_embedded_source_identity_and_spec():
    """The embedded source is a Source with a static profile, equal to any other instance, spec {'kind': 'embedded'}."""
    source = EmbeddedProfileSource()
    assert isinstance(source, Source)
    assert source.refresh_interval is None and source.signal == "average"
    assert source.to_spec() == {"kind": "embedded"}
    assert source == EmbeddedProfileSource() and hash(source) == hash(EmbeddedProfileSource())
    assert repr(source) == "EmbeddedProfileSource()"


def test_the_static_zone_list_matches_the_profile_file():
    """EMBEDDED_ZONES (used to validate zones without reading the file) equals the file's zones."""
    from carbon_sensors.signals.embedded import EMBEDDED_ZONES, _profiles

    assert set(_profiles()["zones"]) == EMBEDDED_ZONES
