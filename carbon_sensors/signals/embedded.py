"""The embedded default: typical hour-of-day by month intensity per zone, offline, no key.

A profile is not a forecast: it says what a zone's grid usually looks like at that hour of that
month (Electricity Maps data 2021-2023, ODbL; see embedded_profiles.json). Its forecasts carry
``source="embedded-profile"`` so no record mistakes it for a live forecast.

>>> from datetime import datetime, timezone
>>> from carbon_sensors.signals import run_sync
>>> t = datetime(2026, 6, 15, 10, tzinfo=timezone.utc)
>>> f = run_sync(EmbeddedProfileSource().fetch("DE", t, t.replace(hour=12), now=t))
>>> f.source, f.signal, len(f.values)
('embedded-profile', 'average', 2)
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from carbon_sensors.errors import UnknownZoneError
from carbon_sensors.forecast import Forecast
from carbon_sensors.signals.registry import register_source_kind
from carbon_sensors.timeutil import as_utc

__all__ = ["EMBEDDED_SOURCE_NAME", "EmbeddedProfileSource", "embedded_zones"]

EMBEDDED_SOURCE_NAME = "embedded-profile"
_HOUR = 3600


#: The zones in embedded_profiles.json (a test keeps them equal), so validating a zone when a DAG
#: is parsed does not read the profile file.
EMBEDDED_ZONES = frozenset(
    {"AU-NSW", "BR-CS", "CA-ON", "DE", "GB", "US-CAL-CISO", "US-MIDA-PJM", "US-NY-NYIS", "US-TEX-ERCO", "ZA"}
)


@lru_cache(maxsize=1)
def _profiles() -> dict[str, Any]:
    from importlib import resources

    text = resources.files("carbon_sensors.signals").joinpath("embedded_profiles.json").read_text()
    return json.loads(text)


def embedded_zones() -> tuple[str, ...]:
    """The zones the embedded profile covers."""
    return tuple(sorted(EMBEDDED_ZONES))


class EmbeddedProfileSource:
    """Typical hourly intensity by month and UTC hour for the zones in :func:`embedded_zones`."""

    kind = "embedded"
    signal = "average"
    refresh_interval: timedelta | None = None

    def check_zone(self, zone: str) -> None:
        if zone not in EMBEDDED_ZONES:
            raise UnknownZoneError(
                f"the embedded profile has no zone {zone!r}{_did_you_mean(zone)}; it knows "
                f"{', '.join(embedded_zones())}. "
                "Use one of those (Electricity Maps zone ids), or a file or live source for other zones"
            )

    async def fetch(self, zone: str, start: datetime, end: datetime, *, now: datetime) -> Forecast:
        return self.fetch_now(zone, start, end, now=now)

    def fetch_now(self, zone: str, start: datetime, end: datetime, *, now: datetime) -> Forecast:
        """The same as :meth:`fetch`, for sync callers (it never does I/O after the first load)."""
        self.check_zone(zone)
        table = _profiles()["zones"][zone]
        first = int(as_utc(start, "start").timestamp()) // _HOUR * _HOUR
        last = max(first + _HOUR, -(-int(as_utc(end, "end").timestamp()) // _HOUR) * _HOUR)
        starts = tuple(float(s) for s in range(first, last, _HOUR))
        values = []
        for s in starts:
            moment = datetime.fromtimestamp(s, UTC)
            values.append(float(table[moment.month - 1][moment.hour]))
        return Forecast(
            zone=zone, source=EMBEDDED_SOURCE_NAME, signal="average", issued_at=as_utc(now, "now"),
            starts_s=starts, values=tuple(values), end_s=float(last),
        )

    def to_spec(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EmbeddedProfileSource)

    def __hash__(self) -> int:
        return hash(self.kind)

    def __repr__(self) -> str:
        return "EmbeddedProfileSource()"


def _did_you_mean(zone: object) -> str:
    """`` (did you mean 'DE'?)`` for a zone that differs from a known one in case or by a typo."""
    import difflib

    if not isinstance(zone, str):
        return ""
    known = embedded_zones()
    by_case = [z for z in known if z.lower() == zone.strip().lower()]
    close = by_case or difflib.get_close_matches(zone.upper(), known, n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


register_source_kind(EmbeddedProfileSource.kind, lambda spec: EmbeddedProfileSource())
