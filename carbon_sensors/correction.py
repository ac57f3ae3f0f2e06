"""Correct a forecast by the error its source is making right now.

Forecast errors persist: a forecast that ran 5 % high for this hour is likely to run high for the
next few hours too. While a gate waits it sees successive forecasts, so it can measure the latest
error. That is what the previous forecast said about the current slot, against what is now known
about it (the current forecast's first slot, a measurement or a nowcast). The nearby hours of the
new forecast are then corrected by that error, decaying with ``persistence`` per hour and growing
with the square root of the horizon, as the forecast's ``error_24h`` says errors do.

Nothing is corrected where the forecast declares no error (``error_24h == 0``, e.g. measurements
or the embedded profile) or where there is no earlier forecast to compare with.

>>> from datetime import datetime, timedelta, timezone
>>> t0 = datetime(2026, 6, 15, tzinfo=timezone.utc)
>>> hourly = lambda start, values: Forecast.from_points(
...     [(start + timedelta(hours=i), v) for i, v in enumerate(values)], zone="GB", source="x", error_24h=0.1)
>>> before = hourly(t0, [200, 210, 220, 230])            # said 210 for 01:00
>>> now = hourly(t0 + timedelta(hours=1), [200, 220, 230])  # 01:00 turned out 200: 5 % too high
>>> [round(v) for v in correct_forecast(now, before).values]
[200, 211, 218]
"""

from __future__ import annotations

import math
import operator
from dataclasses import replace
from functools import lru_cache
from itertools import repeat

from carbon_sensors.forecast import MAX_PLAUSIBLE_G_PER_KWH, Forecast

__all__ = ["DEFAULT_PERSISTENCE", "ForecastMemory", "correct_forecast"]

#: Hour-to-hour correlation of forecast errors (grid forecasts err in spells, not hour by hour).
DEFAULT_PERSISTENCE = 0.9
_MAX_Z = 4.0  # an error estimate beyond 4 sigma is a data glitch, not information


_memo: dict[tuple[int, int, float], tuple[Forecast, Forecast | None, Forecast]] = {}


def correct_forecast(
    current: Forecast, previous: Forecast | None = None, persistence: float = DEFAULT_PERSISTENCE
) -> Forecast:
    """``current`` with its future points corrected by the error its source is making on the current slot.

    The error comes from ``previous`` (what an earlier forecast said about the current slot) or,
    without one, from ``current.recent_error`` where the source reports it. Results are memoised
    per forecast object: thousands of gates waiting on one zone share one correction.
    """
    key = (id(current), id(previous), persistence)
    hit = _memo.get(key)
    if hit is not None and hit[0] is current and hit[1] is previous:
        return hit[2]
    result = _correct(current, previous, persistence)
    if len(_memo) >= 256:
        _memo.clear()
    _memo[key] = (current, previous, result)
    return result


def _correct(current: Forecast, previous: Forecast | None, persistence: float) -> Forecast:
    sigma24 = current.error_24h
    now_s = current.starts_s[0]
    if not sigma24 or not current.values[0] > 0:
        return current
    if previous is not None and previous.zone == current.zone and previous.covers(now_s, now_s):
        lead_h = (now_s - previous.issued_at.timestamp()) / 3600.0
        error = previous.value_at(current.start) / current.values[0] - 1.0
    elif current.recent_error is not None:
        lead_h, error = current.recent_error_lead_h, current.recent_error
    else:
        return current
    if lead_h <= 0:
        return current
    z = max(-_MAX_Z, min(_MAX_Z, error / (sigma24 * math.sqrt(lead_h / 24.0))))
    offsets_s = tuple(map(operator.sub, current.starts_s[1:], repeat(now_s)))
    shape, peak = _error_shape(sigma24, persistence, offsets_s)
    later = current.values[1:]
    values = None
    if peak * abs(z) <= 0.8 and later and min(later) > 0.0:
        # Every divisor is at least 0.2 and every value positive: only the upper bound can bite.
        values = [value / (1.0 + coefficient * z) for value, coefficient in zip(later, shape, strict=True)]
        if max(values) > MAX_PLAUSIBLE_G_PER_KWH:
            values = None
    if values is None:
        values = [
            min(MAX_PLAUSIBLE_G_PER_KWH, max(0.0, value / max(0.2, 1.0 + coefficient * z)))
            for value, coefficient in zip(later, shape, strict=True)
        ]
    return replace(current, values=(current.values[0], *values))


@lru_cache(maxsize=64)
def _error_shape(sigma24: float, persistence: float, offsets_s: tuple[float, ...]) -> tuple[tuple[float, ...], float]:
    """The expected relative error per unit of current error at each offset ahead of now, and its peak.

    Cached: every refresh of a zone has the same offsets, and thousands of gates share them.
    """
    shape = tuple(
        sigma24 * math.sqrt(ahead_h / 24.0) * persistence**ahead_h for ahead_h in (o / 3600.0 for o in offsets_s)
    )
    return shape, max(shape, default=0.0)


class ForecastMemory:
    """Remembers each zone's last forecast during one wait, to correct the next one by it.

    A remembered forecast is only used while it is at most ``max_age`` older than the new one.
    Forecasts that report their own ``recent_error`` need no memory and are not kept.
    """

    __slots__ = ("_last", "max_age_s", "persistence")

    def __init__(self, persistence: float = DEFAULT_PERSISTENCE, max_age_h: float = 6.0) -> None:
        if not 0.0 <= persistence < 1.0:
            raise ValueError("persistence must be in [0, 1)")
        self.persistence, self.max_age_s = persistence, max_age_h * 3600.0
        self._last: dict[str, Forecast] | None = None

    def correct(self, forecast: Forecast) -> Forecast:
        if forecast.recent_error is not None or not forecast.error_24h:
            return correct_forecast(forecast, None, self.persistence)
        if self._last is None:
            self._last = {}
        previous = self._last.get(forecast.zone)
        self._last[forecast.zone] = forecast
        age = None if previous is None else (forecast.issued_at - previous.issued_at).total_seconds()
        if age is None or not 0 < age <= self.max_age_s:
            previous = None
        return correct_forecast(forecast, previous, self.persistence)
