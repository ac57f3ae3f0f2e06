"""The recent past as a second opinion: a forecast blended with a prior from the measured past.

A forecast's far hours are its noisiest, and the lowest of many noisy hours is more often noise
than a dip: a planner that trusts them waits for dips that are not there. What a gate knows besides
the forecast is what the grid measured in the last weeks, and where the grid stands now. Each
forecast hour ``T``, ``h`` hours ahead, is blended with a prior: the zone's usual level at that hour
of day, moved by how far the grid is from its usual level now, as far as such departures have
lasted ``h`` hours in the measured history::

    usual_L(t)   = mean(measured(t - d days) for d in L .. L + 6)      L = ceil((h + 1) / 24), 1..3
    departure(t) = log value(t) - log usual_L(t)
    prior(T)     = usual_L(T) * exp(c_h * departure(now))
    blended(T)   = w * forecast(T) + (1 - w) * prior(T),   w = v_prior / (v_prior + lam * v_forecast(h))

- ``value(now)`` is the forecast's own value for the current slot (what a plan to start now
  costs); ``L`` is the smallest lag whose usual level is already measured at ``T``;
- ``c_h`` (in [0, 1]): how much of a departure is left ``h`` hours later, the least-squares slope of
  ``departure(s + h)`` on ``departure(s)`` over the history: near 1 a few hours ahead (the grid
  stays where it is), towards 0 a day or more ahead (it goes back to its usual level);
- ``v_prior``: that prior's mean squared (log) error at ``h`` over the history, for ``T``'s hour of
  day (ramps are harder to call than nights), shrunk towards its all-hours value by
  :data:`HOUR_OF_DAY_PSEUDO_SAMPLES`;
- ``v_forecast(h) = error_24h^2 * h / 24``: the source's own stated error, growing with the lead
  (the martingale model); a forecast that states no error (``error_24h`` 0) is left as it is;
- ``lam`` (:data:`FORECAST_VARIANCE_SCALE`): 1, the variances as stated and measured
  (``bench/history_prior.py`` measures the alternatives on zones and years held out).

Hours already measured, the current hour, leads with fewer than :data:`MIN_PAIRS_H` measured pairs
and leads of three days or more keep the forecast's value.

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
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import accumulate
from operator import mul

from carbon_sensors.errors import ConfigurationError, ForecastCoverageError
from carbon_sensors.forecast import Forecast
from carbon_sensors.timeutil import as_utc

__all__ = ["FORECAST_VARIANCE_SCALE", "HISTORY", "HOUR_OF_DAY_PSEUDO_SAMPLES", "MAX_LAG_DAYS", "MIN_PAIRS_H",
           "PRIOR_MARK", "Fit", "PersistenceIndex", "blend_with_persistence", "persistence_fit"]

HOUR = 3600.0
DAY = 86400.0
#: The usual level is looked up at most this many days back, so the prior covers leads under three days.
MAX_LAG_DAYS = 3
#: The usual level is the mean of the same hour over this many days.
PRIOR_DAYS = 7
#: How much measured history a gate asks its source for: four weeks, so each lead is fitted on
#: 16-26 days of pairs.
HISTORY = timedelta(days=28)
#: The fewest measured pairs a lead's prior is fitted on (three days of hours).
MIN_PAIRS_H = 72
#: An hour of day's error is shrunk towards the all-hours error as if that had this many samples
#: (four weeks give 16-26 samples per hour of day: alone, too few to trust).
HOUR_OF_DAY_PSEUDO_SAMPLES = 10.0
#: ``lam``: the forecast's stated variance is scaled by this (0 would be the plain forecast).
FORECAST_VARIANCE_SCALE = 1.0
#: Added to a blended forecast's ``source``, so records say what was planned on.
PRIOR_MARK = " + persistence"
_SPAN = 24 * (PRIOR_DAYS - 1)  # hours between the first and the last day of a usual level
_VARIANCE_FLOOR = 1e-6


class Fit:
    """The prior at one lead, over one history: how much of a departure is left and how wrong it has been.

    ``slope``: the share of now's departure left ``h`` hours later; ``variance``: the prior's mean
    squared log error over all hours; ``pairs``: how many measured pairs it was fitted on;
    :meth:`variance_at`: the error for targets at one hour of day.
    """

    __slots__ = ("_by_class", "pairs", "slope", "variance")

    def __init__(self, slope: float, variance: float, pairs: int, by_class) -> None:
        self.slope, self.variance, self.pairs, self._by_class = slope, variance, pairs, by_class

    def variance_at(self, hour: int) -> float:
        """The error for targets at ``hour`` (UTC), shrunk towards ``variance`` by HOUR_OF_DAY_PSEUDO_SAMPLES."""
        m, xx, xy, yy = self._by_class(hour)
        b = self.slope
        own = max(0.0, yy - 2 * b * xy + b * b * xx)
        return max(_VARIANCE_FLOOR, (own + HOUR_OF_DAY_PSEUDO_SAMPLES * self.variance) / (m + HOUR_OF_DAY_PSEUDO_SAMPLES))

    def __repr__(self) -> str:
        return f"Fit(slope={self.slope:.4f}, variance={self.variance:.3g}, pairs={self.pairs})"


_Sums = tuple[array, array, array, array]  # running sums of pairs, x * x, x * y and y * y


@dataclass(frozen=True, slots=True)
class _LeadSums:
    """Running sums over the target samples ``j`` of the pairs (departure(j - h), departure(j)).

    ``all``: over every ``j`` (element ``k``: the first ``k`` targets); ``cls[r]``: over the targets
    ``j = r, r + 24, ...`` only (one hour of day). A pair with a gap on either side counts nowhere.
    """

    all: _Sums
    cls: tuple[_Sums, ...]


def _running(xs: list[float], ys: list[float]) -> _Sums:
    ok = [x == x and y == y for x, y in zip(xs, ys, strict=True)]  # NaN != NaN: a gap on either side
    xs = [x if good else 0.0 for x, good in zip(xs, ok, strict=True)]
    ys = [y if good else 0.0 for y, good in zip(ys, ok, strict=True)]
    return tuple(array("d", accumulate(column, initial=0.0))  # type: ignore[return-value]
                 for column in (map(float, ok), map(mul, xs, xs), map(mul, xs, ys), map(mul, ys, ys)))


def _between(sums: _Sums, k0: int, k1: int) -> tuple[float, float, float, float]:
    n, xx, xy, yy = sums
    return n[k1] - n[k0], xx[k1] - xx[k0], xy[k1] - xy[k0], yy[k1] - yy[k0]


class _Analysis:
    """Hourly measured samples from ``first``: their usual levels, departures and per-lead sums (lazily)."""

    def __init__(self, xs: list[float], first: float) -> None:
        self.first, self.n = first, len(xs)
        self.sums = _seven_day_sums(xs)
        logs = [math.log(x) if x > 0 else math.nan for x in xs]  # a gap or a non-positive value: no departure
        self.departures = {lag: [v - self.usual(lag, j) for j, v in enumerate(logs)]
                           for lag in range(1, MAX_LAG_DAYS + 1)}
        self._leads: dict[int, _LeadSums] = {}

    def usual(self, lag: int, j: int, lo: int = 0) -> float:
        """log of the mean of sample ``j``'s hour over the 7 days from ``lag`` days before (samples >= ``lo``; NaN if unknown)."""
        k = j - 24 * lag
        if not (lo + _SPAN <= k < self.n):
            return math.nan
        s = self.sums[k]
        return math.log(s / PRIOR_DAYS) if s > 0 else math.nan  # NaN (a gap) fails the test too

    def lead(self, h: int) -> _LeadSums:
        sums = self._leads.get(h)
        if sums is None:
            y = self.departures[_lag(h)]
            x = ([math.nan] * h + y)[:len(y)]  # the departure h hours before each target
            sums = self._leads[h] = _LeadSums(_running(x, y), tuple(_running(x[r::24], y[r::24]) for r in range(24)))
        return sums


def _lag(h: int) -> int:
    """The smallest lag in days whose usual level at ``now + h`` is already measured (24 * lag >= h + 1)."""
    return -(-(h + 1) // 24)


class _History:
    """The samples ``[lo, hi)`` of an analysis, fitted as if they were the whole history."""

    def __init__(self, analysis: _Analysis, lo: int, hi: int) -> None:
        self.analysis, self.lo, self.hi = analysis, lo, hi
        self.first = analysis.first + lo * HOUR
        self._fits: dict[int, Fit | None] = {}

    def usual(self, lag: int, j: int) -> float:
        """The usual level at window sample ``j`` (``j`` past the window's end: an hour to come)."""
        return self.analysis.usual(lag, self.lo + j, self.lo) if self.lo + j - 24 * lag < self.hi else math.nan

    def fit(self, h: int) -> Fit | None:
        """The prior at lead ``h`` hours, or None where fewer than MIN_PAIRS_H pairs were measured."""
        if h in self._fits:
            return self._fits[h]
        first_target = self.lo + h + 24 * _lag(h) + _SPAN  # the anchor's usual level inside the window
        sums = self.analysis.lead(h)
        n, xx, xy, yy = _between(sums.all, min(first_target, self.hi), self.hi)
        fit = None
        if n >= MIN_PAIRS_H:
            slope = min(1.0, max(0.0, xy / xx)) if xx > 0 else 0.0
            variance = max(_VARIANCE_FLOOR, (yy - 2 * slope * xy + slope * slope * xx) / n)
            hour0 = round(self.analysis.first / HOUR) % 24  # the UTC hour of sample 0
            hi = self.hi

            def by_class(hour: int) -> tuple[float, float, float, float]:
                r = (hour - hour0) % 24  # the targets j = r, r + 24, ... fall at this hour
                k0 = max(0, -(-(first_target - r) // 24))  # the first of them at or after first_target
                return _between(sums.cls[r], k0, max(k0, -(-(hi - r) // 24)))

            fit = Fit(slope, variance, int(n), by_class)
        self._fits[h] = fit
        return fit


#: Histories analysed ahead by a PersistenceIndex (backtests), by the id of their window (which each
#: entry keeps alive), looked up before analysing one.
_KNOWN: dict[int, tuple[Forecast, _History]] = {}


def _history(measured: Forecast) -> _History:
    known = _KNOWN.get(id(measured))
    return known[1] if known is not None and known[0] is measured else _analysed(measured)


@lru_cache(maxsize=256)
def _analysed(measured: Forecast) -> _History:
    """Cached: every gate of a zone asks with the same history until it is refreshed."""
    xs = _hourly(measured)
    return _History(_Analysis(xs, measured.starts_s[0]), 0, len(xs))


class PersistenceIndex:
    """A long hourly measured series analysed once, so the prior over any window of it costs O(1) per lead.

    For backtests, which ask for a new history every simulated hour: :meth:`window` returns the
    measured Forecast of ``[start_s, until_s)`` and remembers its analysis, the same as analysing
    that window alone would give.

    >>> from datetime import UTC, datetime, timedelta
    >>> t0 = datetime(2026, 6, 1, tzinfo=UTC)
    >>> trace = Forecast.from_points([(t0 + timedelta(hours=k), 200.0 + k % 24 + k % 7) for k in range(60 * 24)],
    ...                              zone="DE", source="trace")
    >>> index = PersistenceIndex(trace)
    >>> window = index.window(trace.starts_s[0] + 86400, trace.starts_s[0] + 40 * 86400)
    >>> fast, alone = _history(window).fit(5), _analysed(window).fit(5)
    >>> fast.pairs == alone.pairs and abs(fast.variance_at(3) - alone.variance_at(3)) < 1e-12
    True
    """

    def __init__(self, measured: Forecast) -> None:
        starts = measured.starts_s
        if starts[-1] - starts[0] != HOUR * (len(starts) - 1):  # points are in time order: evenly spaced
            raise ConfigurationError("a PersistenceIndex needs an evenly spaced hourly series")
        self.measured = measured
        self.analysis = _Analysis(list(measured.values), starts[0])

    def window(self, start_s: float, until_s: float) -> Forecast:
        """The measured points starting in ``[start_s, until_s)``, their analysis remembered."""
        m = self.measured
        lo, hi = bisect_left(m.starts_s, start_s), bisect_left(m.starts_s, until_s)
        if hi <= lo:
            raise ForecastCoverageError("the window holds no measured point")
        window = m.slice_points(lo, hi, measured_until=datetime.fromtimestamp(m.starts_s[hi - 1] + HOUR, UTC))
        if len(_KNOWN) > 256:
            _KNOWN.clear()
        _KNOWN[id(window)] = (window, _History(self.analysis, lo, hi))
        return window


def persistence_fit(measured: Forecast, leads: range = range(1, 24 * MAX_LAG_DAYS)) -> dict[int, Fit]:
    """The prior fitted at each lead (hours) over ``measured``; leads with too few pairs are left out.

    >>> from datetime import UTC, datetime, timedelta
    >>> t0 = datetime(2026, 6, 1, tzinfo=UTC)
    >>> flat = Forecast.from_points([(t0 + timedelta(hours=k), 300.0) for k in range(14 * 24)], zone="DE", source="m")
    >>> persistence_fit(flat)[1].variance
    1e-06
    """
    history = _history(measured)
    return {h: fit for h in leads if (fit := history.fit(h)) is not None}


def blend_with_persistence(
    forecast: Forecast, measured: Forecast, *, now: datetime, until: datetime | None = None,
    scale: float = FORECAST_VARIANCE_SCALE,
) -> Forecast:
    """``forecast`` with each future hour before ``until`` (default: all) blended with the prior (see the module).

    Returns ``forecast`` itself where nothing can be blended: no stated error, another signal, no
    value for now, or too little measured history.
    """
    if forecast.error_24h <= 0 or scale <= 0 or measured.signal != forecast.signal:
        return forecast
    now_s = as_utc(now, "now").timestamp()
    anchor = forecast.value_at(now)
    if not anchor > 0:  # NaN (no value for now) fails too
        return forecast
    history = _history(measured)
    first = history.first
    now_j = math.floor((now_s - first) / HOUR)
    own_measured = -math.inf if forecast.measured_until is None else forecast.measured_until.timestamp()
    noise_per_h = scale * forecast.error_24h ** 2 / 24
    until_s = math.inf if until is None else as_utc(until, "until").timestamp()
    values = list(forecast.values)
    changed = False
    for i, start in enumerate(forecast.starts_s):
        if start >= until_s:
            break
        if start <= now_s or start < own_measured:
            continue
        j = math.floor((start - first) / HOUR)
        h = j - now_j
        if not 1 <= h < 24 * MAX_LAG_DAYS or (fit := history.fit(h)) is None:
            continue
        lag = _lag(h)
        usual, usual_now = history.usual(lag, j), history.usual(lag, now_j)
        if not (math.isfinite(usual) and math.isfinite(usual_now)):
            continue
        prior = math.exp(usual + fit.slope * (math.log(anchor) - usual_now))
        v_prior = fit.variance_at(math.floor(start / HOUR) % 24)
        w = v_prior / (v_prior + noise_per_h * (start - now_s) / HOUR)
        values[i] = w * values[i] + (1 - w) * prior
        changed = True
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
    sums = [math.nan] * len(xs)
    for j in range(_SPAN, len(xs)):
        before = sums[j - 24] if j >= _SPAN + 24 else math.nan
        if math.isfinite(before):
            sums[j] = before + xs[j] - xs[j - _SPAN - 24]
        else:
            sums[j] = sum(xs[j - 24 * d] for d in range(PRIOR_DAYS))
    return sums
