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
import operator
import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate, pairwise

from carbon_sensors.errors import ConfigurationError, InvalidForecastError
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
class PriceForecast:
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
        if not starts:
            raise InvalidForecastError(f"{where} has no points; check the source's time range and zone")
        if len(starts) != len(values):
            raise InvalidForecastError(f"{where} has {len(starts)} times but {len(values)} values")
        if not all(map(operator.lt, starts, starts[1:])):
            for earlier, later in pairwise(starts):
                if not later > earlier:
                    raise InvalidForecastError(
                        f"{where} is not strictly increasing in time at {_iso(later)}; "
                        "sort the points and drop duplicate timestamps"
                    )
        if not self.end_s > starts[-1]:
            raise InvalidForecastError(f"{where} ends at {_iso(self.end_s)}, not after its last point")
        limit = MAX_PLAUSIBLE_PRICE_PER_MWH
        if not (math.isfinite(sum(values)) and -limit <= min(values) and max(values) <= limit):
            for start, value in zip(starts, values, strict=True):
                if not (math.isfinite(value) and -limit <= value <= limit):
                    raise InvalidForecastError(
                        f"{where} has price {value!r} at {_iso(start)}; values must be finite {self.currency}/MWh "
                        f"within +/-{limit:g} (fill or drop missing hours; check the unit: per kWh or cents?)"
                    )
        steps = map(operator.mul, values, map(operator.sub, starts[1:], starts))
        object.__setattr__(self, "_cumulative", tuple(accumulate(steps, initial=0.0)))

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
        if resolution is not None:
            step = resolution.total_seconds()
            if step <= 0:
                raise ConfigurationError(f"resolution must be positive, got {resolution}")
        elif len(starts) >= 2:
            step = starts[-1] - starts[-2]
        else:
            raise InvalidForecastError(
                f"price forecast for zone {zone!r} has a single point; pass resolution= to say how long it holds"
            )
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

    @property
    def start(self) -> datetime:
        """When the first point starts (UTC)."""
        return datetime.fromtimestamp(self.starts_s[0], UTC)

    @property
    def end(self) -> datetime:
        """When the last point stops holding (UTC)."""
        return datetime.fromtimestamp(self.end_s, UTC)

    def points(self) -> list[tuple[datetime, float]]:
        """The points as ``(UTC datetime, currency/MWh)`` pairs."""
        return [(datetime.fromtimestamp(s, UTC), v) for s, v in zip(self.starts_s, self.values, strict=True)]

    def covers(self, start_s: float, end_s: float) -> bool:
        """Whether the interval ``[start_s, end_s]`` (epoch seconds) lies inside the forecast."""
        return self.starts_s[0] <= start_s and end_s <= self.end_s

    def integral_to(self, t_s: float) -> float:
        """The integral of price from the first point to ``t_s`` (currency/MWh x s); t_s must be covered."""
        i = bisect_right(self.starts_s, t_s) - 1
        return self._cumulative[i] + self.values[i] * (t_s - self.starts_s[i])

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


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()
