"""plan_carbon_window returns the plan; @carbon_aware_task waits in process, bounded by max_delay."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

pytest.importorskip("prefect", minversion="3.6")  # a bare name could be this folder, as a namespace package

from prefect import flow
from prefect_helpers import write_csv

from carbon_sensors import After
from carbon_sensors.prefect import carbon_aware_task, current_decision, plan_carbon_window
from carbon_sensors.testing import FrozenClock, use_clock

JUNE_15 = datetime(2026, 6, 15, 0, 0, tzinfo=UTC)


@pytest.fixture
def csv(tmp_path):
    # Slightly cleaner at 01:00, much cleaner at 03:00.
    return write_csv(tmp_path / "de.csv", JUNE_15, [400, 300, 400, 100, 400, 400, 400, 400] + [50] * 16)


def test_plan_carbon_window_returns_the_decision_event(prefect_api, csv):
    """Inside a flow, the task returns the plan as a dict: wait until 03:00, latest start 06:54."""

    @flow
    def planner() -> dict:
        return plan_carbon_window(zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1),
                                  source={"kind": "file", "path": str(csv)}, now=JUNE_15)

    with use_clock(FrozenClock(JUNE_15)):
        event = planner()
    assert event["status"] == "wait"
    assert event["planned_start"] == "2026-06-15T03:00:00+00:00"
    assert event["latest_start"] == "2026-06-15T06:54:00+00:00"
    assert event["saving_pct"] == 75.0


def test_a_carbon_aware_task_waits_no_longer_than_its_max_delay(prefect_api, csv):
    """With the default one-hour max_delay the task takes 01:00 (not the cleaner 03:00) and returns its own value."""
    seen = []

    @carbon_aware_task(zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1),
                       source={"kind": "file", "path": str(csv)})
    def embed(n: int) -> int:
        seen.append(current_decision())
        return n * 2

    @flow
    def refresh() -> int:
        return embed(21)

    clock = FrozenClock(JUNE_15)
    with use_clock(clock):
        assert refresh() == 42
    assert clock.now() == JUNE_15 + timedelta(hours=1) and clock.sleeps
    assert seen[0]["status"] == "go" and seen[0]["planned_start"] == "2026-06-15T01:00:00+00:00"


def test_an_async_carbon_aware_task_awaits_its_window(prefect_api, csv):
    """An async task awaits the window with the longer max_delay it was given, then runs its body."""

    @carbon_aware_task(zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1),
                       source={"kind": "file", "path": str(csv)}, max_delay=timedelta(hours=4))
    async def embed() -> str:
        return current_decision()["planned_start"]

    @flow
    async def refresh() -> str:
        return await embed()

    clock = FrozenClock(JUNE_15)
    with use_clock(clock):
        assert asyncio.run(refresh()) == "2026-06-15T03:00:00+00:00"
    assert clock.now() == JUNE_15 + timedelta(hours=3)


def test_stacking_on_task_is_refused_with_advice():
    """@carbon_aware_task over @task says to pass the task options to it instead."""
    from prefect import task

    with pytest.raises(TypeError, match="takes the place of @task"):
        carbon_aware_task(zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1))(task(lambda: 1))
