"""The planner's two steps: the search names why it chose its candidate, and the explanation writes every reason."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from carbon_sensors.forecast import Forecast
from carbon_sensors.planning import Policy, latest_start, plan
from carbon_sensors.planning.explain import explain, reason
from carbon_sensors.planning.search import WAITS, Candidate, Problem, Why, Window, search

T0 = datetime(2026, 6, 15, tzinfo=UTC)
H = timedelta(hours=1)


def slots(values, zone="DE"):
    return Forecast.from_points([(T0 + i * H, v) for i, v in enumerate(values)], zone=zone, source="test")


def problem(*zones, now=T0, deadline=T0 + 12 * H, duration=H, policy=None, submitted_at=None):
    policy = policy or Policy()
    return Problem(zones=zones, signal="average", now=now, deadline=deadline, expected_duration=duration,
                   policy=policy, submitted_at=submitted_at or now, latest=latest_start(deadline, duration, policy))


DIP = [400, 400, 100, 400, 400, 400, 400, 400, 400, 400, 400, 400]


@pytest.mark.parametrize(
    ("case", "why"),
    [
        (problem(slots(DIP), deadline=T0 + H + 6 * timedelta(minutes=1)), Why.LATEST_START_REACHED),
        (problem(slots(DIP), deadline=T0 + H), Why.DEADLINE_AT_RISK),
        (problem(slots(DIP), policy=Policy(max_delay=timedelta(0))), Why.MAX_DELAY_PASSED),
        (problem(slots(DIP), policy=Policy(threshold=400)), Why.UNDER_THRESHOLD),
        (problem(slots(DIP), policy=Policy(min_saving_pct=90)), Why.SAVING_TOO_SMALL),
        (problem(slots([100, *DIP[1:]])), Why.NO_BETTER_WINDOW),
        (problem(slots(DIP), slots([50] * 12, zone="FR")), Why.CLEANER_ZONE_NOW),
        (problem(slots(DIP)), Why.CLEANEST_WINDOW),
        (problem(slots(DIP), policy=Policy(threshold=300)), Why.THRESHOLD_WINDOW),
    ],
)
def test_the_search_says_why_and_the_plan_is_its_explanation(case, why):
    """Each way the search can go has its tag, and plan() is explain() of search()."""
    candidate = search(case)
    assert candidate.why is why
    p = explain(case, candidate)
    assert p == plan(list(case.zones), now=case.now, deadline=case.deadline, expected_duration=case.expected_duration,
                     policy=case.policy)
    assert p.reason == reason(case, candidate)
    assert (p.decision == "wait") == (why in WAITS)
    assert p.zone == case.zones[candidate.chosen.zone].zone and p.intensity_planned == candidate.chosen.mean


def test_a_candidate_is_frozen_and_carries_no_words():
    """The search's answer is data: a tag, windows and figures, never a string of prose."""
    candidate = search(problem(slots(DIP)))
    assert candidate == Candidate(Why.CLEANEST_WINDOW, Window(100.0, (T0 + 2 * H).timestamp(), 0), 75.0, 400.0,
                                  best_now=Window(400.0, T0.timestamp(), 0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        candidate.why = Why.NO_BETTER_WINDOW  # type: ignore[misc]
    assert not any(isinstance(v, str) and not isinstance(v, Why) for v in dataclasses.astuple(candidate))


def test_every_tag_has_a_reason_writer():
    """A new tag without words fails here, not in a plan."""
    from carbon_sensors.planning.explain import _REASONS

    assert _REASONS.keys() == set(Why)
