"""The three-number search: a policy with a cost ceiling, a cost objective or a carbon price judges windows on price too.

Price and intensity are both piecewise constant, so a window's mean of either (and of any weighted
sum of the two) is linear between the starts where the window meets a slot boundary of one of them:
those starts are the only candidates, as in :mod:`carbon_sensors.planning.search`. A price is only
ever compared with another price of the same currency; intensity and price are never added up
unless the policy names a carbon price to convert one into the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from carbon_sensors.errors import ConfigurationError
from carbon_sensors.forecast import Forecast
from carbon_sensors.planning.search import Candidate, Problem, Why, Window, _candidates, _saving
from carbon_sensors.prices import PriceForecast

__all__ = ["PricedCandidate", "match_prices", "price_figures", "search_priced"]

_TOLERANCE = 1e-9
#: Prices within a millionth of the cost ceiling (per MWh, or relative above 1) are within it: a price that
#: differs from the ceiling by float noise must not decide between windows.
_PRICE_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class PricedCandidate:
    """A price-aware :class:`Candidate` and what the reason needs to say about cost.

    ``price_now``: the home zone's mean price started now. ``cap``: the highest mean price the
    cost ceiling allows. ``cleanest``: the cleanest window of all, when the ceiling ruled it out,
    with its mean price. ``over_ceiling``: no window stays under ``max_intensity``, so the cleanest
    was taken. ``priced_until``: the end of the shortest price forecast, when it ends before the
    horizon (later windows cannot be costed, so they are not candidates). ``baseline``: the price
    the ceiling was measured against, where it was not now's (a gate's, at submission).
    ``over_budget``: no window stays within the ceiling, so the cheapest was taken.
    """

    candidate: Candidate
    price_now: float
    cap: float | None = None
    cleanest: Window | None = None
    cleanest_price: float | None = None
    over_ceiling: bool = False
    priced_until: float | None = None
    over_budget: bool = False
    baseline: float | None = None


def match_prices(zones: Sequence[Forecast], prices: PriceForecast | Sequence[PriceForecast] | None,
                 currency: str | None) -> tuple[PriceForecast | None, ...]:
    """The price forecast of each allowed zone (None where there is none), matched by zone name.

    Every price must be in one currency, the policy's where it names one: prices are never converted.
    """
    given = () if prices is None else (prices,) if isinstance(prices, PriceForecast) else tuple(prices)
    by_zone: dict[str, PriceForecast] = {}
    for price in given:
        if not isinstance(price, PriceForecast):
            raise ConfigurationError(f"prices must be PriceForecast objects, got {type(price).__name__}")
        if price.zone in by_zone:
            raise ConfigurationError(f"two price forecasts for zone {price.zone!r}; pass one per zone")
        by_zone[price.zone] = price
    currencies = {p.currency for p in by_zone.values()}
    if currency is not None and currencies - {currency}:
        raise ConfigurationError(
            f"the policy's prices are in {currency} but the price forecast is in {', '.join(sorted(currencies))}; "
            "prices are never converted: use a price source quoting that currency, or change the policy's currency"
        )
    if len(currencies) > 1:
        raise ConfigurationError(
            f"the allowed zones' prices are in {', '.join(sorted(currencies))}; prices are never converted, so "
            "every zone's price source must quote one currency"
        )
    return tuple(by_zone.get(z.zone) for z in zones)


def price_figures(problem: Problem, prices: Sequence[PriceForecast | None], window: Window) -> float | None:
    """The mean price of ``window`` (None where its zone has no price forecast covering it)."""
    price = prices[window.zone]
    if price is None:
        return None
    end_s = window.start_s + problem.expected_duration.total_seconds()
    return price.mean_between(window.start_s, end_s) if price.covers(window.start_s, end_s) else None


def search_priced(problem: Problem, prices: Sequence[PriceForecast | None],
                  baseline: float | None = None) -> PricedCandidate:
    """The best window for a policy that uses prices; the home zone's prices must cover starting now.

    ``baseline``: the price the cost ceiling is measured against (default: starting now). A gate
    passes its price at submission, so that re-plans do not drift from the budget it started with;
    starting now then qualifies only if it is within budget too. Only called before the horizon
    (the deadline and ``max_delay`` cases are the carbon search's).
    """
    policy, zones = problem.policy, problem.zones
    now_s, dur_s, horizon_s = problem.now.timestamp(), problem.expected_duration.total_seconds(), problem.horizon.timestamp()
    home_price = prices[0]
    assert home_price is not None and home_price.covers(now_s, now_s + dur_s)
    carbon_now = zones[0].mean_between(now_s, now_s + dur_s)
    price_now = home_price.mean_between(now_s, now_s + dur_s)
    base = price_now if baseline is None else baseline
    cap = None if policy.max_cost_increase_pct is None else base + abs(base) * policy.max_cost_increase_pct / 100
    per_kg = None if policy.carbon_price_per_tonne is None else policy.carbon_price_per_tonne / 1000.0
    by_cost = policy.objective == "cost"

    def score(carbon: float, price: float) -> float:
        if per_kg is not None:
            return price + carbon * per_kg  # g/kWh is kg/MWh
        return price if by_cost else carbon

    def eligible(carbon: float, price: float) -> bool:
        if cap is not None and price > cap + _PRICE_TOLERANCE * max(1.0, abs(cap)):
            return False
        return policy.max_intensity is None or carbon <= policy.max_intensity * (1 + _TOLERANCE) + _TOLERANCE

    if policy.threshold is not None and carbon_now <= policy.threshold * (1 + _TOLERANCE) + _TOLERANCE:
        return PricedCandidate(Candidate(Why.UNDER_THRESHOLD, Window(carbon_now, now_s, 0), 0.0, carbon_now), price_now)

    best = best_now = cleanest = cleanest_in_budget = cheapest = None  # (score, start, zone, carbon, price)
    priced_until = None
    for zi, (forecast, price) in enumerate(zip(zones, prices, strict=True)):
        if price is None:
            continue
        if price.end_s < horizon_s + dur_s:
            priced_until = price.end_s if priced_until is None else min(priced_until, price.end_s)
        starts = sorted(set(_candidates(forecast, now_s, horizon_s, dur_s)) | set(_candidates(price, now_s, horizon_s, dur_s)))
        for start_s in starts:
            end_s = start_s + dur_s
            if not (forecast.covers(start_s, end_s) and price.covers(start_s, end_s)):
                continue
            c, p = forecast.mean_between(start_s, end_s), price.mean_between(start_s, end_s)
            option = (score(c, p), start_s, zi, c, p)
            if cleanest is None or _better((c, start_s, zi), (cleanest[3], cleanest[1], cleanest[2])):
                cleanest = option
            if cheapest is None or _better((p, start_s, zi), (cheapest[4], cheapest[1], cheapest[2])):
                cheapest = option
            if (cap is None or p <= cap + _PRICE_TOLERANCE * max(1.0, abs(cap))) and (
                    cleanest_in_budget is None
                    or _better((c, start_s, zi), (cleanest_in_budget[3], cleanest_in_budget[1], cleanest_in_budget[2]))):
                cleanest_in_budget = option
            if not eligible(c, p):
                continue
            if best is None or _better(option, best):
                best = option
            if start_s == now_s and (best_now is None or _better(option, best_now)):
                best_now = option
    assert cleanest is not None and cheapest is not None  # the home zone, now, is always covered
    over_budget = cleanest_in_budget is None
    over_ceiling = best is None and not over_budget
    why = _wait_reason(policy)
    if over_budget:  # no window stays within the cost ceiling (anchored at submission): the cheapest
        best, best_now, why = (cheapest[4], *cheapest[1:]), (price_now, now_s, 0, carbon_now, price_now), Why.CHEAPEST_WINDOW
    elif over_ceiling:  # no window stays under max_intensity: the cleanest one the cost ceiling allows
        best, best_now, why = ((cleanest_in_budget[3], *cleanest_in_budget[1:]), (carbon_now, now_s, 0, carbon_now, price_now),
                               Why.CLEANEST_WINDOW)
    target = best
    if target[1] != now_s and best_now is not None:
        gain = _gain(best_now[0], target[0])
        if gain < policy.min_saving_pct:
            if best_now[2] == 0:
                home_now = Window(carbon_now, now_s, 0)
                return PricedCandidate(
                    Candidate(Why.SAVING_TOO_SMALL, home_now, 0.0, carbon_now, best_now=_window(best_now),
                              passed_up=_window(target), passed_up_saving_pct=gain),
                    price_now, cap, priced_until=priced_until, baseline=baseline)
            target = best_now
    ruled_out = cleanest if cap is not None and cleanest[4] > cap + _PRICE_TOLERANCE * max(1.0, abs(cap)) else None
    extra = dict(cap=cap, cleanest=None if ruled_out is None else _window(ruled_out),
                 cleanest_price=None if ruled_out is None else ruled_out[4], over_ceiling=over_ceiling,
                 priced_until=priced_until, over_budget=over_budget, baseline=baseline)
    chosen = _window(target)
    if target[1] == now_s:
        why_now = Why.NO_BETTER_WINDOW if target[2] == 0 else Why.CLEANER_ZONE_NOW
        return PricedCandidate(Candidate(why_now, chosen, _saving(carbon_now, chosen.mean), carbon_now),
                               price_now, **extra)
    versus = best_now if best_now is not None else (None, now_s, 0, carbon_now, price_now)
    return PricedCandidate(
        Candidate(why, chosen, _saving(versus[3], chosen.mean), carbon_now, best_now=Window(versus[3], now_s, versus[2])),
        price_now, **extra)


def _wait_reason(policy) -> Why:
    if policy.carbon_price_per_tonne is not None:
        return Why.LOWEST_CARBON_PRICED
    return Why.CHEAPEST_WINDOW if policy.objective == "cost" else Why.CLEANEST_WITHIN_BUDGET


def _window(option: tuple[float, float, int, float, float]) -> Window:
    return Window(option[3], option[1], option[2])


def _better(cand: tuple, best: tuple) -> bool:
    """Lower first figure wins; near-ties (float noise) go to the earlier start, then to the home zone."""
    tolerance = _TOLERANCE * max(1.0, abs(best[0]))
    if cand[0] < best[0] - tolerance:
        return True
    return abs(cand[0] - best[0]) <= tolerance and (cand[1], cand[2]) < (best[1], best[2])


def _gain(now: float, later: float) -> float:
    """How much lower ``later`` is than ``now``, in percent of ``now``'s size (prices may be zero or negative)."""
    if later >= now:
        return 0.0
    return (now - later) / abs(now) * 100.0 if now else float("inf")
