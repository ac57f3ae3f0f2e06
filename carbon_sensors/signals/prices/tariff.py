"""A user tariff: a flat price, or time-of-use bands in a stated local time zone. Offline, no key.

Bands are ``(start, end, price)`` with ``"HH:MM"`` local times (``"24:00"`` ends the day) and a
price per MWh in ``currency``. Together they must cover the whole day, without gaps or overlaps:
a tariff that does not is refused when it is built (at DAG parse time), saying what to fix. Band
boundaries follow the local clock through daylight-saving changes (via :mod:`zoneinfo`): on the day
clocks go forward the night band is an hour shorter in UTC, on the day they go back an hour longer.

>>> from datetime import datetime, timezone
>>> tariff = TariffPrices(currency="EUR", tz="Europe/Berlin",
...                       bands=[("00:00", "07:00", 80.0), ("07:00", "23:00", 150.0), ("23:00", "24:00", 80.0)])
>>> tariff.price_at(datetime(2026, 6, 15, 5, 30, tzinfo=timezone.utc))  # 07:30 in Berlin (summer time)
150.0
>>> tariff.price_at(datetime(2026, 1, 15, 5, 30, tzinfo=timezone.utc))  # 06:30 in Berlin (winter time)
80.0
>>> TariffPrices(flat=120.0, currency="USD").price_at(datetime(2026, 1, 1, tzinfo=timezone.utc))
120.0
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

from carbon_sensors.errors import ConfigurationError
from carbon_sensors.prices import MAX_PLAUSIBLE_PRICE_PER_MWH, PriceForecast, check_currency
from carbon_sensors.signals.prices.base import register_price_source_kind
from carbon_sensors.timeutil import as_utc

__all__ = ["TariffPrices"]

_CLOCK = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")
_DAY_MIN = 24 * 60


class TariffPrices:
    """Prices from a tariff you state: ``flat=`` one price, or ``bands=`` time-of-use bands in ``tz``.

    ``fetch`` returns a :class:`~carbon_sensors.prices.PriceForecast` covering ``[start, end]`` with
    a point at every band boundary (source ``"tariff"``, ``error_24h`` 0: a tariff is known).
    """

    kind = "tariff"
    refresh_interval: timedelta | None = None

    def __init__(
        self,
        flat: float | None = None,
        *,
        currency: str,
        bands: Iterable[Sequence[Any]] | None = None,
        tz: str = "UTC",
    ) -> None:
        self.currency = check_currency(currency)
        if (flat is None) == (bands is None):
            raise ConfigurationError(
                "give a tariff either flat= (one price per MWh) or bands= (time-of-use bands such as "
                "[('00:00', '07:00', 80.0), ('07:00', '24:00', 150.0)]), not both and not neither"
            )
        self.tz = _zone_name(tz)
        self.flat = None if flat is None else _price(flat, "flat")
        self.bands: tuple[tuple[str, str, float], ...] = () if bands is None else _check_bands(bands)
        self._minutes = tuple((_minutes(s), _minutes(e), p) for s, e, p in self.bands)

    # -- the tariff ------------------------------------------------------------------------------

    def price_at(self, moment: datetime) -> float:
        """The price per MWh in force at ``moment`` (an aware datetime)."""
        if self.flat is not None:
            return self.flat
        from zoneinfo import ZoneInfo

        local = as_utc(moment, "moment").astimezone(ZoneInfo(self.tz))
        minute = local.hour * 60 + local.minute
        for start, end, price in self._minutes:
            if start <= minute < end:
                return price
        raise AssertionError("bands cover the day")  # checked when built

    def check_zone(self, zone: str) -> None:
        if not isinstance(zone, str) or not zone:
            raise ConfigurationError(f"zone must be a non-empty name, got {zone!r}")

    async def fetch(self, zone: str, start: datetime, end: datetime, *, now: datetime) -> PriceForecast:
        return self.fetch_now(zone, start, end, now=now)

    def fetch_now(self, zone: str, start: datetime, end: datetime, *, now: datetime) -> PriceForecast:
        """The same as :meth:`fetch`, for sync callers."""
        self.check_zone(zone)
        start, end, now = as_utc(start, "start"), as_utc(end, "end"), as_utc(now, "now")
        first = start.replace(minute=0, second=0, microsecond=0)
        last = max(end, first + timedelta(hours=1))
        if self.flat is not None:
            hours = math.ceil((last - first).total_seconds() / 3600)
            return PriceForecast.from_points([(first, self.flat)], zone=zone, source=self.kind, currency=self.currency,
                                             issued_at=now, resolution=timedelta(hours=hours))
        points = self._boundaries(first, last)
        ends_at = next((t for t, _ in points if t >= last), None)
        points = [(t, p) for t, p in points if t < last]
        return PriceForecast.from_points(points, zone=zone, source=self.kind, currency=self.currency, issued_at=now,
                                         resolution=(ends_at or last) - points[-1][0])

    def _boundaries(self, first: datetime, last: datetime) -> list[tuple[datetime, float]]:
        """Every band start from ``first`` on, in UTC, with the band's price; adjacent equal prices merged."""
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(self.tz)
        day = first.astimezone(zone).date() - timedelta(days=1)
        stop = last.astimezone(zone).date() + timedelta(days=2)
        moments: list[tuple[float, float]] = []
        while day <= stop:
            for start_min, _, price in self._minutes:
                local = datetime.combine(day, time(start_min // 60, start_min % 60), tzinfo=zone)
                moments.append((local.astimezone(UTC).timestamp(), price))
            day += timedelta(days=1)
        # A band starting in the hour clocks skip lands on the next band's instant: the later band holds.
        merged: list[tuple[float, float]] = []
        for ts, price in moments:
            while merged and merged[-1][0] >= ts:
                merged.pop()
            if not merged or merged[-1][1] != price:
                merged.append((ts, price))
        cut = first.timestamp()
        held = max((i for i, (ts, _) in enumerate(merged) if ts <= cut), default=0)
        out = [(datetime.fromtimestamp(ts, UTC), p) for ts, p in merged[held:]]
        out[0] = (first, out[0][1])
        return out

    # -- spec ------------------------------------------------------------------------------------

    def to_spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "flat": self.flat, "bands": [list(b) for b in self.bands] or None,
                "currency": self.currency, "tz": self.tz}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> TariffPrices:
        if not spec.get("currency"):
            raise ConfigurationError("a tariff needs its currency: {'kind': 'tariff', 'flat': 120.0, 'currency': 'USD'}")
        return cls(spec.get("flat"), currency=spec["currency"], bands=spec.get("bands"), tz=spec.get("tz") or "UTC")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TariffPrices) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash((self.flat, self.bands, self.currency, self.tz))

    def __repr__(self) -> str:
        if self.flat is not None:
            return f"TariffPrices(flat={self.flat!r}, currency={self.currency!r})"
        return f"TariffPrices({len(self.bands)} bands in {self.tz}, currency={self.currency!r})"


# -- checks ----------------------------------------------------------------------------------------


def _zone_name(tz: Any) -> str:
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(tz)
    except (ValueError, KeyError, TypeError):
        raise ConfigurationError(f"unknown time zone {tz!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'") from None
    return tz


def _price(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or abs(value) > MAX_PLAUSIBLE_PRICE_PER_MWH:
        raise ConfigurationError(
            f"the {what} price must be a finite number per MWh within +/-{MAX_PLAUSIBLE_PRICE_PER_MWH:g}, got {value!r} "
            "(a price per kWh is 1,000 times smaller: 0.12/kWh is 120/MWh)"
        )
    return float(value)


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def _check_bands(bands: Iterable[Sequence[Any]]) -> tuple[tuple[str, str, float], ...]:
    checked = []
    for i, band in enumerate(bands):
        if isinstance(band, str | bytes) or not isinstance(band, Sequence) or len(band) != 3:
            raise ConfigurationError(f"tariff band {i} must be (start, end, price) such as ('07:00', '23:00', 150.0), "
                                     f"got {band!r}")
        start, end, price = band
        for clock in (start, end):
            if not isinstance(clock, str) or not _CLOCK.match(clock) or _minutes(clock) > _DAY_MIN:
                raise ConfigurationError(f"tariff band {i}: {clock!r} is not a local time 'HH:MM' from '00:00' to '24:00'")
        if not _minutes(start) < _minutes(end):
            raise ConfigurationError(
                f"tariff band {i} ({start}-{end}) does not end after it starts; split a band that crosses midnight "
                f"in two, e.g. ({start!r}, '24:00', ...) and ('00:00', {end!r}, ...)"
            )
        checked.append((start, end, _price(price, f"band {start}-{end}")))
    if not checked:
        raise ConfigurationError("a tariff's bands are empty; give bands that cover the day from '00:00' to '24:00'")
    ordered = sorted(checked, key=lambda b: _minutes(b[0]))
    if _minutes(ordered[0][0]) != 0:
        raise ConfigurationError(f"the tariff's bands leave 00:00-{ordered[0][0]} uncovered; add a band for it")
    for before, after in itertools.pairwise(ordered):
        if _minutes(after[0]) < _minutes(before[1]):
            raise ConfigurationError(
                f"tariff bands {before[0]}-{before[1]} and {after[0]}-{after[1]} overlap; make one end where the next starts"
            )
        if _minutes(after[0]) > _minutes(before[1]):
            raise ConfigurationError(f"the tariff's bands leave {before[1]}-{after[0]} uncovered; add a band for it")
    if _minutes(ordered[-1][1]) != _DAY_MIN:
        raise ConfigurationError(f"the tariff's bands leave {ordered[-1][1]}-24:00 uncovered; add a band for it")
    return tuple(ordered)


def _tariff_source(spec: dict[str, Any]) -> TariffPrices:
    return TariffPrices.from_spec(spec)


register_price_source_kind(TariffPrices.kind, _tariff_source)

