"""Carbon and cost of one run: energy x intensity over the run's actual interval, and prices.

Carbon is the run's energy times the time-weighted mean intensity over the interval it actually ran
(gCO2e/kWh x kWh = g). The counterfactual is the same energy at the intensity the run would have met
had it started when it was submitted; ``saved = counterfactual - actual``. Both figures come from one
signal (average or marginal), never a mix.

>>> from datetime import datetime, timedelta, timezone
>>> from carbon_sensors.forecast import Forecast
>>> t0 = datetime(2026, 6, 15, tzinfo=timezone.utc)
>>> f = Forecast.from_points([(t0, 400.0), (t0 + timedelta(hours=1), 100.0)], zone="DE", source="x",
...                          resolution=timedelta(hours=1))
>>> run_intensities(f, submitted_at=t0, started_at=t0 + timedelta(hours=1), ended_at=t0 + timedelta(hours=2))
(100.0, 400.0, 'forecast')
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from carbon_sensors.errors import ConfigurationError, PricingError
from carbon_sensors.forecast import Forecast
from carbon_sensors.prices import PriceForecast
from carbon_sensors.records import RunRecord, TokenUsage
from carbon_sensors.renames import env_setting
from carbon_sensors.timeutil import as_utc, parse_utc

__all__ = [
    "PRICES_ENV",
    "Prices",
    "apply_carbon",
    "apply_cost",
    "apply_market_price",
    "reprice_with_actuals",
    "run_intensities",
    "run_prices",
]

#: A JSON or TOML price table (see :class:`Prices`).
PRICES_ENV = "CARBON_SENSORS_PRICES_FILE"
USD_PER_KWH_ENV = "CARBON_SENSORS_USD_PER_KWH"
USD_PER_GPU_HOUR_ENV = "CARBON_SENSORS_USD_PER_GPU_HOUR"
_J_PER_KWH = 3.6e6


@dataclass(frozen=True, slots=True)
class Prices:
    """What energy, tokens and GPU time cost, in USD.

    ``usd_per_kwh``: a flat electricity price; or ``usd_per_kwh_series``, a price signal of
    ``(UTC datetime, USD/kWh)`` points (each holds until the next), averaged over the run.
    ``usd_per_1k_tokens``: per model, ``(prompt, completion)`` USD per 1,000 tokens. A model name
    the API returns with a date suffix (``gpt-4o-mini-2024-07-18``) matches the longest listed prefix.
    ``usd_per_gpu_hour``: per GPU metered, for the run's wall time.

    A price table file (JSON or TOML), named by ``CARBON_SENSORS_PRICES_FILE`` or the Airflow option
    ``[carbon_sensors] prices_file``::

        usd_per_kwh = 0.21
        usd_per_gpu_hour = 2.5
        # price_file = "prices.csv"   # a price signal: time,usd_per_kwh rows instead of a flat price
        [usd_per_1k_tokens]
        "gpt-4o-mini" = { prompt = 0.00015, completion = 0.0006 }

    >>> p = Prices(usd_per_1k_tokens={"gpt-4o-mini": (0.15, 0.6)})
    >>> round(p.token_cost([TokenUsage("gpt-4o-mini-2024-07-18", 1000, 500)]), 6)
    0.45
    """

    usd_per_kwh: float | None = None
    usd_per_kwh_series: tuple[tuple[datetime, float], ...] = ()
    usd_per_1k_tokens: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    usd_per_gpu_hour: float | None = None

    def __post_init__(self) -> None:
        for name in ("usd_per_kwh", "usd_per_gpu_hour"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise PricingError(f"{name} must be a non-negative number, got {value!r}")
        series = tuple((as_utc(t, "price time"), float(v)) for t, v in self.usd_per_kwh_series)
        if any(not (math.isfinite(v) and v >= 0) for _, v in series) or any(b[0] <= a[0] for a, b in itertools.pairwise(series)):
            raise PricingError("usd_per_kwh_series needs time-ordered points with non-negative prices")
        object.__setattr__(self, "usd_per_kwh_series", series)
        table = {}
        for model, pair in dict(self.usd_per_1k_tokens).items():
            if isinstance(pair, Mapping):
                pair = (pair.get("prompt", 0.0), pair.get("completion", 0.0))
            try:
                prompt, completion = (float(x) for x in pair)
            except (TypeError, ValueError):
                raise PricingError(
                    f"the price of model {model!r} must be (prompt, completion) USD per 1k tokens, got {pair!r}"
                ) from None
            if not (math.isfinite(prompt) and math.isfinite(completion) and prompt >= 0 and completion >= 0):
                raise PricingError(f"the price of model {model!r} must be non-negative, got {pair!r}")
            table[str(model)] = (prompt, completion)
        object.__setattr__(self, "usd_per_1k_tokens", table)

    def energy_price(self, start: datetime, end: datetime) -> float | None:
        """USD/kWh over ``[start, end]``: the series' time-weighted mean, else the flat price."""
        if not self.usd_per_kwh_series:
            return self.usd_per_kwh
        s, e = as_utc(start).timestamp(), as_utc(end).timestamp()
        times = [t.timestamp() for t, _ in self.usd_per_kwh_series]
        values = [v for _, v in self.usd_per_kwh_series]
        if e <= s:
            return values[max(0, bisect_right(times, s) - 1)]
        total = 0.0
        for i, t in enumerate(times):
            lo, hi = max(s, t), min(e, times[i + 1] if i + 1 < len(times) else math.inf)
            if i == 0:
                lo = s  # the first price also holds before it starts
            if hi > lo:
                total += values[i] * (hi - lo)
        return total / (e - s)

    def model_price(self, model: str) -> tuple[float, float]:
        """``(prompt, completion)`` USD per 1k tokens for ``model``; PricingError when it is not listed."""
        if model in self.usd_per_1k_tokens:
            return self.usd_per_1k_tokens[model]
        prefixes = [m for m in self.usd_per_1k_tokens if model.startswith(m) and model[len(m):len(m) + 1] in ("-", ":", "@")]
        if prefixes:
            return self.usd_per_1k_tokens[max(prefixes, key=len)]
        listed = ", ".join(sorted(self.usd_per_1k_tokens)) or "none"
        raise PricingError(
            f"no token price for model {model!r} (listed: {listed}); add it under usd_per_1k_tokens in the price table"
        )

    def token_cost(self, tokens: Iterable[TokenUsage]) -> float:
        """USD for ``tokens``; PricingError names the first model without a price."""
        total = 0.0
        for usage in tokens:
            prompt, completion = self.model_price(usage.model)
            total += usage.prompt_tokens / 1000 * prompt + usage.completion_tokens / 1000 * completion
        return total

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, base_dir: Path | None = None) -> Prices:
        """Prices from a parsed price table (see the class docstring for its keys)."""
        known = {"usd_per_kwh", "usd_per_gpu_hour", "usd_per_1k_tokens", "price_file"}
        if unknown := set(data) - known:
            raise PricingError(f"unknown keys in the price table: {', '.join(sorted(unknown))}; use {', '.join(sorted(known))}")
        series: tuple[tuple[datetime, float], ...] = ()
        if data.get("price_file"):
            path = Path(data["price_file"])
            series = _read_price_file(path if path.is_absolute() or base_dir is None else base_dir / path)
        return cls(
            usd_per_kwh=data.get("usd_per_kwh"), usd_per_kwh_series=series,
            usd_per_1k_tokens=data.get("usd_per_1k_tokens") or {}, usd_per_gpu_hour=data.get("usd_per_gpu_hour"),
        )

    @classmethod
    def load(cls, path: str | Path) -> Prices:
        """Prices from a JSON or TOML file."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise PricingError(f"cannot read the price table {path} ({exc.strerror or exc}); check the path") from None
        try:
            if path.suffix.lower() == ".toml":
                import tomllib

                data = tomllib.loads(text)
            else:
                data = json.loads(text)
        except ValueError as exc:
            raise PricingError(f"the price table {path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}") from None
        if not isinstance(data, Mapping):
            raise PricingError(f"the price table {path} must hold a table of prices")
        return cls.from_mapping(data, base_dir=path.parent)

    @classmethod
    def from_env(cls, prices_file: str | None = None) -> Prices:
        """Prices from ``prices_file`` or ``CARBON_SENSORS_PRICES_FILE``, then the flat env overrides."""
        path = prices_file or env_setting(PRICES_ENV)
        prices = cls.load(path) if path else cls()
        overrides = {}
        for env, name in ((USD_PER_KWH_ENV, "usd_per_kwh"), (USD_PER_GPU_HOUR_ENV, "usd_per_gpu_hour")):
            if raw := (env_setting(env) or "").strip():
                try:
                    overrides[name] = float(raw)
                except ValueError:
                    raise PricingError(f"{env}={raw!r} is not a number; set it to e.g. 0.21") from None
        return replace(prices, **overrides) if overrides else prices


def _read_price_file(path: Path) -> tuple[tuple[datetime, float], ...]:
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise PricingError(f"cannot read the price signal {path} ({exc.strerror or exc}); check price_file") from None
    try:
        points = sorted((parse_utc(r["time"], "price time"), float(r["usd_per_kwh"])) for r in rows)
    except (KeyError, ValueError, ConfigurationError) as exc:
        raise PricingError(f"the price signal {path} needs time,usd_per_kwh rows with ISO-8601 times ({exc})") from None
    if not points:
        raise PricingError(f"the price signal {path} has no rows")
    return tuple(points)


def run_intensities(
    forecast: Forecast, *, submitted_at: datetime | None, started_at: datetime, ended_at: datetime
) -> tuple[float | None, float | None, str]:
    """``(intensity, counterfactual intensity, basis)`` for a run, in gCO2e/kWh.

    ``intensity``: time-weighted over the run's actual interval (clipped to what ``forecast``
    covers; None if it covers none of it). ``counterfactual``: over an interval as long, from
    ``submitted_at``; None unless ``forecast`` reaches back that far. ``basis`` is ``measured`` when
    every point used is a measurement, else ``forecast``.
    """
    start, end = as_utc(started_at).timestamp(), as_utc(ended_at).timestamp()
    end = max(end, start)
    intensity = _mean(forecast, start, end)
    counterfactual = None
    needed_until = end
    if submitted_at is not None:
        sub = as_utc(submitted_at).timestamp()
        if forecast.starts_s[0] <= sub < forecast.end_s:
            counterfactual = _mean(forecast, sub, sub + (end - start))
            needed_until = max(needed_until, sub + (end - start))
    measured = forecast.measured_until is not None and forecast.measured_until.timestamp() >= needed_until
    return intensity, counterfactual, "measured" if measured else "forecast"


def _mean(forecast: Forecast, start_s: float, end_s: float) -> float | None:
    if end_s <= start_s:
        value = forecast.value_at(datetime.fromtimestamp(start_s, UTC))
        return None if math.isnan(value) else value
    value = forecast.mean_between(start_s, end_s)
    return None if math.isnan(value) else value


def apply_carbon(
    record: RunRecord, *, intensity: float | None, counterfactual: float | None, signal: str | None,
    source: str | None, basis: str,
) -> RunRecord:
    """``record`` with carbon figures for its energy at ``intensity`` (and the counterfactual)."""
    energy = record.energy_kwh
    carbon = None if energy is None or intensity is None else energy * intensity
    counter = None if energy is None or counterfactual is None else energy * counterfactual
    return replace(
        record,
        carbon_signal=signal, carbon_source=source, carbon_basis=basis,
        intensity_g_per_kwh=intensity, counterfactual_intensity_g_per_kwh=counterfactual,
        carbon_g=carbon, counterfactual_carbon_g=counter,
        saved_carbon_g=None if carbon is None or counter is None else counter - carbon,
    )


def apply_cost(record: RunRecord, prices: Prices, *, gpu_count: int = 0, strict: bool = False) -> RunRecord:
    """``record`` with its energy, token and GPU costs (USD); an unpriced model leaves a note, or raises if strict."""
    notes = list(record.notes)
    energy_cost = tokens_cost = gpu_cost = None
    if record.started_at is not None and record.ended_at is not None:
        price = prices.energy_price(record.started_at, record.ended_at)
        if price is not None and record.energy_kwh is not None:
            energy_cost = record.energy_kwh * price
        if prices.usd_per_gpu_hour is not None and gpu_count:
            gpu_cost = prices.usd_per_gpu_hour * gpu_count * (record.duration_s or 0.0) / 3600.0
    if record.tokens:
        try:
            tokens_cost = prices.token_cost(record.tokens)
        except PricingError as exc:
            if strict:
                raise
            notes.append(f"token cost unknown: {exc}")
    parts = [c for c in (energy_cost, tokens_cost, gpu_cost) if c is not None]
    return replace(
        record, cost_energy_usd=energy_cost, cost_tokens_usd=tokens_cost, cost_gpu_usd=gpu_cost,
        cost_usd=sum(parts) if parts else None, notes=tuple(notes),
    )


def run_prices(
    prices: PriceForecast, *, submitted_at: datetime | None, started_at: datetime, ended_at: datetime
) -> tuple[float | None, float | None]:
    """``(price, counterfactual price)`` for a run, per MWh in ``prices.currency``.

    As :func:`run_intensities`: the time-weighted mean over the run's actual interval, and over an
    interval as long from ``submitted_at``; None where ``prices`` does not cover the interval.

    >>> from datetime import datetime, timedelta, timezone
    >>> t0 = datetime(2026, 6, 15, tzinfo=timezone.utc)
    >>> p = PriceForecast.from_points([(t0, 120.0), (t0 + timedelta(hours=1), -5.0)], zone="DE", source="x",
    ...                               currency="EUR", resolution=timedelta(hours=1))
    >>> run_prices(p, submitted_at=t0, started_at=t0 + timedelta(hours=1), ended_at=t0 + timedelta(hours=2))
    (-5.0, 120.0)
    """
    start, end = as_utc(started_at).timestamp(), as_utc(ended_at).timestamp()
    end = max(end, start)
    price = _price_mean(prices, start, end)
    counterfactual = None
    if submitted_at is not None:
        sub = as_utc(submitted_at).timestamp()
        counterfactual = _price_mean(prices, sub, sub + (end - start))
    return price, counterfactual


def _price_mean(prices: PriceForecast, start_s: float, end_s: float) -> float | None:
    value = prices.mean_between(start_s, end_s)
    return None if math.isnan(value) else value


def apply_market_price(
    record: RunRecord, *, currency: str, source: str | None, price: float | None, counterfactual: float | None,
    expected: float | None = None,
) -> RunRecord:
    """``record`` with its energy's market cost: at ``price`` (per MWh in ``currency``), the counterfactual and the saving.

    ``saved_energy_cost = counterfactual - cost``: positive when waiting made the run cheaper.
    Negative prices give negative costs (the run was paid to draw power); they are kept.
    """
    energy = record.energy_kwh

    def cost(per_mwh: float | None) -> float | None:
        return None if energy is None or per_mwh is None else energy * per_mwh / 1000.0

    actual, counter = cost(price), cost(counterfactual)
    return replace(
        record, price_currency=currency, price_source=source, expected_price_per_mwh=expected,
        price_per_mwh=price, counterfactual_price_per_mwh=counterfactual, expected_energy_cost=cost(expected),
        energy_cost=actual, counterfactual_energy_cost=counter,
        saved_energy_cost=None if actual is None or counter is None else counter - actual,
    )


_REPRICED_FIELDS = (
    "carbon_basis", "carbon_source", "intensity_g_per_kwh", "counterfactual_intensity_g_per_kwh", "carbon_g",
    "counterfactual_carbon_g", "saved_carbon_g",
)


def reprice_with_actuals(record: RunRecord, *, now: datetime | None = None) -> RunRecord | None:
    """``record`` re-priced with measured intensities from its own source, or None when there are none yet.

    Asks the source the record names (``source_spec``) for measurements over the run and its
    counterfactual interval: ``fetch_historical`` (WattTime), ``fetch_history`` (Electricity Maps,
    the past 24 h) or a source whose points are measurements (``FileSource(measured=True)``).
    The new record says which figures changed (``changes``: ``{field: [old, new]}``).
    """
    from carbon_sensors.signals import run_sync

    if record.source_spec is None or record.zone is None or record.started_at is None or record.ended_at is None:
        return None
    if record.carbon_basis == "measured" or record.energy_kwh is None:
        return None
    now = as_utc(now) if now is not None else datetime.now(UTC)
    actuals = run_sync(_measurements(record, now))
    if actuals is None or (record.carbon_signal is not None and actuals.signal != record.carbon_signal):
        return None  # no measurements yet, or of the other signal: never mix average and marginal
    intensity, counterfactual, basis = run_intensities(
        actuals, submitted_at=record.submitted_at, started_at=record.started_at, ended_at=record.ended_at
    )
    if basis != "measured" or intensity is None:
        return None
    if counterfactual is None:
        counterfactual = record.counterfactual_intensity_g_per_kwh
    updated = apply_carbon(record, intensity=intensity, counterfactual=counterfactual, signal=actuals.signal,
                           source=actuals.source, basis="measured")
    changes = dict(record.changes)
    for name in _REPRICED_FIELDS:
        old, new = getattr(record, name), getattr(updated, name)
        if old != new:
            changes[name] = [old, new]
    return replace(updated, repriced_at=now, changes=changes)


async def _measurements(record: RunRecord, now: datetime) -> Forecast | None:
    from carbon_sensors.errors import ForecastError, SourceError
    from carbon_sensors.signals import source_from_spec

    source = source_from_spec(record.source_spec)
    assert record.started_at is not None and record.ended_at is not None
    start = min(record.started_at, record.submitted_at or record.started_at)
    end = max(record.ended_at, (record.submitted_at or record.started_at) + (record.ended_at - record.started_at))
    try:
        if hasattr(source, "fetch_historical"):
            forecast = await source.fetch_historical(record.zone, start, end, now=now)
        elif hasattr(source, "fetch_history"):
            forecast = await source.fetch_history(record.zone, now=now)
        else:
            forecast = await source.fetch(record.zone, start, end, now=now)
    except (SourceError, ForecastError, OSError):
        return None
    if forecast.measured_until is None or forecast.starts_s[0] > as_utc(record.started_at).timestamp():
        return None
    return forecast
