"""The explanation: a :class:`~carbon_sensors.planning.search.Candidate` becomes a :class:`Plan` that says why in words."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from carbon_sensors.forecast import Signal
from carbon_sensors.planning.pricing import PricedCandidate, price_figures
from carbon_sensors.planning.search import WAITS, Candidate, Problem, Why, Window
from carbon_sensors.planning.text import hm, span
from carbon_sensors.prices import PriceForecast

__all__ = ["Plan", "explain", "explain_priced", "reason"]


@dataclass(frozen=True, slots=True)
class Plan:
    """A decision that explains itself.

    ``decision`` is ``run_now`` or ``wait``; ``planned_start`` and ``zone`` say when and where.
    Intensities are window means in gCO2eq/kWh of ``signal`` (never mixed); ``intensity_now`` is
    the home zone's (first zone's) window if started now. ``intensity_best_now`` and
    ``best_now_zone`` are the cleanest start-now option in any allowed zone: a plan that waits
    measures ``expected_saving_pct`` against it; one that starts now in another zone, against the
    home zone. ``latest_start_reached`` and ``deadline_at_risk`` mean the deadline, not the
    forecast, decided.

    Where the planner was given prices, ``price_now`` and ``price_planned`` are the same windows'
    mean prices in ``price_currency`` per MWh from ``price_source`` (never mixed with intensity),
    and :attr:`cost_change_pct` compares them. ``price_degraded``: the policy asked for prices but
    none covered now, so the plan is carbon-only (its reason says so).
    """

    decision: Literal["run_now", "wait"]
    planned_start: datetime
    zone: str
    latest_start: datetime
    deadline: datetime
    intensity_now: float | None
    intensity_planned: float | None
    expected_saving_pct: float
    signal: Signal
    source: str
    reason: str
    latest_start_reached: bool = False
    deadline_at_risk: bool = False
    intensity_best_now: float | None = None
    best_now_zone: str | None = None
    price_now: float | None = None
    price_planned: float | None = None
    price_currency: str | None = None
    price_source: str | None = None
    price_degraded: bool = False

    @property
    def cost_change_pct(self) -> float | None:
        """How much dearer (positive) or cheaper (negative) the planned window's price is than now's, in percent."""
        return _change_pct(self.price_now, self.price_planned)

    @property
    def forced(self) -> bool:
        """True when the job starts because of its deadline rather than the forecast."""
        return self.latest_start_reached or self.deadline_at_risk

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form in the decision's vocabulary (README, "The decision"), old names kept as aliases.

        ``status`` (``wait``, ``go`` or ``forced``), ``intensity``, ``intensity_at_submission`` and
        ``saving_pct`` are the names the XCom decision uses; ``decision``, ``intensity_planned``,
        ``intensity_now`` and ``expected_saving_pct`` stay for one release.
        """
        out = asdict(self)
        for key in ("planned_start", "latest_start", "deadline"):
            out[key] = out[key].isoformat()
        for key in ("intensity_now", "intensity_planned", "intensity_best_now"):
            out[key] = None if out[key] is None else round(out[key], 3)
        out["expected_saving_pct"] = round(self.expected_saving_pct, 3)
        out["forced"] = self.forced
        status = "wait" if self.decision == "wait" else "forced" if self.forced else "go"
        return {
            "status": status, "reason": self.reason, "zone": self.zone, "planned_start": out["planned_start"],
            "latest_start": out["latest_start"], "deadline": out["deadline"],
            "intensity": out["intensity_planned"], "intensity_at_submission": out["intensity_now"],
            "saving_pct": out["expected_saving_pct"], "signal": self.signal, "source": self.source,
            "forced": self.forced,
            "forced_reason": ("deadline_at_risk" if self.deadline_at_risk
                              else "latest_start" if self.latest_start_reached else None),
            "best_now_zone": self.best_now_zone, "intensity_best_now": out["intensity_best_now"],
            "latest_start_reached": self.latest_start_reached, "deadline_at_risk": self.deadline_at_risk,
            # Deprecated aliases, kept for one release.
            "decision": self.decision, "intensity_planned": out["intensity_planned"],
            "intensity_now": out["intensity_now"], "expected_saving_pct": out["expected_saving_pct"],
        } | self._price_dict()

    def _price_dict(self) -> dict[str, Any]:
        """The price figures, only where the planner was given prices (plans without them keep their form)."""
        if self.price_currency is None and not self.price_degraded:
            return {}
        change = self.cost_change_pct
        return {
            "price": None if self.price_planned is None else round(self.price_planned, 4),
            "price_at_submission": None if self.price_now is None else round(self.price_now, 4),
            "cost_change_pct": None if change is None else round(change, 3),
            "price_currency": self.price_currency, "price_source": self.price_source,
            "price_degraded": self.price_degraded,
        }


def explain(problem: Problem, candidate: Candidate) -> Plan:
    """The plan for ``candidate``: when and where to start, the figures, and the reason in words."""
    why, chosen = candidate.why, candidate.chosen
    forecast = problem.zones[chosen.zone]
    text = reason(problem, candidate)
    if why in WAITS:
        best_now = candidate.best_now
        return Plan(
            decision="wait", planned_start=_moment(chosen), zone=forecast.zone, latest_start=problem.latest,
            deadline=problem.deadline, intensity_now=candidate.now_mean, intensity_planned=chosen.mean,
            expected_saving_pct=candidate.saving_pct, signal=problem.signal, source=forecast.source, reason=text,
            intensity_best_now=best_now.mean, best_now_zone=problem.zones[best_now.zone].zone,
        )
    return Plan(
        decision="run_now", planned_start=problem.now, zone=forecast.zone, latest_start=problem.latest,
        deadline=problem.deadline, intensity_now=candidate.now_mean, intensity_planned=chosen.mean,
        expected_saving_pct=candidate.saving_pct, signal=problem.signal, source=forecast.source, reason=text,
        latest_start_reached=why is Why.LATEST_START_REACHED, deadline_at_risk=why is Why.DEADLINE_AT_RISK,
    )


def reason(problem: Problem, candidate: Candidate) -> str:
    """Why the plan is what it is, in one or two sentences with the figures behind it."""
    return _REASONS[candidate.why](problem, candidate)


def _deadline_at_risk(problem: Problem, c: Candidate) -> str:
    latest, duration = problem.latest, problem.expected_duration
    return (
        f"Starting now, deadline at risk: the latest start {hm(latest)} passed {span(problem.now - latest)} ago "
        f"(deadline {hm(problem.deadline)}, expected duration {span(duration)}, "
        f"safety margin {span(problem.policy.margin_for(duration))})."
    )


def _latest_start_reached(problem: Problem, c: Candidate) -> str:
    return (f"Starting now: the latest start {hm(problem.latest)} has been reached; the deadline "
            f"{hm(problem.deadline)} wins over the forecast.")


def _max_delay_passed(problem: Problem, c: Candidate) -> str:
    return f"Starting now: the maximum delay of {span(problem.policy.max_delay)} since submission has passed."


def _under_threshold(problem: Problem, c: Candidate) -> str:
    return (f"Running now in {problem.zones[0].zone}: the next {span(problem.expected_duration)} average "
            f"{c.now_mean:.0f} g/kWh, at or below the {problem.policy.threshold:g} g/kWh threshold.")


def _saving_too_small(problem: Problem, c: Candidate) -> str:
    passed_up = c.passed_up
    return (
        f"Running now in {problem.zones[0].zone}: waiting until {hm(_moment(passed_up))}{_where(problem, passed_up)} "
        f"({passed_up.mean:.0f} g/kWh vs {c.now_mean:.0f} now) would save only {c.passed_up_saving_pct:.1f}%, "
        f"below the {problem.policy.min_saving_pct:g}% worth waiting for."
    )


def _no_better_window(problem: Problem, c: Candidate) -> str:
    return (f"Running now in {problem.zones[0].zone}: the next {span(problem.expected_duration)} ({c.now_mean:.0f} g/kWh) "
            f"are already the cleanest window before {hm(problem.horizon)}.")


def _cleaner_zone_now(problem: Problem, c: Candidate) -> str:
    return (f"Running now in {problem.zones[c.chosen.zone].zone} instead of {problem.zones[0].zone}: "
            f"{c.chosen.mean:.0f} g/kWh vs {c.now_mean:.0f}, {c.saving_pct:.0f}% less.")


def _waiting(problem: Problem, c: Candidate) -> str:
    why = (f"at or below the {problem.policy.threshold:g} g/kWh threshold" if c.why is Why.THRESHOLD_WINDOW
           else "the cleanest window")
    return (
        f"Waiting until {hm(_moment(c.chosen))}{_where(problem, c.chosen)}: the {span(problem.expected_duration)} "
        f"window then averages {c.chosen.mean:.0f} g/kWh vs {_versus(problem, c)}, {c.saving_pct:.0f}% less ({why}); "
        f"latest start {hm(problem.latest)}."
    )


def _versus(problem: Problem, c: Candidate) -> str:
    """What a wait beats: the best start-now option, named with its zone where there are several."""
    home, best_now = problem.zones[0].zone, c.best_now
    best_now_zone = problem.zones[best_now.zone].zone
    if len(problem.zones) == 1:
        return f"{best_now.mean:.0f} now"
    if best_now_zone == home:
        return f"{best_now.mean:.0f} starting now in {home}"
    return f"{best_now.mean:.0f} starting now in {best_now_zone} ({c.now_mean:.0f} in {home})"


def _where(problem: Problem, window: Window) -> str:
    """`` in <zone>`` where several zones are allowed, else nothing."""
    return f" in {problem.zones[window.zone].zone}" if len(problem.zones) > 1 else ""


def _moment(window: Window) -> datetime:
    return datetime.fromtimestamp(window.start_s, UTC)


#: One writer for each reason the search gives.
_REASONS: dict[Why, Callable[[Problem, Candidate], str]] = {
    Why.DEADLINE_AT_RISK: _deadline_at_risk,
    Why.LATEST_START_REACHED: _latest_start_reached,
    Why.MAX_DELAY_PASSED: _max_delay_passed,
    Why.UNDER_THRESHOLD: _under_threshold,
    Why.SAVING_TOO_SMALL: _saving_too_small,
    Why.NO_BETTER_WINDOW: _no_better_window,
    Why.CLEANER_ZONE_NOW: _cleaner_zone_now,
    Why.CLEANEST_WINDOW: _waiting,
    Why.THRESHOLD_WINDOW: _waiting,
    Why.CLEANEST_WITHIN_BUDGET: _waiting,  # the priced reasons are written by explain_priced
    Why.CHEAPEST_WINDOW: _waiting,
    Why.LOWEST_CARBON_PRICED: _waiting,
}


def explain_priced(problem: Problem, candidate: Candidate | PricedCandidate, prices: Sequence[PriceForecast | None],
                   degraded: str | None = None) -> Plan:
    """The plan for a job planned with prices: the carbon plan's figures, the prices of the same
    windows, and a reason that gives both ("7% cleaner and 12% cheaper than now").

    ``candidate``: a :class:`PricedCandidate` where the policy used the prices, or the carbon
    search's :class:`Candidate` where it did not (the prices are then only reported). ``degraded``:
    why a policy that needed prices was planned on carbon alone.
    """
    priced = candidate if isinstance(candidate, PricedCandidate) else None
    carbon = priced.candidate if priced else candidate
    base = explain(problem, carbon)
    chosen = carbon.chosen if carbon.why in WAITS else Window(carbon.chosen.mean, problem.now.timestamp(), carbon.chosen.zone)
    home_now = Window(carbon.now_mean, problem.now.timestamp(), 0)
    price_now = price_figures(problem, prices, home_now)
    price_planned = price_figures(problem, prices, chosen)
    home_price = prices[0] if prices else None
    currency = next((p.currency for p in prices if p is not None), None)
    if priced is None or carbon.why is Why.UNDER_THRESHOLD:
        text = base.reason
    else:
        text = _priced_reason(problem, carbon, priced, price_now, price_planned, currency or "")
    if priced is None and degraded is None and carbon.why in WAITS | {Why.CLEANER_ZONE_NOW}:
        text += f" {_both(carbon.now_mean, chosen.mean, price_now, price_planned).capitalize()}."
    if degraded:
        text += f" {degraded}"
    return replace(base, reason=text, price_now=price_now, price_planned=price_planned, price_currency=currency,
                   price_source=None if home_price is None else home_price.source, price_degraded=degraded is not None)


def _priced_reason(problem: Problem, c: Candidate, priced: PricedCandidate, price_now: float | None,
                   price_planned: float | None, currency: str) -> str:
    policy, home = problem.policy, problem.zones[0].zone
    what = ("the cheapest window" if priced.over_budget else "the cleanest window" if priced.over_ceiling
            else _objective_words(problem, priced, currency))
    anchor = "now" if priced.baseline is None else "at submission"
    if c.why is Why.SAVING_TOO_SMALL:
        passed_up = c.passed_up
        figure = "cost" if policy.objective == "cost" else "cost with carbon" if policy.carbon_price_per_tonne else "carbon"
        text = (f"Running now in {home}: waiting until {hm(_moment(passed_up))}{_where(problem, passed_up)} "
                f"({what}) would save only {c.passed_up_saving_pct:.1f}% {figure}, below the "
                f"{policy.min_saving_pct:g}% worth waiting for.")
    elif c.why in WAITS:
        text = (f"Waiting until {hm(_moment(c.chosen))}{_where(problem, c.chosen)}: the "
                f"{span(problem.expected_duration)} window then averages {c.chosen.mean:.0f} g/kWh and "
                f"{_money(price_planned, currency)}, {_both(c.now_mean, c.chosen.mean, price_now, price_planned)} "
                f"({what}); latest start {hm(problem.latest)}.")
    elif c.why is Why.CLEANER_ZONE_NOW:
        text = (f"Running now in {problem.zones[c.chosen.zone].zone} instead of {home} ({what}): "
                f"{_both(c.now_mean, c.chosen.mean, price_now, price_planned)}.")
    else:
        text = (f"Running now in {home}: the next {span(problem.expected_duration)} ({c.now_mean:.0f} g/kWh, "
                f"{_money(price_now, currency)}) are already {what} before {hm(problem.horizon)}.")
    if priced.over_ceiling:
        text += f" No window stays at or below the {policy.max_intensity:g} g/kWh ceiling; taking the cleanest."
    base = price_now if priced.baseline is None else priced.baseline
    if priced.over_budget:
        text += (f" No window stays within {policy.max_cost_increase_pct:+g}% of the "
                 f"{_money(base, currency)} {anchor}; taking the cheapest.")
    elif priced.cleanest is not None and base is not None:
        over = _change_pct(base, priced.cleanest_price)
        dearer = (f"{over:.0f}% more than {anchor}" if over is not None
                  else f"{_money(priced.cleanest_price, currency)} against {_money(base, currency)} {anchor}")
        text += (f" The cleanest window ({hm(_moment(priced.cleanest))}{_where(problem, priced.cleanest)}, "
                 f"{priced.cleanest.mean:.0f} g/kWh) costs {dearer}, over the "
                 f"{policy.max_cost_increase_pct:g}% allowed; taking the cleanest within budget.")
    if priced.priced_until is not None:
        text += f" Prices are known until {hm(datetime.fromtimestamp(priced.priced_until, UTC))}; later windows were not costed."
    return text


def _objective_words(problem: Problem, priced: PricedCandidate, currency: str) -> str:
    """ "the cheapest window at or below 200 g/kWh within +10% of the cost now", and the like."""
    policy = problem.policy
    if policy.carbon_price_per_tonne is not None:
        what = f"the lowest price with carbon at {policy.carbon_price_per_tonne:g} {currency}/t"
    else:
        what = "the cheapest window" if policy.objective == "cost" else "the cleanest window"
    if policy.max_intensity is not None:
        what += f" at or below {policy.max_intensity:g} g/kWh"
    if policy.max_cost_increase_pct is not None:
        what += f" within {policy.max_cost_increase_pct:+g}% of the cost {'now' if priced.baseline is None else 'at submission'}"
    return what


def _both(carbon_now: float | None, carbon: float | None, price_now: float | None, price: float | None) -> str:
    """ "7% cleaner and 12% cheaper than now", "4% cleaner than now, at the same price", ..."""
    changes, sames = [], []
    for now, later, lower, higher, same in ((carbon_now, carbon, "cleaner", "dirtier", "as clean"),
                                            (price_now, price, "cheaper", "dearer", "at the same price")):
        change = _change_pct(now, later)
        if change is None and now == 0 and later is not None:  # from zero, a direction but no percentage
            (sames if later == 0 else changes).append(same if later == 0 else lower if later < 0 else higher)
        elif change is None:
            sames.append(f"{'carbon' if lower == 'cleaner' else 'price'} not known")
        elif abs(change) < 0.5:
            sames.append(same)
        else:
            changes.append(f"{abs(change):.0f}% {lower if change < 0 else higher}")
    if not changes:
        return " and ".join(sames) + " as now"
    return " and ".join(changes) + " than now" + "".join(f", {same}" for same in sames)


def _money(value: float | None, currency: str) -> str:
    return "an unknown price" if value is None else f"{value:.2f} {currency}/MWh"


def _change_pct(now: float | None, later: float | None) -> float | None:
    """``later`` against ``now`` in percent of ``now``'s size (negative: lower); None where unknown or now is 0."""
    if now is None or later is None or now == 0:
        return None
    return (later - now) / abs(now) * 100.0
