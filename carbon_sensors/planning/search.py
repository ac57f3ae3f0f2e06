"""The search: when and where a job's window is cleanest, as a typed :class:`Candidate` (no words).

Forecasts are piecewise constant, so a window's mean is piecewise linear in its start and its
minimum lies where the window's start or end meets a slot boundary: those starts, plus now and
the horizon, are the only candidates, which makes the optimum exact at any resolution.
:mod:`carbon_sensors.planning.explain` turns the candidate into a :class:`~carbon_sensors.planning.Plan`.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from carbon_sensors.errors import ForecastCoverageError
from carbon_sensors.forecast import Forecast, Signal
from carbon_sensors.planning.policy import LATEST_START_TOLERANCE, Policy
from carbon_sensors.planning.text import hm

__all__ = ["WAITS", "Candidate", "Problem", "Why", "Window", "search"]


@dataclass(frozen=True, slots=True)
class Problem:
    """A job to place, its inputs checked: the allowed zones' forecasts (home zone first), now, deadline and policy.

    ``submitted_at`` anchors the policy's ``max_delay``; ``latest`` is the latest start that meets
    the deadline.
    """

    zones: tuple[Forecast, ...]
    signal: Signal
    now: datetime
    deadline: datetime
    expected_duration: timedelta
    policy: Policy
    submitted_at: datetime
    latest: datetime

    @property
    def horizon(self) -> datetime:
        """The latest start the deadline and the policy's ``max_delay`` both allow."""
        max_delay = self.policy.max_delay
        return self.latest if max_delay is None else min(self.latest, self.submitted_at + max_delay)


class Why(StrEnum):
    """Why the search chose its candidate: the deadline, the policy, or the forecast."""

    DEADLINE_AT_RISK = "deadline_at_risk"  # later than the latest start (past the tolerance): start now
    LATEST_START_REACHED = "latest_start_reached"  # at the latest start: start now
    MAX_DELAY_PASSED = "max_delay_passed"  # the policy's maximum delay has passed: start now
    UNDER_THRESHOLD = "under_threshold"  # now, in the home zone, is at or below the threshold
    SAVING_TOO_SMALL = "saving_too_small"  # the best wait saves less than the minimum: start now at home
    NO_BETTER_WINDOW = "no_better_window"  # now, in the home zone, is already the cleanest window
    CLEANER_ZONE_NOW = "cleaner_zone_now"  # start now, in a cleaner allowed zone
    CLEANEST_WINDOW = "cleanest_window"  # wait for the cleanest window
    THRESHOLD_WINDOW = "threshold_window"  # wait for the first window at or below the threshold
    CLEANEST_WITHIN_BUDGET = "cleanest_within_budget"  # wait for the cleanest window the cost ceiling allows
    CHEAPEST_WINDOW = "cheapest_window"  # wait for the cheapest window (under the carbon ceiling, if any)
    LOWEST_CARBON_PRICED = "lowest_carbon_priced"  # wait for the lowest price plus carbon at the carbon price


#: The reasons to wait; every other reason starts the job now.
WAITS = frozenset({Why.CLEANEST_WINDOW, Why.THRESHOLD_WINDOW, Why.CLEANEST_WITHIN_BUDGET, Why.CHEAPEST_WINDOW,
                   Why.LOWEST_CARBON_PRICED})


@dataclass(frozen=True, slots=True)
class Window:
    """A start (epoch seconds) in one allowed zone (its index, 0 for home) and the job's mean intensity from it."""

    mean: float | None
    start_s: float
    zone: int


@dataclass(frozen=True, slots=True)
class Candidate:
    """What the search chose, the figures behind it, and why.

    ``chosen``: where and when to start. ``saving_pct``: the saving a plan reports, a start now
    against the home zone now, a wait against ``best_now``. ``now_mean``: the home zone's window
    started now (None where its forecast does not cover now). ``best_now``: the cleanest start-now
    option in any zone, what a wait must beat. ``passed_up``: the wait whose saving
    (``passed_up_saving_pct``) fell short of the policy's minimum.
    """

    why: Why
    chosen: Window
    saving_pct: float
    now_mean: float | None
    best_now: Window | None = None
    passed_up: Window | None = None
    passed_up_saving_pct: float | None = None


def search(problem: Problem) -> Candidate:
    """The candidate for ``problem``: the deadline first, then the policy, then the cleanest window."""
    zones, policy, now = problem.zones, problem.policy, problem.now
    home = zones[0]
    now_s, dur_s = now.timestamp(), problem.expected_duration.total_seconds()
    # Only a forecast that covers now can say what starting now costs (its end may come early).
    now_mean = _finite_or_none(home.mean_between(now_s, now_s + dur_s)) if home.covers(now_s, now_s) else None
    if problem.latest <= now:
        why = Why.DEADLINE_AT_RISK if now - problem.latest > LATEST_START_TOLERANCE else Why.LATEST_START_REACHED
        return _start_now(why, _cleanest_now(zones, now_s, dur_s, now_mean), now_mean)
    horizon = problem.horizon
    if horizon <= now:
        return _start_now(Why.MAX_DELAY_PASSED, _cleanest_now(zones, now_s, dur_s, now_mean), now_mean)
    if now_mean is None:
        raise ForecastCoverageError(
            f"forecast for zone {home.zone!r} from {home.source!r} covers {hm(home.start)} to {hm(home.end)}, "
            f"which does not include now ({hm(now)}); fetch a forecast that starts at or before now"
        )
    here_now = Window(now_mean, now_s, 0)
    threshold = None if policy.threshold is None else policy.threshold * (1 + 1e-9) + 1e-9  # float noise
    if threshold is not None and now_mean <= threshold:
        return _start_now(Why.UNDER_THRESHOLD, here_now, now_mean)
    best, best_now, first_under = _scan(zones, now_s, horizon.timestamp(), dur_s, threshold, here_now)
    target, why = (first_under, Why.THRESHOLD_WINDOW) if first_under is not None else (best, Why.CLEANEST_WINDOW)
    if target.start_s != now_s:
        # Waiting must beat the best start-now option in any allowed zone, not only the home zone's.
        gain = _saving(best_now.mean, target.mean)
        if gain < policy.min_saving_pct:
            if best_now.zone == 0:
                return Candidate(Why.SAVING_TOO_SMALL, here_now, 0.0, now_mean,
                                 best_now=best_now, passed_up=target, passed_up_saving_pct=gain)
            target = best_now
    if target.start_s == now_s:
        if target.zone == 0:
            return _start_now(Why.NO_BETTER_WINDOW, here_now, now_mean)
        return _start_now(Why.CLEANER_ZONE_NOW, target, now_mean)
    return Candidate(why, target, _saving(best_now.mean, target.mean), now_mean, best_now=best_now)


def _start_now(why: Why, chosen: Window, now_mean: float | None) -> Candidate:
    """Start now at ``chosen``, its saving measured against the home zone now."""
    return Candidate(why, chosen, _saving(now_mean, chosen.mean), now_mean)


def _cleanest_now(zones: tuple[Forecast, ...], now_s: float, dur_s: float, now_mean: float | None) -> Window:
    """Forced to start now, the job may still go to the cleanest allowed zone (the home zone on a tie)."""
    options = [(now_mean, 0)] if now_mean is not None else []
    options += [(f.mean_between(now_s, now_s + dur_s), zi) for zi, f in enumerate(zones)
                if zi and f.covers(now_s, now_s + dur_s)]
    if options:
        mean, zi = min(options, key=lambda o: (o[0] + 1e-9 * o[1]))
        if zi:
            return Window(mean, now_s, zi)
    return Window(now_mean, now_s, 0)


def _scan(
    zones: tuple[Forecast, ...], now_s: float, horizon_s: float, dur_s: float, threshold: float | None, here_now: Window,
) -> tuple[Window, Window, Window | None]:
    """The best window, the best start-now option in any zone, and the first window at or below the threshold."""
    best = (here_now.mean, here_now.start_s, here_now.zone)  # (window mean, start, zone index)
    best_now = best  # the best start-now option in any allowed zone: what waiting must beat
    first_under: tuple[float, float, int] | None = None
    for zi, forecast in enumerate(zones):
        previous: tuple[float, float] | None = None  # (start, mean) of the last covered candidate
        for start_s in _candidates(forecast, now_s, horizon_s, dur_s):
            if not forecast.covers(start_s, start_s + dur_s):
                previous = None
                continue
            mean = forecast.mean_between(start_s, start_s + dur_s)
            cand = (mean, start_s, zi)
            if _better(cand, best):
                best = cand
            if start_s == now_s and _better(cand, best_now):
                best_now = cand
            if threshold is not None and mean <= threshold:
                # The mean is linear between candidates: start where it crosses the threshold.
                crossing = _crossing(previous, (start_s, mean), threshold)
                crossing_mean = forecast.mean_between(crossing, crossing + dur_s)
                if first_under is None or (crossing, zi) < (first_under[1], first_under[2]):
                    first_under = (crossing_mean, crossing, zi)
            previous = (start_s, mean)
    return Window(*best), Window(*best_now), None if first_under is None else Window(*first_under)


def _candidates(forecast: Forecast, now_s: float, horizon_s: float, dur_s: float) -> list[float]:
    """Starts where the window's start or end meets a slot boundary, plus ``now`` and the horizon."""
    starts, end_s = forecast.starts_s, forecast.end_s
    out = {now_s, horizon_s}
    for lo_s, hi_s, shift in ((now_s, horizon_s, 0.0), (now_s + dur_s, horizon_s + dur_s, dur_s)):
        # The slot boundaries in [lo_s, hi_s]: point starts, then the forecast's end (bisecting
        # the starts alone: a long trace is not copied for every plan).
        out.update(b - shift for b in starts[bisect_left(starts, lo_s):bisect_right(starts, hi_s)])
        if lo_s <= end_s <= hi_s:
            out.add(end_s - shift)
    return sorted(out)


def _crossing(previous: tuple[float, float] | None, current: tuple[float, float], threshold: float) -> float:
    """The earliest whole second between two candidates where the (linear) window mean reaches ``threshold``."""
    if previous is None or previous[1] <= threshold or previous[1] <= current[1]:
        return current[0]
    (t0, m0), (t1, m1) = previous, current
    exact = t0 + (m0 - threshold) / (m0 - m1) * (t1 - t0)
    return min(t1, float(math.ceil(exact - 1e-6)))


def _better(cand: tuple[float, float, int], best: tuple[float, float, int]) -> bool:
    """Lower mean wins; near-ties (float noise) go to the earlier start, then to the home zone."""
    tolerance = 1e-9 * max(1.0, abs(best[0]))
    if cand[0] < best[0] - tolerance:
        return True
    return abs(cand[0] - best[0]) <= tolerance and (cand[1], cand[2]) < (best[1], best[2])


def _saving(now_mean: float | None, mean: float | None) -> float:
    """How much lower ``mean`` is than ``now_mean``, in percent (0 when either is unknown, or when it is higher)."""
    if now_mean is None or mean is None or now_mean <= 0:
        return 0.0
    return max(0.0, (now_mean - mean) / now_mean * 100.0)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
