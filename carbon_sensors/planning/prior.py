"""The recent past as a second opinion: a forecast blended with persistence, weighted by how wrong each is.

A forecast's far hours are its noisiest, and the lowest of many noisy hours is more often noise
than a dip: a planner that trusts them waits for dips that are not there. What a gate knows besides
the forecast is what the grid measured in the last days. Each forecast hour ``T`` (``h`` hours
ahead) is blended with a persistence prior, the mean of the same hour on the seven days from
``L`` days before it (``L`` = 1-3, the smallest lag already measured), each weighted by the
inverse of its variance::

    prior_L(T) = mean(measured(T - d days) for d in L .. L + 6)
    blended(T) = w * forecast(T) + (1 - w) * prior_L(T),   w = v_prior / (v_prior + lam * v_forecast(h))

- ``v_forecast(h) = error_24h^2 * h / 24``: the source's own stated error, growing with the lead
  (the martingale model); a forecast that states no error (``error_24h`` 0) is left as it is;
- ``v_prior``: the mean squared relative error that prior made at that lag over the measured
  history (at least ``MIN_PAIRS_H`` hourly samples, else that lag is not used);
- ``lam`` (:data:`FORECAST_VARIANCE_SCALE`): chosen on three zones and two years, checked on the
  other zones and year with ``bench/history_prior.py`` (docs/backtests.md).

Hours already measured, the current hour and hours with no usable lag keep the forecast's value.

>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2026, 6, 1, tzinfo=UTC)
>>> hours = [t0 + timedelta(hours=k) for k in range(14 * 24)]
>>> measured = Forecast.from_points([(t, 200.0 + 50 * (t.hour < 6)) for t in hours], zone="DE", source="m",
...                                 measured_until=hours[-1] + timedelta(hours=1))
>>> now = hours[-1] + timedelta(hours=1)
>>> fc = Forecast.from_points([(now + timedelta(hours=k), 100.0) for k in range(30)], zone="DE", source="f",
...                           issued_at=now, error_24h=0.1)
>>> blended = blend_with_persistence(fc, measured, now=now)
>>> blended.values[0], blended.values[20] > 100.0, blended.source
(100.0, True, 'f + persistence')
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from carbon_sensors.errors import ConfigurationError, ForecastCoverageError
from carbon_sensors.forecast import Forecast
from carbon_sensors.timeutil import as_utc

__all__ = ["FORECAST_VARIANCE_SCALE", "HISTORY", "MIN_PAIRS_H", "PRIOR_MARK", "PersistenceIndex",
           "blend_with_persistence", "persistence_errors"]

HOUR = 3600.0
DAY = 86400.0
LAGS_DAYS = (1, 2, 3)
#: The prior is the mean of the same hour over this many days.
PRIOR_DAYS = 7
#: How much measured history a gate asks its source for: four weeks, so each lag's error is measured
#: over 18-20 days (two weeks gave zones' errors noisy enough to cost some of them a point).
HISTORY = timedelta(days=28)
#: The fewest hourly samples a lag's error is estimated on (three days).
MIN_PAIRS_H = 72
#: ``lam``: the forecast's stated variance is scaled by this (0 would be the plain forecast).
FORECAST_VARIANCE_SCALE = 1.0
#: Added to a blended forecast's ``source``, so records say what was planned on.
PRIOR_MARK = " + persistence"


@dataclass(frozen=True, slots=True)
class _History:
    """A measured history as hourly samples from ``first``, their seven-day sums and each lag's error."""

    first: float
    sums: list[float]
    errors: dict[int, float]


#: Histories analysed ahead by a PersistenceIndex (backtests), looked up before analysing one.
_KNOWN: dict[Forecast, _History] = {}


def _history(measured: Forecast) -> _History:
    known = _KNOWN.get(measured)
    return known if known is not None else _analysed(measured)


@lru_cache(maxsize=256)
def _analysed(measured: Forecast) -> _History:
    """Cached: every gate of a zone asks with the same history until it is refreshed."""
    xs = _hourly(measured)
    sums = _seven_day_sums(xs)
    squared = _squared_errors(xs, sums)
    errors: dict[int, float] = {}
    for lag in LAGS_DAYS:
        samples = [e for e in squared[lag] if e is not None]
        if len(samples) >= MIN_PAIRS_H:
            errors[lag] = max(sum(samples) / len(samples), 1e-6)
    return _History(measured.starts_s[0], sums, errors)


def _squared_errors(xs: list[float], sums: list[float]) -> dict[int, list[float | None]]:
    """Per lag, at each hourly sample, the prior's squared relative error (None where it has none)."""
    out: dict[int, list[float | None]] = {}
    for lag in LAGS_DAYS:
        back, column = 24 * lag, [None] * len(xs)
        for i in range(back + 24 * (PRIOR_DAYS - 1), len(xs)):
            actual, summed = xs[i], sums[i - back]
            if actual > 0 and math.isfinite(summed):  # NaN (a gap) fails both
                column[i] = (1.0 - summed / PRIOR_DAYS / actual) ** 2
        out[lag] = column
    return out


class PersistenceIndex:
    """A long hourly measured series analysed once, so the prior over any window of it costs O(1).

    For backtests, which ask for a new history every simulated hour: :meth:`window` returns the
    measured Forecast of ``[start_s, until_s)`` and remembers its analysis, the same as analysing
    that window alone would give.

    >>> from datetime import UTC, datetime, timedelta
    >>> t0 = datetime(2026, 6, 1, tzinfo=UTC)
    >>> trace = Forecast.from_points([(t0 + timedelta(hours=k), 200.0 + k % 24) for k in range(60 * 24)],
    ...                              zone="DE", source="trace")
    >>> index = PersistenceIndex(trace)
    >>> window = index.window(trace.starts_s[0] + 86400, trace.starts_s[0] + 40 * 86400)
    >>> _history(window) == _analysed(window)
    True
    """

    def __init__(self, measured: Forecast) -> None:
        starts = measured.starts_s
        if starts[-1] - starts[0] != HOUR * (len(starts) - 1):  # points are in time order: evenly spaced
            raise ConfigurationError("a PersistenceIndex needs an evenly spaced hourly series")
        self.measured = measured
        self.sums = _seven_day_sums(list(measured.values))
        squared = _squared_errors(list(measured.values), self.sums)
        self._prefix = {lag: _prefix(column) for lag, column in squared.items()}

    def window(self, start_s: float, until_s: float) -> Forecast:
        """The measured points starting in ``[start_s, until_s)``, their analysis remembered."""
        m = self.measured
        lo, hi = bisect_left(m.starts_s, start_s), bisect_left(m.starts_s, until_s)
        if hi <= lo:
            raise ForecastCoverageError("the window holds no measured point")
        window = replace(m, starts_s=m.starts_s[lo:hi], values=m.values[lo:hi], end_s=m.starts_s[hi - 1] + HOUR,
                         measured_until=datetime.fromtimestamp(m.starts_s[hi - 1] + HOUR, UTC))
        errors = {}
        for lag, (total, count) in self._prefix.items():
            first = min(hi, lo + 24 * (lag + PRIOR_DAYS - 1))  # the window's own samples only, as alone
            n = count[hi] - count[first]
            if n >= MIN_PAIRS_H:
                errors[lag] = max((total[hi] - total[first]) / n, 1e-6)
        span = 24 * (PRIOR_DAYS - 1)
        sums = [math.nan] * min(span, hi - lo) + self.sums[lo + span:hi]
        if len(_KNOWN) > 256:
            _KNOWN.clear()
        _KNOWN[window] = _History(window.starts_s[0], sums, errors)
        return window


def _prefix(column: list[float | None]) -> tuple[list[float], list[int]]:
    total, count = [0.0], [0]
    for e in column:
        total.append(total[-1] + (e or 0.0))
        count.append(count[-1] + (e is not None))
    return total, count


def persistence_errors(measured: Forecast) -> dict[int, float]:
    """For each lag of 1-3 days, the prior's mean squared relative error over ``measured`` (hourly samples).

    Lags with fewer than :data:`MIN_PAIRS_H` samples are left out.
    """
    return dict(_history(measured).errors)


def blend_with_persistence(
    forecast: Forecast, measured: Forecast, *, now: datetime, scale: float = FORECAST_VARIANCE_SCALE
) -> Forecast:
    """``forecast`` with each future hour blended with the persistence prior (see the module).

    Returns ``forecast`` itself where nothing can be blended: no stated error, another signal, or
    too little measured history.
    """
    if forecast.error_24h <= 0 or scale <= 0 or measured.signal != forecast.signal:
        return forecast
    history = _history(measured)
    errors, sums, first = history.errors, history.sums, history.first
    if not errors:
        return forecast
    now_s = as_utc(now, "now").timestamp()
    own_measured = -math.inf if forecast.measured_until is None else forecast.measured_until.timestamp()
    noise_per_h = scale * forecast.error_24h ** 2 / 24
    values = list(forecast.values)
    changed = False
    for i, start in enumerate(forecast.starts_s):
        h = (start - now_s) / HOUR
        if h <= 0 or start < own_measured:
            continue
        for lag in LAGS_DAYS:
            if lag < h / 24 or lag not in errors:
                continue
            j = math.floor((start - lag * DAY - first) / HOUR)  # the hourly sample L days before
            if 0 <= j < len(sums) and math.isfinite(sums[j]):
                w = errors[lag] / (errors[lag] + noise_per_h * h)
                values[i] = w * values[i] + (1 - w) * sums[j] / PRIOR_DAYS
                changed = True
                break
    if not changed:
        return forecast
    return replace(forecast, values=tuple(values), source=forecast.source + PRIOR_MARK)


def _measured_until(measured: Forecast) -> float:
    if measured.measured_until is None:
        return measured.end_s
    return min(measured.end_s, measured.measured_until.timestamp())


def _hourly(measured: Forecast) -> list[float]:
    """The measured values at each whole hour from the first point."""
    starts, values = measured.starts_s, measured.values
    until = _measured_until(measured)
    n = bisect_left(starts, until)  # the points that start before it: the measured ones
    if n == 0:
        return []
    step = (starts[n - 1] - starts[0]) / (n - 1) if n > 1 else HOUR
    if HOUR % step == 0 and starts[n - 1] - starts[0] == step * (n - 1):
        return list(values[:n:int(HOUR // step)])  # evenly spaced: by index, no search
    return [values[bisect_right(starts, t) - 1] for t in _hours(starts[0], until)]


def _hours(first: float, until: float) -> list[float]:
    return [first + k * HOUR for k in range(math.ceil((until - first) / HOUR))]


def _seven_day_sums(xs: list[float]) -> list[float]:
    """``sum(xs[j - 24 d] for d in 0..6)`` at each j, rolling a day at a time (NaN before seven days or in a gap)."""
    span = 24 * (PRIOR_DAYS - 1)
    sums = [math.nan] * len(xs)
    for j in range(span, len(xs)):
        before = sums[j - 24] if j >= span + 24 else math.nan
        if math.isfinite(before):
            sums[j] = before + xs[j] - xs[j - span - 24]
        else:
            sums[j] = sum(xs[j - 24 * d] for d in range(PRIOR_DAYS))
    return sums
