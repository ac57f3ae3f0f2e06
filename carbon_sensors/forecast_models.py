"""Forecast models for backtests: how the forecasts a trace's zone would have had are made from its actuals.

Two models, each serving ``issued_at(t_s)``: the forecast issued at the last slot boundary at or
before ``t_s``, from that slot for up to ``horizon_h`` hours, as a live API would return it.

- ``mmfe`` (:class:`MMFEForecasts`, the default): the martingale model of forecast evolution (Heath
  and Jackson 1994; Graves et al.). News arrives every hour and each forecast lacks all news after its
  issue time, so revisions are independent and unpredictable and no set of forecasts reveals an
  actual before it happens::

      forecast_t(T) = actual[T] * max(0.05, 1 + E[t, h]),   h = T - t in [0, 72]
      E[t, h] = sigma24 / sqrt(24) * sum_{i=1..h} U[t + i, h - i]

  ``U[k, j]`` is the news that arrives at hour k about hour k + j: standard normal, AR(1) over j with
  coefficient ``rho``, independent over k. h = 0 is exact and Var E[t, h] = sigma24^2 * h / 24.
- ``fixed`` (:class:`ModelForecasts`, for comparison only): ``actual[T] * (1 + sigma24 * sqrt(h/24) * z[T])``
  with one AR(1) series ``z`` over target hours, fixed across issue times. Its flaw: each target's
  error only shrinks, so two forecasts of the same hour reveal the actual.

Price forecasts (:class:`MMFEPriceForecasts`) use the ``mmfe`` error ``E`` with their own sigma and
their own random stream, but additively, scaled by the price level known at issue time (prices can be
zero or negative, where a relative error would vanish or flip sign)::

    price_forecast_t(T) = price[T] + L[t] * E[t, h],   L[t] = mean |price| over the 30 days up to t

>>> sorted(FORECAST_MODELS)
['fixed', 'mmfe']
"""

from __future__ import annotations

import math
import random
import zlib
from array import array
from datetime import UTC, datetime
from itertools import accumulate
from operator import add

from carbon_sensors.errors import ConfigurationError, ForecastCoverageError
from carbon_sensors.forecast import MAX_PLAUSIBLE_G_PER_KWH, Forecast

__all__ = ["FORECAST_MODELS", "MMFEForecasts", "MMFEPriceForecasts", "ModelForecasts", "describe_model",
           "describe_price_model", "make_forecasts"]

HOUR = 3600.0
HORIZON_H = 72
FLOOR = 0.05  # a forecast is never below 5 % of the actual

FORECAST_MODELS = ("mmfe", "fixed")
PRICE_LEVEL_H = 30 * 24  # the price level L[t] is the mean |price| over this many hours up to t


def describe_model(model: str, *, sigma24: float, rho: float) -> str:
    """The model's formula with its parameters, as the backtest output names it."""
    if model == "mmfe":
        return (
            f"mmfe (martingale model of forecast evolution): forecast_t(T) = actual[T] * max({FLOOR}, 1 + E[t, h]), "
            f"E[t, h] = sigma24/sqrt(24) * sum_{{i=1..h}} U[t+i, h-i], h = T - t in [0, {HORIZON_H}] h; U[k, j] the "
            f"news at hour k about hour k+j, standard normal, AR(1) over j with rho = {rho}, independent over k; "
            f"sigma24 = {sigma24}"
        )
    if model == "fixed":
        return (
            f"fixed (for comparison only): actual[T] * (1 + sigma24 * sqrt(h/24) * z[T]), h = T - t in "
            f"[0, {HORIZON_H}] h, z AR(1) over target hours with rho = {rho}, fixed across issue times; "
            f"sigma24 = {sigma24}"
        )
    raise ConfigurationError(f"unknown forecast model {model!r}; choose from {', '.join(FORECAST_MODELS)}")


def describe_price_model(*, sigma24: float, rho: float) -> str:
    """The price forecasts' formula with its parameters, as the backtest output names it."""
    return (
        f"price mmfe (additive): price_forecast_t(T) = price[T] + L[t] * E[t, h], E as for carbon with "
        f"price sigma24 = {sigma24}, rho = {rho} and its own random stream; L[t] = mean |price| over the "
        f"{PRICE_LEVEL_H // 24} days up to the issue time t"
    )


def check_model(model: str) -> None:
    if model not in FORECAST_MODELS:
        raise ConfigurationError(f"unknown forecast model {model!r}; choose from {', '.join(FORECAST_MODELS)}")


def make_forecasts(model: str, actual: Forecast, *, sigma24: float, rho: float, seed: int, exact_h: float = 0.0):
    """The forecasts of ``model`` for one trace and seed."""
    check_model(model)
    cls = MMFEForecasts if model == "mmfe" else ModelForecasts
    return cls(actual, sigma24=sigma24, rho=rho, seed=seed, exact_h=exact_h)


def _check(sigma24: float, rho: float, exact_h: float) -> None:
    if not (sigma24 >= 0 and -1 < rho < 1 and exact_h >= 0):
        raise ConfigurationError("sigma24 and exact_h must be >= 0 and rho within (-1, 1)")


def _forecast(actual: Forecast, i: int, values: list[float], sigma24: float, recent: float | None,
              step_s: float) -> Forecast:
    if min(values) <= 0.0 or max(values) > MAX_PLAUSIBLE_G_PER_KWH:  # rare: clamp only then
        values = [min(MAX_PLAUSIBLE_G_PER_KWH, max(0.0, v)) for v in values]
    starts = actual.starts_s[i:i + len(values)]
    return Forecast(
        zone=actual.zone, source="simulated-forecast", signal=actual.signal,
        issued_at=datetime.fromtimestamp(starts[0], UTC), starts_s=starts, values=tuple(values),
        end_s=starts[-1] + step_s, error_24h=sigma24,
        recent_error=None if recent is None else max(-0.99, recent), recent_error_lead_h=step_s / HOUR,
    )


def _slot(actual: Forecast, t_s: float, step_s: float) -> int:
    i = int((t_s - actual.starts_s[0]) // step_s)
    if not 0 <= i < len(actual.values):
        raise ForecastCoverageError(f"the trace has no forecast issued at {datetime.fromtimestamp(t_s, UTC)}")
    return i


def _mmfe_rows(rng: random.Random, n: int, horizon: int, scale: float, rho: float):
    """``(t, [E[t, 0], ..., E[t, horizon]])`` for t = n - 1 down to 0, from ``E[t, h] = E[t+1, h-1] +
    scale * U[t+1, h-1]``; ``scale`` is sigma24 / sqrt(24 slots)."""
    gauss, innovation = rng.gauss, scale * math.sqrt(1 - rho * rho)
    errors = [0.0] * (horizon + 1)  # E[t + 1, .]; E[n, .] is never read for a target inside the trace
    for t in range(n - 1, -1, -1):
        # scale * U[t + 1, j] for j = 0 .. horizon - 1: AR(1) over j, unit variance before scaling
        first = gauss(0.0, scale)
        news = accumulate([gauss(0.0, innovation) for _ in range(horizon - 1)], lambda u, e: rho * u + e,
                          initial=first)
        errors = [0.0, *map(add, errors, news)]
        yield t, errors


class MMFEForecasts:
    """The martingale model of forecast evolution for one trace and seed (see the module docstring).

    Every issue time's error row is built once, backwards in time, from ``E[t, h] = E[t+1, h-1] +
    sigma24/sqrt(24) * U[t+1, h-1]``, and kept as one flat array of factors ``max(0.05, 1 + E)``.
    ``exact_h`` makes every lead up to that many hours exact (a foresight diagnostic; the planner is
    not told).
    """

    def __init__(self, actual: Forecast, *, sigma24: float, rho: float, seed: int, horizon_h: int = HORIZON_H,
                 exact_h: float = 0.0):
        _check(sigma24, rho, exact_h)
        self.actual, self.sigma24, self.rho = actual, sigma24, rho
        self.step_s = actual.starts_s[1] - actual.starts_s[0]
        steps_h = HOUR / self.step_s
        self.horizon = int(horizon_h * steps_h)
        self.width = self.horizon + 1
        exact = min(self.width, int(exact_h * steps_h + 1e-9) + 1)
        n, row_width = len(actual.values), self.width
        rng = random.Random(f"mmfe:{seed}:{zlib.crc32(actual.zone.encode())}")
        factors = array("d", bytes(8 * n * row_width))
        for t, errors in _mmfe_rows(rng, n, self.horizon, sigma24 / math.sqrt(24 * steps_h), rho):
            row = [1.0 + e if e > FLOOR - 1.0 else FLOOR for e in errors]
            row[:exact] = [1.0] * exact
            factors[t * row_width:(t + 1) * row_width] = array("d", row)
        self.factors = factors
        self._cache: dict[int, Forecast] = {}

    def error(self, i: int, h: int) -> float:
        """``max(0.05, 1 + E[i, h]) - 1`` for issue slot ``i`` and lead ``h`` slots."""
        return self.factors[i * self.width + h] - 1.0

    def issued_at(self, t_s: float) -> Forecast:
        """The forecast issued at the last slot boundary at or before ``t_s``."""
        i = _slot(self.actual, t_s, self.step_s)
        if i in self._cache:
            return self._cache[i]
        last = min(len(self.actual.values), i + self.width)
        base = i * self.width
        out = [v * f for v, f in zip(self.actual.values[i:last], self.factors[base:base + last - i], strict=True)]
        # Like an API that returns forecast and actual for recent slots: the error the forecast issued
        # one step earlier made for the current slot (news, so it tells nothing about later errors).
        recent = None if i == 0 or not self.actual.values[i] > 0 else self.error(i - 1, 1)
        forecast = _forecast(self.actual, i, out, self.sigma24, recent, self.step_s)
        if len(self._cache) > 512:
            self._cache.clear()
        self._cache[i] = forecast
        return forecast


class ModelForecasts:
    """The ``fixed`` model (for comparison only): one error series over target hours, fixed across issue times."""

    def __init__(self, actual: Forecast, *, sigma24: float, rho: float, seed: int, horizon_h: int = HORIZON_H,
                 exact_h: float = 0.0):
        _check(sigma24, rho, exact_h)
        self.actual, self.sigma24 = actual, sigma24
        self.step_s = actual.starts_s[1] - actual.starts_s[0]
        self.horizon = int(horizon_h * HOUR / self.step_s)
        rng = random.Random(seed)
        innovation = math.sqrt(1 - rho * rho)
        z, previous = [], rng.gauss(0.0, 1.0)
        for _ in actual.values:
            z.append(previous)
            previous = rho * previous + innovation * rng.gauss(0.0, 1.0)
        self.z = z
        self.scale = [0.0 if h * self.step_s / HOUR <= exact_h else sigma24 * math.sqrt(h * self.step_s / HOUR / 24)
                      for h in range(self.horizon + 1)]
        self._cache: dict[int, Forecast] = {}

    def issued_at(self, t_s: float) -> Forecast:
        """The forecast issued at the last slot boundary at or before ``t_s``."""
        i = _slot(self.actual, t_s, self.step_s)
        if i in self._cache:
            return self._cache[i]
        last = min(len(self.actual.values), i + self.horizon + 1)
        values = self.actual.values
        out = [v * (1 + s * z) for v, s, z in zip(values[i:last], self.scale, self.z[i:last], strict=False)]
        # Like an API that returns forecast and actual for recent slots: the error the forecast
        # issued one step earlier made for the current slot.
        recent = None if i == 0 or not values[i] > 0 else self.scale[1] * self.z[i]
        forecast = _forecast(self.actual, i, out, self.sigma24, recent, self.step_s)
        if len(self._cache) > 512:
            self._cache.clear()
        self._cache[i] = forecast
        return forecast


class MMFEPriceForecasts:
    """The ``mmfe`` model for a price series: additive errors scaled by the price level at issue time.

    ``forecast_t(T) = price[T] + L[t] * E[t, h]`` with ``E`` drawn as in :class:`MMFEForecasts`
    (from a random stream of its own, so prices and carbon get independent news) and ``L[t]`` the
    mean absolute price over the 30 days up to ``t``: known when the forecast is issued, so the size
    of the error reveals nothing about the target. A relative error (``price * (1 + E)``) would make
    every hour near zero exact and turn a negative price's error upside down. h = 0 is exact.

    >>> from datetime import datetime, timedelta, timezone
    >>> from carbon_sensors.prices import PriceForecast
    >>> t0 = datetime(2023, 1, 1, tzinfo=timezone.utc)
    >>> actual = PriceForecast.from_points([(t0 + timedelta(hours=h), -5.0 + h) for h in range(96)],
    ...                                    zone="DE", source="test", currency="EUR")
    >>> first = MMFEPriceForecasts(actual, sigma24=0.1, rho=0.9, seed=1).issued_at(t0.timestamp())
    >>> first.values[0], first.currency, len(first.values)
    (-5.0, 'EUR', 73)
    """

    def __init__(self, actual, *, sigma24: float, rho: float, seed: int, horizon_h: int = HORIZON_H,
                 exact_h: float = 0.0):
        _check(sigma24, rho, exact_h)
        if len(actual.values) < 2:
            raise ConfigurationError(f"the price trace for zone {actual.zone!r} needs at least two points")
        self.actual, self.sigma24, self.rho = actual, sigma24, rho
        self.step_s = actual.starts_s[1] - actual.starts_s[0]
        steps_h = HOUR / self.step_s
        self.horizon = int(horizon_h * steps_h)
        self.width = self.horizon + 1
        exact = min(self.width, int(exact_h * steps_h + 1e-9) + 1)
        n, width = len(actual.values), self.width
        rng = random.Random(f"mmfe-price:{seed}:{zlib.crc32(actual.zone.encode())}")
        errors = array("d", bytes(8 * n * width))
        for t, row in _mmfe_rows(rng, n, self.horizon, sigma24 / math.sqrt(24 * steps_h), rho):
            row[:exact] = [0.0] * exact
            errors[t * width:(t + 1) * width] = array("d", row)
        self.errors = errors
        window = max(1, int(PRICE_LEVEL_H * steps_h))
        sums = list(accumulate((abs(v) for v in actual.values), initial=0.0))
        self.level = [(sums[i + 1] - sums[max(0, i + 1 - window)]) / min(window, i + 1) for i in range(n)]
        self._cache: dict[int, object] = {}

    def issued_at(self, t_s: float):
        """The price forecast issued at the last slot boundary at or before ``t_s``."""
        from carbon_sensors.prices import MAX_PLAUSIBLE_PRICE_PER_MWH, PriceForecast

        i = _slot(self.actual, t_s, self.step_s)
        if i in self._cache:
            return self._cache[i]
        last = min(len(self.actual.values), i + self.width)
        base, level, limit = i * self.width, self.level[i], MAX_PLAUSIBLE_PRICE_PER_MWH
        values = [min(limit, max(-limit, v + level * e))
                  for v, e in zip(self.actual.values[i:last], self.errors[base:base + last - i], strict=True)]
        starts = self.actual.starts_s[i:last]
        forecast = PriceForecast(
            zone=self.actual.zone, source="simulated-price-forecast", currency=self.actual.currency,
            issued_at=datetime.fromtimestamp(starts[0], UTC), starts_s=starts, values=tuple(values),
            end_s=starts[-1] + self.step_s, error_24h=min(self.sigma24, 9.99),
        )
        if len(self._cache) > 512:
            self._cache.clear()
        self._cache[i] = forecast
        return forecast
