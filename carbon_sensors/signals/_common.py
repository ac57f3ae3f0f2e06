"""Small checks and conversions the live sources share (private)."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from carbon_sensors.errors import ConfigurationError, SourceDataError, SourceError
from carbon_sensors.forecast import Forecast
from carbon_sensors.timeutil import as_utc


def coordinate(value: Any, name: str, limit: float) -> float:
    """A latitude or longitude, as a finite number within +/- ``limit``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or abs(value) > limit:
        raise ConfigurationError(f"{name} must be a number from -{limit:g} to {limit:g}, got {value!r}")
    return float(value)


def number_text(value: float | None) -> str:
    """A coordinate as query text: digits, a dot and a sign only."""
    return repr(float(value))


def check_base_url(url: Any) -> str:
    """An http(s) base URL without query or fragment, so nothing can be smuggled into requests."""
    if not isinstance(url, str) or not url.startswith(("https://", "http://")) or any(c in url for c in "?# \t\r\n"):
        raise ConfigurationError(f"base_url must be an http(s) URL without query or fragment, got {url!r}")
    return url.rstrip("/")


def scrubbed(exc: SourceError, secrets: tuple[str | None, ...]) -> SourceError:
    """``exc`` with any secret (e.g. echoed back by a server in an error body) replaced by ``***``."""
    text = str(exc)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return exc if text == str(exc) else type(exc)(text)


def relabel(forecast: Forecast, zone: str) -> Forecast:
    """The same forecast under the caller's zone label."""
    return forecast if forecast.zone == zone else replace(forecast, zone=zone)


#: Timestamps outside these years are misdated data (and would overflow slot arithmetic near datetime's limits).
FIRST_YEAR, LAST_YEAR = 1900, 2999


def parse_time(value: Any, what: str, where: str) -> datetime:
    """An ISO-8601 timestamp from a response (naive means UTC), or SourceDataError."""
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise SourceDataError(f"{where}: {what} has a bad timestamp {str(value)[:40]!r}") from None
    return utc_moment(moment, what, where)


def utc_moment(moment: datetime, what: str, where: str) -> datetime:
    """A parsed timestamp in UTC (naive means UTC); one outside FIRST_YEAR..LAST_YEAR raises SourceDataError."""
    try:
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else as_utc(moment)
    except (OverflowError, ValueError):  # beyond the calendar once moved to UTC (year 0 or 10000)
        moment = None
    if moment is None or not FIRST_YEAR <= moment.year <= LAST_YEAR:
        raise SourceDataError(f"{where}: {what} is misdated (outside the years {FIRST_YEAR}-{LAST_YEAR})")
    return moment


def to_float(value: int | float, what: str, where: str) -> float:
    """A JSON number as a float; an integer too large for a float raises SourceDataError."""
    try:
        return float(value)
    except OverflowError:
        raise SourceDataError(f"{where}: {what} is a number too large to be an intensity") from None


#: How long a zone's measured history serves before it is asked again: it only grows by the last hour.
MEASURED_REFRESH = timedelta(hours=1)


def measured_window(start: datetime, end: datetime, now: datetime) -> tuple[datetime, datetime]:
    """``[start, end]`` moved to end at the last whole hour at or before ``end`` and ``now``, same length.

    Every gate of a zone then asks its source the same question within an hour, so one cached
    request serves them all.

    >>> t = datetime(2026, 6, 15, 10, 40, tzinfo=UTC)
    >>> [w.isoformat() for w in measured_window(t - timedelta(days=1), t, t)]
    ['2026-06-14T10:00:00+00:00', '2026-06-15T10:00:00+00:00']
    """
    end = as_utc(end, "end")
    until = datetime.fromtimestamp(min(end, as_utc(now, "now")).timestamp() // 3600 * 3600, UTC)
    return until - timedelta(seconds=round((end - as_utc(start, "start")).total_seconds())), until
