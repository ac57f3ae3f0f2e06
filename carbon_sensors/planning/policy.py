"""What a job accepts while it waits (``Policy``), and the latest start that still meets its deadline."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from carbon_sensors.errors import ConfigurationError
from carbon_sensors.prices import check_currency
from carbon_sensors.timeutil import as_utc

__all__ = ["DEFAULT_MARGIN_FLOOR", "DEFAULT_MARGIN_SHARE", "DEFAULT_MIN_SAVING_PCT", "LATEST_START_TOLERANCE", "OBJECTIVES",
           "Policy", "latest_start"]

#: Waiting is only worth it when it saves at least this share of the job's carbon.
DEFAULT_MIN_SAVING_PCT = 3.0
#: Default safety margin: this share of the expected duration, but never less than the floor.
DEFAULT_MARGIN_SHARE = 0.10
DEFAULT_MARGIN_FLOOR = timedelta(minutes=5)
#: A waiting job wakes a moment after its latest start; up to this late it is "latest start reached",
#: later than that the deadline is "at risk".
LATEST_START_TOLERANCE = timedelta(minutes=1)
#: What a policy minimises: the window's carbon intensity, or its energy price.
OBJECTIVES = ("carbon", "cost")
#: The price settings, written by ``to_dict`` only when set (plans and triggers without them stay as they were).
_PRICE_SETTINGS = ("max_cost_increase_pct", "objective", "max_intensity", "carbon_price_per_tonne", "currency")


@dataclass(frozen=True, slots=True)
class Policy:
    """What a job will accept while it waits for a cleaner window.

    - ``max_delay``: never plan a start later than this after submission.
    - ``threshold``: start as soon as a window's mean intensity is at or below this (gCO2eq/kWh).
    - ``min_saving_pct``: only wait when the saving is at least this percentage.
    - ``safety_margin``: kept free before the deadline; default 10 % of the duration, at least 5 min.

    The cost ceiling (these need a price forecast; without one the plan is carbon-only and says so):

    - ``max_cost_increase_pct``: only windows whose expected price is at most this much above
      starting now (0: no dearer than now; -10: at least 10 % cheaper); starting now always qualifies.
    - ``objective``: what the window minimises, ``"carbon"`` (the default) or ``"cost"``.
    - ``max_intensity``: the carbon ceiling of a cost policy: only windows whose mean intensity stays
      at or below it (gCO2eq/kWh); where none does, the cleanest window, and the plan says so.
    - ``carbon_price_per_tonne``: one internal carbon price folding both into one figure per MWh,
      ``price + intensity x carbon_price_per_tonne / 1000``, minimised instead.
    - ``currency``: the prices' currency (ISO 4217); a price forecast in another one is refused.

    ``min_saving_pct`` is the reduction target on the figure the policy minimises (carbon, cost,
    or the folded figure). ``threshold`` still starts the job at once when now is under it.

    ``persistence_prior``: where the gate's source serves measured history, blend each forecast hour
    with the value measured one to three days before it, weighted by how wrong each has been
    (:mod:`carbon_sensors.planning.prior`); False plans on the forecast as it is.

    >>> Policy(max_delay=timedelta(hours=6), threshold=150).min_saving_pct
    3.0
    >>> Policy(max_cost_increase_pct=10).uses_prices
    True
    """

    max_delay: timedelta | None = None
    threshold: float | None = None
    min_saving_pct: float = DEFAULT_MIN_SAVING_PCT
    safety_margin: timedelta | None = None
    max_cost_increase_pct: float | None = None
    objective: str = "carbon"
    max_intensity: float | None = None
    carbon_price_per_tonne: float | None = None
    currency: str | None = None
    persistence_prior: bool = True

    def __post_init__(self) -> None:
        if self.max_delay is not None and (not isinstance(self.max_delay, timedelta) or self.max_delay < timedelta(0)):
            raise ConfigurationError(f"max_delay must be a non-negative timedelta, got {self.max_delay!r}")
        if self.threshold is not None and not (isinstance(self.threshold, int | float) and 0 <= self.threshold < math.inf):
            raise ConfigurationError(f"threshold must be a non-negative number of gCO2eq/kWh, got {self.threshold!r}")
        if not (isinstance(self.min_saving_pct, int | float) and 0 <= self.min_saving_pct < 100):
            raise ConfigurationError(f"min_saving_pct must be in [0, 100), got {self.min_saving_pct!r}")
        if self.safety_margin is not None and (
            not isinstance(self.safety_margin, timedelta) or self.safety_margin < timedelta(0)
        ):
            raise ConfigurationError(f"safety_margin must be a non-negative timedelta, got {self.safety_margin!r}")
        if not isinstance(self.persistence_prior, bool):
            raise ConfigurationError(f"persistence_prior must be True or False, got {self.persistence_prior!r}")
        self._check_price_settings()

    def _check_price_settings(self) -> None:
        def number(name: str, low: float) -> None:
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and not isinstance(value, bool)
                                          and low <= value < math.inf):
                raise ConfigurationError(f"{name} must be a number >= {low:g}, got {value!r}")

        number("max_cost_increase_pct", -100.0)
        number("max_intensity", 0.0)
        number("carbon_price_per_tonne", 0.0)
        if self.objective not in OBJECTIVES:
            raise ConfigurationError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.currency is not None:
            check_currency(self.currency)

    @property
    def uses_prices(self) -> bool:
        """Whether the policy needs a price forecast: a cost cap, a cost objective or a carbon price."""
        return (self.max_cost_increase_pct is not None or self.objective == "cost"
                or self.carbon_price_per_tonne is not None)

    def carbon_only(self) -> Policy:
        """This policy without its cost settings: what a plan falls back to when no price is known."""
        return Policy(max_delay=self.max_delay, threshold=self.threshold, min_saving_pct=self.min_saving_pct,
                      safety_margin=self.safety_margin, persistence_prior=self.persistence_prior)

    def margin_for(self, expected_duration: timedelta) -> timedelta:
        """The safety margin kept before the deadline for a job of this duration."""
        if self.safety_margin is not None:
            return self.safety_margin
        return max(DEFAULT_MARGIN_FLOOR, expected_duration * DEFAULT_MARGIN_SHARE)

    def to_dict(self) -> dict[str, float | None]:
        """JSON-able form (durations in seconds), the inverse of :meth:`from_dict`."""
        return {
            "max_delay_s": None if self.max_delay is None else self.max_delay.total_seconds(),
            "threshold": self.threshold,
            "min_saving_pct": self.min_saving_pct,
            "safety_margin_s": None if self.safety_margin is None else self.safety_margin.total_seconds(),
        } | {name: getattr(self, name) for name in _OPTIONAL_SETTINGS if getattr(self, name) != _DEFAULTS[name]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        """Rebuild a policy written by :meth:`to_dict`; unknown keys are ignored for forward compatibility."""

        def span(key: str) -> timedelta | None:
            return None if data.get(key) is None else timedelta(seconds=float(data[key]))

        return cls(
            max_delay=span("max_delay_s"),
            threshold=data.get("threshold"),
            min_saving_pct=float(data.get("min_saving_pct", DEFAULT_MIN_SAVING_PCT)),
            safety_margin=span("safety_margin_s"),
            **{name: data[name] for name in _OPTIONAL_SETTINGS if data.get(name) is not None},
        )


_DEFAULTS = {"max_cost_increase_pct": None, "objective": "carbon", "max_intensity": None,
             "carbon_price_per_tonne": None, "currency": None, "persistence_prior": True}
#: Written by ``to_dict`` only when not the default, so plans and triggers without them stay as they were.
_OPTIONAL_SETTINGS = (*_PRICE_SETTINGS, "persistence_prior")


def latest_start(deadline: datetime, expected_duration: timedelta, policy: Policy | None = None) -> datetime:
    """``deadline - expected_duration - safety_margin``: the last start that still meets the deadline."""
    policy = policy or Policy()
    return as_utc(deadline, "deadline") - expected_duration - policy.margin_for(expected_duration)
