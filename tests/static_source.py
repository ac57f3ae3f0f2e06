"""A source that serves fixed forecasts (no I/O, no cache), and a clock that jumps when slept on."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from carbon_sensors.errors import UnknownZoneError
from carbon_sensors.forecast import Forecast
from carbon_sensors.testing import FrozenClock


class StaticSource:
    """Serves ``forecasts[zone]`` whatever the time; ``refresh_interval`` None means the data never changes."""

    kind = "static"

    def __init__(self, forecasts: Mapping[str, Forecast], refresh_interval: timedelta | None = None) -> None:
        self.forecasts = dict(forecasts)
        self.signal = next(iter(self.forecasts.values())).signal
        self.refresh_interval = refresh_interval
        self.fetched_at: list[datetime] = []

    async def fetch(self, zone: str, start: datetime, end: datetime, *, now: datetime) -> Forecast:
        self.fetched_at.append(now)
        return self.forecasts[zone]

    def check_zone(self, zone: str) -> None:
        if zone not in self.forecasts:
            raise UnknownZoneError(f"no static forecast for zone {zone!r}")

    def to_spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "zones": sorted(self.forecasts)}


class JumpingClock(FrozenClock):
    """A FrozenClock whose time jumps to ``jumps[n]`` right after its n-th sleep (1-based), as a wall clock can."""

    def __init__(self, start: datetime, jumps: Mapping[int, datetime] | None = None) -> None:
        super().__init__(start)
        self.jumps = dict(jumps or {})
        self.jumped_at: list[tuple[datetime, datetime]] = []

    async def sleep(self, seconds: float) -> None:
        await super().sleep(seconds)
        target = self.jumps.pop(len(self.sleeps), None)
        if target is not None:
            self.jumped_at.append((self.now(), target))
            self.set(target)
