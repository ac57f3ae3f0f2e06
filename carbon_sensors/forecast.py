"""The ``Forecast`` model: piecewise-constant carbon intensity over time, and window means over it.

Each point holds from its start until the next point starts; the last point holds until ``end``.
Points may come at any resolution (5 min, 30 min, 1 h) and need not be evenly spaced.

>>> from datetime import datetime, timedelta, timezone
>>> t0 = datetime(2026, 6, 15, tzinfo=timezone.utc)
>>> f = Forecast.from_points([(t0, 300.0), (t0 + timedelta(hours=1), 100.0)], zone="DE",
...                          source="example", resolution=timedelta(hours=1))
>>> f.window_mean(t0 + timedelta(minutes=30), timedelta(hours=1))
200.0
"""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from carbon_sensors.errors import ConfigurationError, InvalidForecastError
from carbon_sensors.steps import StepSeries, check_steps, iso, last_step
from carbon_sensors.timeutil import as_utc

__all__ = ["MAX_PLAUSIBLE_G_PER_KWH", "SIGNALS", "Forecast", "Signal"]

Signal = Literal["average", "marginal"]
SIGNALS: tuple[str, ...] = ("average", "marginal")

#: The dirtiest real grids average under 1,100 gCO2eq/kWh; anything above this is a unit or data error.
MAX_PLAUSIBLE_G_PER_KWH = 2000.0


@dataclass(frozen=True, slots=True)
class Forecast(StepSeries):
    """Carbon intensity (gCO2eq/kWh) for one zone from one source, as UTC epoch-second slots.

    Build it with :meth:`from_points`; the constructor validates whatever it is given.
    ``measured_until``: points that start before it are measurements, the rest are forecasts.
    ``error_24h``: the forecast's typical relative error (1 sigma) 24 h after ``issued_at``, growing
    with the square root of the horizon; 0 for measurements and perfect knowledge. The
    planner's gate corrects near-term points by the error the source is making now
    (see :mod:`carbon_sensors.correction`).
    ``recent_error``: where the source knows it (e.g. an API that returns forecast and actual for
    recent slots), the relative error its forecast made for the current slot when issued
    ``recent_error_lead_h`` hours ahead: ``forecast / actual - 1``.
    """

    zone: str
    source: str
    signal: Signal
    issued_at: datetime
    starts_s: tuple[float, ...]
    values: tuple[float, ...]
    end_s: float
    measured_until: datetime | None = None
    error_24h: float = 0.0
    recent_error: float | None = None
    recent_error_lead_h: float = 1.0
    _cumulative: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.signal not in SIGNALS:
            raise ConfigurationError(f"signal must be 'average' or 'marginal', got {self.signal!r}")
        object.__setattr__(self, "issued_at", as_utc(self.issued_at, "forecast issued_at"))
        if self.measured_until is not None:
            object.__setattr__(self, "measured_until", as_utc(self.measured_until, "forecast measured_until"))
        where = f"forecast for zone {self.zone!r} from {self.source!r}"
        if not (isinstance(self.error_24h, int | float) and 0.0 <= self.error_24h < 10.0):
            raise ConfigurationError(f"error_24h must be a relative error such as 0.1, got {self.error_24h!r}")
        if self.recent_error is not None and not (math.isfinite(self.recent_error) and self.recent_error > -1.0):
            raise InvalidForecastError(f"recent_error must be a finite relative error above -1, got {self.recent_error!r}")
        if not self.recent_error_lead_h > 0:
            raise ConfigurationError(f"recent_error_lead_h must be positive, got {self.recent_error_lead_h!r}")
        starts, values = self.starts_s, self.values
        cumulative = check_steps(where, starts, values, self.end_s)
        # A NaN or an infinity makes the sum non-finite, whatever min() and max() say.
        if not (math.isfinite(sum(values)) and 0.0 <= min(values) and max(values) <= MAX_PLAUSIBLE_G_PER_KWH):
            for start, value in zip(starts, values, strict=True):
                if not (math.isfinite(value) and 0.0 <= value <= MAX_PLAUSIBLE_G_PER_KWH):
                    raise InvalidForecastError(
                        f"{where} has intensity {value!r} at {iso(start)}; values must be finite and within "
                        f"0..{MAX_PLAUSIBLE_G_PER_KWH:g} gCO2eq/kWh (check the source's unit: lbs/MWh or kg/kWh?)"
                    )
        object.__setattr__(self, "_cumulative", cumulative)

    @classmethod
    def from_points(
        cls,
        points: Iterable[tuple[datetime, float]],
        *,
        zone: str,
        source: str,
        signal: Signal = "average",
        issued_at: datetime | None = None,
        resolution: timedelta | None = None,
        measured_until: datetime | None = None,
        error_24h: float = 0.0,
        recent_error: float | None = None,
        recent_error_lead_h: float = 1.0,
    ) -> Forecast:
        """Build a forecast from ``(aware datetime, gCO2eq/kWh)`` pairs in time order.

        ``resolution`` is how long the last point holds; by default, the step before it.
        ``issued_at`` defaults to the first point's time.
        """
        pairs = [(as_utc(t, "forecast point time").timestamp(), float(v)) for t, v in points]
        if not pairs:
            raise InvalidForecastError(f"forecast for zone {zone!r} from {source!r} has no points")
        starts = tuple(p[0] for p in pairs)
        step = last_step(f"forecast for zone {zone!r}", starts, resolution)
        return cls(
            zone=zone,
            source=source,
            signal=signal,
            issued_at=issued_at if issued_at is not None else datetime.fromtimestamp(starts[0], UTC),
            starts_s=starts,
            values=tuple(p[1] for p in pairs),
            end_s=starts[-1] + step,
            measured_until=measured_until,
            error_24h=error_24h,
            recent_error=recent_error,
            recent_error_lead_h=recent_error_lead_h,
        )

    def slice_points(self, lo: int, hi: int, *, measured_until: datetime | None = None) -> Forecast:
        """Points ``lo:hi`` as a Forecast of their own, ending where point ``hi`` starts (at ``end_s`` for the last).

        The points were checked when this forecast was built, so they are not checked again: a
        backtest slices a three-year trace every simulated hour.

        >>> from datetime import datetime, timedelta, timezone
        >>> t0 = datetime(2026, 6, 15, tzinfo=timezone.utc)
        >>> f = Forecast.from_points([(t0 + timedelta(hours=h), 100.0 * (h + 1)) for h in range(4)], zone="DE",
        ...                          source="example", resolution=timedelta(hours=1))
        >>> part = f.slice_points(1, 3)
        >>> part.values, part.window_mean(t0 + timedelta(hours=1), timedelta(hours=2))
        ((200.0, 300.0), 250.0)
        """
        n = len(self.starts_s)
        if not 0 <= lo < hi <= n:
            raise ValueError(f"slice {lo}:{hi} is not within the forecast's {n} points")
        part = object.__new__(Forecast)
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "_cumulative"}
        fields.update(starts_s=self.starts_s[lo:hi], values=self.values[lo:hi],
                      end_s=self.starts_s[hi] if hi < n else self.end_s,
                      measured_until=as_utc(measured_until, "measured_until") if measured_until else self.measured_until)
        base = self._cumulative[lo]
        fields["_cumulative"] = tuple(c - base for c in self._cumulative[lo:hi])
        for name, value in fields.items():
            object.__setattr__(part, name, value)
        return part

    def mean_between(self, start_s: float, end_s: float) -> float:
        """Time-weighted mean intensity over ``[start_s, end_s]`` (epoch seconds), clipped to coverage."""
        lo, hi = max(start_s, self.starts_s[0]), min(end_s, self.end_s)
        if hi <= lo:
            return self.values[bisect_right(self.starts_s, lo) - 1] if lo == hi and self.covers(lo, lo) else math.nan
        return (self.integral_to(hi) - self.integral_to(lo)) / (hi - lo)

    def window_mean(self, start: datetime, duration: timedelta) -> float:
        """Duration-weighted mean intensity of a job running ``duration`` from ``start``."""
        s = as_utc(start, "window start").timestamp()
        return self.mean_between(s, s + duration.total_seconds())

    def value_at(self, moment: datetime) -> float:
        """The intensity that holds at ``moment`` (NaN outside the forecast)."""
        s = as_utc(moment, "moment").timestamp()
        if not self.covers(s, s) or s == self.end_s:
            return math.nan
        return self.values[bisect_right(self.starts_s, s) - 1]


def common_signal(forecasts: Sequence[Forecast]) -> Signal:
    """The one signal all ``forecasts`` share; refuse to mix average with marginal."""
    from carbon_sensors.errors import SignalMismatchError

    kinds = {f.signal for f in forecasts}
    if len(kinds) > 1:
        listing = ", ".join(f"{f.zone}={f.signal} ({f.source})" for f in forecasts)
        raise SignalMismatchError(
            f"cannot compare average with marginal intensities ({listing}); "
            "configure every zone's source with the same signal"
        )
    return forecasts[0].signal
