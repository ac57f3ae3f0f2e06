"""The piecewise-constant time model that ``Forecast`` (intensity) and ``PriceForecast`` (price) share.

Each point holds from its start until the next point starts; the last point holds until ``end_s``.
The two series stay types of their own (a price is never an intensity); only the time arithmetic
lives here, once.

>>> class Series(StepSeries):
...     def __init__(self, starts_s, values, end_s):
...         self.starts_s, self.values, self.end_s = starts_s, values, end_s
...         self._cumulative = check_steps("series", starts_s, values, end_s)
>>> s = Series((0.0, 3600.0), (300.0, 100.0), 7200.0)
>>> s.integral_to(5400.0) / 5400.0, s.covers(0.0, 7200.0)
(233.33333333333334, True)
"""

from __future__ import annotations

import operator
from bisect import bisect_right
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import accumulate, pairwise

from carbon_sensors.errors import ConfigurationError, InvalidForecastError

__all__ = ["StepSeries", "check_steps", "iso", "last_step"]


class StepSeries:
    """Time arithmetic over ``starts_s``, ``values``, ``end_s`` and ``_cumulative`` (set by the subclass)."""

    __slots__ = ()
    starts_s: tuple[float, ...]
    values: tuple[float, ...]
    end_s: float
    _cumulative: tuple[float, ...]

    @property
    def start(self) -> datetime:
        """When the first point starts (UTC)."""
        return datetime.fromtimestamp(self.starts_s[0], UTC)

    @property
    def end(self) -> datetime:
        """When the last point stops holding (UTC)."""
        return datetime.fromtimestamp(self.end_s, UTC)

    def points(self) -> list[tuple[datetime, float]]:
        """The points as ``(UTC datetime, value)`` pairs."""
        return [(datetime.fromtimestamp(s, UTC), v) for s, v in zip(self.starts_s, self.values, strict=True)]

    def covers(self, start_s: float, end_s: float) -> bool:
        """Whether the interval ``[start_s, end_s]`` (epoch seconds) lies inside the series."""
        return self.starts_s[0] <= start_s and end_s <= self.end_s

    def integral_to(self, t_s: float) -> float:
        """The integral of the value from the first point to ``t_s`` (value x s); ``t_s`` must be covered."""
        i = bisect_right(self.starts_s, t_s) - 1
        return self._cumulative[i] + self.values[i] * (t_s - self.starts_s[i])


def check_steps(where: str, starts: Sequence[float], values: Sequence[float], end_s: float) -> tuple[float, ...]:
    """Refuse points that are empty, unpaired, out of order or that end too soon; return the running integral.

    The checks run in C first (series are built on every re-plan) and walk the points in Python only
    to name the one that is wrong. The result is the integral up to each point's start, left to right.
    """
    if not starts:
        raise InvalidForecastError(f"{where} has no points; check the source's time range and zone")
    if len(starts) != len(values):
        raise InvalidForecastError(f"{where} has {len(starts)} times but {len(values)} values")
    if not all(map(operator.lt, starts, starts[1:])):
        for earlier, later in pairwise(starts):
            if not later > earlier:
                raise InvalidForecastError(
                    f"{where} is not strictly increasing in time at {iso(later)}; "
                    "sort the points and drop duplicate timestamps"
                )
    if not end_s > starts[-1]:
        raise InvalidForecastError(f"{where} ends at {iso(end_s)}, not after its last point")
    steps = map(operator.mul, values, map(operator.sub, starts[1:], starts))
    return tuple(accumulate(steps, initial=0.0))


def last_step(where: str, starts: Sequence[float], resolution: timedelta | None) -> float:
    """How long the last point holds (seconds): ``resolution``, or by default the step before it."""
    if resolution is not None:
        step = resolution.total_seconds()
        if step <= 0:
            raise ConfigurationError(f"resolution must be positive, got {resolution}")
        return step
    if len(starts) >= 2:
        return starts[-1] - starts[-2]
    raise InvalidForecastError(f"{where} has a single point; pass resolution= to say how long it holds")


def iso(epoch_s: float) -> str:
    """An epoch second as an ISO 8601 UTC string, for messages."""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()
