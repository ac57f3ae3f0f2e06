"""The ``PriceForecast`` model: piecewise-constant electricity price over time, never mixed with intensity.

The same time model as :class:`~carbon_sensors.forecast.Forecast` (each point holds until the next
starts, the last until ``end``), but its own type: a price is money per energy in a stated
currency, and may be negative. Values are always per MWh; the currency is never converted.

>>> from datetime import datetime, timedelta, timezone
>>> t0 = datetime(2026, 6, 15, tzinfo=timezone.utc)
>>> p = PriceForecast.from_points([(t0, 80.0), (t0 + timedelta(hours=1), -10.0)], zone="DE",
...                               source="example", currency="EUR", resolution=timedelta(hours=1))
>>> p.window_mean(t0 + timedelta(minutes=30), timedelta(hours=1)), p.unit
(35.0, 'EUR/MWh')
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from carbon_sensors.errors import ConfigurationError, InvalidForecastError
from carbon_sensors.steps import StepSeries, check_steps, iso, last_step
from carbon_sensors.timeutil import as_utc

__all__ = ["MAX_PLAUSIBLE_PRICE_PER_MWH", "PriceForecast", "check_currency"]

#: Real day-ahead prices have touched -500 and +4,000 per MWh (the EU harmonised limits); a value
#: beyond this is a unit error (per kWh read as per MWh, or cents).
MAX_PLAUSIBLE_PRICE_PER_MWH = 20_000.0

_CURRENCY = re.compile(r"^[A-Z]{3}$")


def check_currency(currency: object) -> str:
    """``currency`` if it is an ISO 4217 code such as ``"USD"`` or ``"EUR"``; else a ConfigurationError."""
    if not (isinstance(currency, str) and _CURRENCY.match(currency)):
        raise ConfigurationError(
            f"currency must be an ISO 4217 code such as 'USD' or 'EUR', got {currency!r}; "
            "prices are never converted between currencies, so state the one the source quotes"
        )
    return currency


@dataclass(frozen=True, slots=True)
class PriceForecast(StepSeries):
    """Electricity price (``currency`` per MWh) for one zone from one source, as UTC epoch-second slots.

    Build it with :meth:`from_points`; the constructor validates whatever it is given. Negative
    prices are real (sunny, windy afternoons) and kept. ``error_24h``: the forecast's typical
    relative error (1 sigma) 24 h after ``issued_at``; 0 for a tariff or published day-ahead prices.
    """

    zone: str
    source: str
    currency: str
    issued_at: datetime
    starts_s: tuple[float, ...]
    values: tuple[float, ...]
    end_s: float
    error_24h: float = 0.0
    _cumulative: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_currency(self.currency)
        object.__setattr__(self, "issued_at", as_utc(self.issued_at, "price forecast issued_at"))
        where = f"price forecast for zone {self.zone!r} from {self.source!r}"
        if not (isinstance(self.error_24h, int | float) and 0.0 <= self.error_24h < 10.0):
            raise ConfigurationError(f"error_24h must be a relative error such as 0.1, got {self.error_24h!r}")
        starts, values = self.starts_s, self.values
        cumulative = check_steps(where, starts, values, self.end_s)
        limit = MAX_PLAUSIBLE_PRICE_PER_MWH
        if not (math.isfinite(sum(values)) and -limit <= min(values) and max(values) <= limit):
            for start, value in zip(starts, values, strict=True):
                if not (math.isfinite(value) and -limit <= value <= limit):
                    raise InvalidForecastError(
                        f"{where} has price {value!r} at {iso(start)}; values must be finite {self.currency}/MWh "
                        f"within +/-{limit:g} (fill or drop missing hours; check the unit: per kWh or cents?)"
                    )
        object.__setattr__(self, "_cumulative", cumulative)

    @classmethod
    def from_points(
        cls,
        points: Iterable[tuple[datetime, float]],
        *,
        zone: str,
        source: str,
        currency: str = "USD",
        issued_at: datetime | None = None,
        resolution: timedelta | None = None,
        error_24h: float = 0.0,
    ) -> PriceForecast:
        """Build a price forecast from ``(aware datetime, currency/MWh)`` pairs in time order.

        ``resolution`` is how long the last point holds; by default, the step before it.
        """
        pairs = [(as_utc(t, "price point time").timestamp(), float(v)) for t, v in points]
        if not pairs:
            raise InvalidForecastError(f"price forecast for zone {zone!r} from {source!r} has no points")
        starts = tuple(p[0] for p in pairs)
        step = last_step(f"price forecast for zone {zone!r}", starts, resolution)
        return cls(
            zone=zone,
            source=source,
            currency=currency,
            issued_at=issued_at if issued_at is not None else datetime.fromtimestamp(starts[0], UTC),
            starts_s=starts,
            values=tuple(p[1] for p in pairs),
            end_s=starts[-1] + step,
            error_24h=error_24h,
        )

    @property
    def unit(self) -> str:
        """The unit of every value, e.g. ``"EUR/MWh"``."""
        return f"{self.currency}/MWh"

    def mean_between(self, start_s: float, end_s: float) -> float:
        """Time-weighted mean price over ``[start_s, end_s]`` (epoch seconds); NaN where not covered."""
        if not self.covers(start_s, end_s):
            return math.nan
        if end_s == start_s:
            return self.values[bisect_right(self.starts_s, start_s) - 1] if start_s < self.end_s else math.nan
        return (self.integral_to(end_s) - self.integral_to(start_s)) / (end_s - start_s)

    def window_mean(self, start: datetime, duration: timedelta) -> float:
        """Duration-weighted mean price of a job running ``duration`` from ``start`` (NaN if not covered)."""
        s = as_utc(start, "window start").timestamp()
        return self.mean_between(s, s + duration.total_seconds())

    def energy_cost(self, start: datetime, duration: timedelta, energy_kwh: float) -> float:
        """What ``energy_kwh`` drawn evenly over the window costs, in ``currency`` (may be negative)."""
        return self.window_mean(start, duration) * energy_kwh / 1000.0

