"""``plan()``: check the inputs, search for the candidate, and explain it as a :class:`~carbon_sensors.planning.Plan`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from carbon_sensors.errors import ConfigurationError, DeadlineError
from carbon_sensors.forecast import Forecast, common_signal
from carbon_sensors.planning.explain import Plan, explain, explain_priced
from carbon_sensors.planning.policy import Policy, latest_start
from carbon_sensors.planning.pricing import match_prices, search_priced
from carbon_sensors.planning.search import Problem, search
from carbon_sensors.planning.text import hm
from carbon_sensors.prices import PriceForecast
from carbon_sensors.timeutil import as_utc

__all__ = ["plan"]


def plan(
    forecasts: Forecast | Sequence[Forecast],
    *,
    now: datetime,
    deadline: datetime,
    expected_duration: timedelta,
    policy: Policy | None = None,
    submitted_at: datetime | None = None,
    prices: PriceForecast | Sequence[PriceForecast] | None = None,
    price_baseline: float | None = None,
) -> Plan:
    """Decide when and where to start a job of ``expected_duration`` that must finish by ``deadline``.

    ``forecasts``: one per allowed zone, the home zone first (spatial shifting happens only when
    the caller passes more than one). ``submitted_at`` anchors ``policy.max_delay`` (default ``now``).
    The planned start always lies in ``[now, latest_start]``; at the latest start (or up to
    ``LATEST_START_TOLERANCE`` after it) the plan says run now with ``latest_start_reached``; later
    than that, run now with ``deadline_at_risk``.

    ``prices``: price forecasts, matched to the zones by name. A policy with a cost setting
    (``Policy.uses_prices``) plans on them; any other reports the planned window's price beside its
    intensity. Where a cost setting finds no price covering now in the home zone, the plan is
    carbon-only and says so (``price_degraded``): a missing price never costs a deadline.
    ``price_baseline``: the price ``max_cost_increase_pct`` is measured against (default: starting
    now); a waiting gate passes its price at submission, so re-plans keep the budget it began with.
    """
    policy = policy or Policy()
    zones = (forecasts,) if isinstance(forecasts, Forecast) else tuple(forecasts)
    if not zones:
        raise ConfigurationError("plan() needs at least one forecast (one per allowed zone, home zone first)")
    signal = common_signal(zones)
    now = as_utc(now, "now")
    deadline = as_utc(deadline, "deadline")
    if not isinstance(expected_duration, timedelta) or expected_duration <= timedelta(0):
        raise DeadlineError(f"expected_duration must be a positive timedelta, got {expected_duration!r}")
    submitted_at = now if submitted_at is None else as_utc(submitted_at, "submitted_at")
    problem = Problem(zones=zones, signal=signal, now=now, deadline=deadline, expected_duration=expected_duration,
                      policy=policy, submitted_at=submitted_at, latest=latest_start(deadline, expected_duration, policy))
    if prices is None:
        return explain(problem, search(problem))
    priced = match_prices(zones, prices, policy.currency)
    home_price, now_s = priced[0], now.timestamp()
    covered = home_price is not None and home_price.covers(now_s, now_s + expected_duration.total_seconds())
    if not policy.uses_prices or problem.horizon <= now or problem.latest <= now:
        return explain_priced(problem, search(problem), priced)  # the deadline decides, or carbon alone does
    if not covered:
        why = ("no price forecast" if home_price is None else
               f"the price forecast ({hm(home_price.start)} to {hm(home_price.end)}) does not cover starting now")
        degraded = (f"Planned on carbon alone: {why} for {zones[0].zone}, so the policy's cost settings "
                    "could not be applied.")
        carbon_only = replace(problem, policy=policy.carbon_only())
        return explain_priced(carbon_only, search(carbon_only), priced, degraded=degraded)
    return explain_priced(problem, search_priced(problem, priced, price_baseline), priced)
