"""Fuzzing the planner and the gate: the deadline always wins, and the numbers in a plan are always sane."""

from __future__ import annotations

import asyncio
import json
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from static_source import StaticSource

from carbon_sensors.errors import ForecastCoverageError, SignalMismatchError
from carbon_sensors.forecast import MAX_PLAUSIBLE_G_PER_KWH, Forecast
from carbon_sensors.gate import CarbonGate, decide, wait_for_window
from carbon_sensors.planning import LATEST_START_TOLERANCE, Policy, latest_start, plan
from carbon_sensors.testing import FrozenClock

#: Examples per property; raise it for a deeper run, e.g. CS_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz_planner.py
EXAMPLES = int(os.environ.get("CS_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HALF = settings(FUZZ, max_examples=max(20, EXAMPLES // 2))
T0 = datetime(2026, 6, 15, tzinfo=UTC)
ZONES = ("DE", "FR", "GB")
EPS = 1e-6


@dataclass(frozen=True)
class Case:
    """One planning problem: forecasts (home zone first), now, deadline, duration, policy, submission."""

    forecasts: tuple[Forecast, ...]
    now: datetime
    deadline: datetime
    duration: timedelta
    policy: Policy
    submitted_at: datetime | None

    def plan(self):
        return plan(list(self.forecasts), now=self.now, deadline=self.deadline, expected_duration=self.duration,
                    policy=self.policy, submitted_at=self.submitted_at)

    @property
    def latest(self) -> datetime:
        return latest_start(self.deadline, self.duration, self.policy)


values = st.one_of(
    st.floats(0, 2000, allow_nan=False),
    st.integers(0, 2000).map(float),
    st.sampled_from([0.0, 2000.0, 100.0, 100.0, 300.0]),  # ties and edges
)


@st.composite
def forecasts_for(draw: st.DrawFn, zone: str) -> Forecast:
    """A zone's forecast: random resolution 5 min .. 1 h, starting around T0, 1 to 120 points."""
    step = timedelta(minutes=draw(st.sampled_from([5, 10, 15, 30, 60]) | st.integers(5, 60)))
    start = T0 + timedelta(minutes=draw(st.integers(-60, 30)), seconds=draw(st.sampled_from([0, 0, 0, 17])))
    length = draw(st.sampled_from([1, 12, 48, 48, 96]))
    points = [(start + i * step, v) for i, v in enumerate(draw(st.lists(values, min_size=length, max_size=length + 24)))]
    return Forecast.from_points(points, zone=zone, source=f"fuzz-{zone}", resolution=step)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """Mostly a deadline with slack after the latest start; a third of the time one already reached or passed."""
    zones = ZONES[: draw(st.integers(1, 3))]
    forecasts = tuple(draw(forecasts_for(z)) for z in zones)
    now = T0 + timedelta(seconds=draw(st.integers(-30 * 60, 4 * 3600) | st.sampled_from([0, 1800, 3600])),
                         microseconds=draw(st.sampled_from([0, 0, 1, 500_000])))
    duration = timedelta(minutes=draw(st.integers(1, 240) | st.integers(1, 12 * 60) | st.sampled_from([5, 30, 60, 120])))
    policy = Policy(
        max_delay=draw(st.none() | st.none() | st.builds(lambda m: timedelta(minutes=m), st.integers(0, 24 * 60))),
        threshold=draw(st.none() | st.none() | st.floats(0, 2000, allow_nan=False)),
        min_saving_pct=draw(st.sampled_from([0.0, 3.0, 3.0, 50.0]) | st.floats(0, 99.9)),
        safety_margin=draw(st.none() | st.builds(lambda m: timedelta(minutes=m), st.integers(0, 180))),
    )
    kind = draw(st.integers(0, 9))  # 0: at the latest start, 1-2: past it, 3-9: with slack
    slack_min = (draw(st.sampled_from([0, -1, 1])) if kind == 0 else draw(st.integers(-180, -1)) if kind <= 2
                 else draw(st.integers(1, 8 * 60) if kind <= 6 else st.integers(1, 36 * 60)))
    slack = timedelta(minutes=slack_min, seconds=draw(st.sampled_from([0, 0, 30])))
    deadline = now + duration + policy.margin_for(duration) + slack  # the latest start is now + slack
    submitted_at = draw(st.none() | st.builds(lambda m: now - timedelta(minutes=m), st.integers(0, 12 * 60)))
    return Case(forecasts, now, deadline, duration, policy, submitted_at)


def _finite_intensity(value: float | None) -> bool:
    """None (no forecast for now) or a window mean within the plausible range, up to float noise above the top."""
    return value is None or (math.isfinite(value) and 0 <= value <= MAX_PLAUSIBLE_G_PER_KWH * (1 + 1e-12))


def _best_mean_on_a_grid(case: Case, horizon: datetime) -> float:
    """The lowest window mean over every minute from now to the horizon, in any zone (a brute-force check)."""
    dur = case.duration.total_seconds()
    now_s, horizon_s = case.now.timestamp(), horizon.timestamp()
    best = math.inf
    for f in case.forecasts:
        starts = {now_s, horizon_s, *(now_s + 60 * k for k in range(int((horizon_s - now_s) // 60) + 1))}
        for s in starts:
            if s <= horizon_s and f.covers(s, s + dur):
                best = min(best, f.mean_between(s, s + dur))
    return best


@FUZZ
@given(case=cases())
def test_plan_invariants(case):
    """Start in [now, latest start] (now and forced once it has passed), sane numbers, deterministic, JSON-able."""
    latest = case.latest
    try:
        p = case.plan()
    except ForecastCoverageError:
        # Only when the home forecast cannot say what starting now costs and the deadline does not force a start.
        home = case.forecasts[0]
        assert not home.covers(case.now.timestamp(), case.now.timestamp()) and latest > case.now
        event("no forecast for now")
        return
    event(f"{p.decision}{' forced' if p.forced else ''}{' by threshold' if 'threshold' in p.reason else ''}")
    assert p.latest_start == latest and p.deadline == case.deadline
    assert p.zone in {f.zone for f in case.forecasts}
    # the deadline wins: forced exactly when the latest start has been reached
    assert p.forced == (latest <= case.now)
    if latest <= case.now:
        assert p.decision == "run_now" and p.planned_start == case.now
        assert p.latest_start_reached == (case.now - latest <= LATEST_START_TOLERANCE)
        assert p.deadline_at_risk == (case.now - latest > LATEST_START_TOLERANCE)
    else:
        assert case.now <= p.planned_start <= latest
        if case.policy.max_delay is not None:
            anchor = case.submitted_at or case.now
            assert p.planned_start <= max(case.now, anchor + case.policy.max_delay)
    assert (p.decision == "wait") == (p.planned_start > case.now)
    # never NaN, negative or implausible numbers
    assert _finite_intensity(p.intensity_now) and _finite_intensity(p.intensity_planned)
    assert math.isfinite(p.expected_saving_pct) and 0 <= p.expected_saving_pct <= 100
    if p.decision == "wait":
        # waiting needs a planned window that is covered, and a saving at least the minimum worth waiting for
        chosen = next(f for f in case.forecasts if f.zone == p.zone)
        start_s = p.planned_start.timestamp()
        assert chosen.covers(start_s, start_s + case.duration.total_seconds())
        assert p.intensity_planned == pytest.approx(chosen.window_mean(p.planned_start, case.duration), abs=EPS)
        assert p.intensity_now is not None and p.intensity_planned <= p.intensity_now + EPS
        assert p.expected_saving_pct >= case.policy.min_saving_pct - EPS
    # deterministic: the same inputs (even rebuilt) give the same plan
    assert case.plan() == p
    rebuilt = Case(tuple(Forecast.from_points(f.points(), zone=f.zone, source=f.source, resolution=f.end - f.points()[-1][0])
                         for f in case.forecasts), case.now, case.deadline, case.duration, case.policy, case.submitted_at)
    assert rebuilt.plan() == p
    json.dumps(p.to_dict(), allow_nan=False)


@HALF
@given(case=cases())
def test_plan_is_optimal_without_threshold_or_minimum(case):
    """With no threshold and no minimum saving, no start on a one-minute grid beats the planned window."""
    case = Case(case.forecasts, case.now, case.deadline, case.duration,
                Policy(max_delay=case.policy.max_delay, safety_margin=case.policy.safety_margin, min_saving_pct=0.0),
                case.submitted_at)
    latest = case.latest
    assume(latest > case.now and (latest - case.now) <= timedelta(hours=40))
    try:
        p = case.plan()
    except ForecastCoverageError:
        return
    horizon = latest if case.policy.max_delay is None else min(latest, (case.submitted_at or case.now) + case.policy.max_delay)
    assume(horizon > case.now)
    home = case.forecasts[0]
    now_s = case.now.timestamp()
    if not home.covers(now_s, now_s + case.duration.total_seconds()):
        return  # the home zone's start-now option is clipped to its coverage: not comparable on the grid
    assert p.intensity_planned is not None
    event(p.decision)
    assert p.intensity_planned <= _best_mean_on_a_grid(case, horizon) + 1e-6 * max(1.0, p.intensity_planned)


def test_mixed_signals_are_refused():
    """Average and marginal forecasts are never compared in one plan."""
    avg = Forecast.from_points([(T0, 100.0)], zone="DE", source="a", resolution=timedelta(hours=4))
    marg = Forecast.from_points([(T0, 100.0)], zone="FR", source="m", signal="marginal", resolution=timedelta(hours=4))
    with pytest.raises(SignalMismatchError):
        plan([avg, marg], now=T0, deadline=T0 + timedelta(hours=3), expected_duration=timedelta(hours=1))


# -- the gate -------------------------------------------------------------------------------------


def _gate(case: Case, refresh: timedelta | None, check_interval: timedelta = timedelta(minutes=1)) -> CarbonGate:
    source = StaticSource({f.zone: f for f in case.forecasts}, refresh_interval=refresh)
    return CarbonGate(zones=[f.zone for f in case.forecasts], deadline=case.deadline, expected_duration=case.duration,
                      source=source, policy=case.policy, check_interval=check_interval)


refreshes = st.none() | st.sampled_from([timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=1)])


@FUZZ
@given(case=cases(), refresh=refreshes, waiting=st.none() | st.integers(-120, 600))
@example(
    case=Case((Forecast.from_points([(T0, 400.0), (T0 + timedelta(hours=3), 50.0)], zone="DE", source="s",
                                    resolution=timedelta(hours=1)),),
              T0, T0 + timedelta(hours=4), timedelta(hours=1), Policy(), None),
    refresh=None, waiting=None,
)
def test_decide_never_starts_after_the_latest_start(case, refresh, waiting):
    """decide(): a wait ends by the latest start, a go comes before it, and at or past it the start is forced."""
    latest = case.latest
    waiting_until = None if waiting is None else case.now + timedelta(minutes=waiting)
    decision = asyncio.run(decide(_gate(case, refresh), now=case.now, deadline=case.deadline,
                                  submitted_at=case.submitted_at or case.now, waiting_until=waiting_until))
    assert decision.status in ("go", "forced", "wait") and decision.decided_at == case.now
    event(f"{decision.status} {decision.forced_reason or ''}")
    if latest <= case.now:
        assert decision.status == "forced"
    if decision.status == "go":
        assert case.now < latest
    if decision.status == "wait":
        assert decision.plan is not None and case.now < decision.plan.planned_start <= latest
        assert decision.next_check is not None and case.now < decision.next_check <= latest
        if refresh is not None:
            assert decision.next_check <= case.now + refresh
    payload = decision.to_event()
    json.dumps(payload, allow_nan=False)
    assert payload["status"] == decision.status and payload["forced"] == (decision.status == "forced")


@HALF
@given(case=cases(), refresh=refreshes, check_minutes=st.sampled_from([1, 7, 15, 60]))
def test_wait_for_window_starts_by_the_latest_start(case, refresh, check_minutes):
    """The waiting loop returns at or before the latest start (or at once when it has passed), sleeping in steps."""
    assume(case.deadline - case.now <= timedelta(hours=14))  # keeps the number of one-minute steps small
    gate = _gate(case, refresh, timedelta(minutes=check_minutes))
    clock = FrozenClock(case.now)
    decisions = []
    final = asyncio.run(wait_for_window(gate, deadline=case.deadline, submitted_at=case.submitted_at or case.now,
                                        clock=clock, on_decision=decisions.append))
    latest = case.latest
    event(f"{final.status} {final.forced_reason or ''} after {'some' if clock.sleeps else 'no'} sleeps")
    assert final.status in ("go", "forced")
    assert final.decided_at <= max(case.now, latest)
    assert all(d.decided_at <= max(case.now, latest) for d in decisions)
    assert all(0 <= s <= check_minutes * 60 + EPS for s in clock.sleeps)
    if latest <= case.now:
        assert len(decisions) == 1 and final.status == "forced" and not clock.sleeps
    if final.status == "forced" and final.forced_reason in ("latest_start", "deadline_at_risk"):
        assert final.decided_at >= latest
