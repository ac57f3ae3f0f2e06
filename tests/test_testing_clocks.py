"""The testing clocks: a compressed clock runs from its first read, not from when it was made."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from carbon_sensors.testing import CompressedClock, FrozenClock, use_clock

SUBMITTED = datetime(2026, 1, 12, 18, 0, tzinfo=UTC)


def test_a_compressed_clock_stands_still_until_the_first_wait():
    clock = CompressedClock(SUBMITTED, factor=3600)
    time.sleep(0.2)  # a framework starting up: 12 simulated minutes if the clock were already running
    assert clock.now() == SUBMITTED  # reads at parse time and the first plan do not start it
    asyncio.run(clock.sleep(0.0))
    time.sleep(0.1)
    assert clock.now() >= SUBMITTED + timedelta(minutes=6)


def test_a_running_clock_counts_from_construction():
    clock = CompressedClock(SUBMITTED, factor=3600, running=True)
    time.sleep(0.1)
    assert clock.now() >= SUBMITTED + timedelta(minutes=6)


def test_a_compressed_clock_refuses_a_bad_factor():
    with pytest.raises(ValueError, match="factor must be positive"):
        CompressedClock(SUBMITTED, factor=0)


@pytest.mark.integration
def test_dag_test_under_a_compressed_clock_plans_at_submission(dag_bag):
    """The README's testing recipe: the gate's first plan is made at the submission time, not hours later."""
    from carbon_sensors.gate import add_decision_listener, remove_decision_listener

    decisions = []
    add_decision_listener(decisions.append)
    try:
        dag = dag_bag.get_dag("search_index_rebuild")
        clock = CompressedClock(SUBMITTED, factor=3600)
        time.sleep(1.0)  # start-up before the run: an hour of slack lost if the clock ran from here
        with use_clock(clock):
            run = dag.test(logical_date=SUBMITTED)
    finally:
        remove_decision_listener(decisions.append)
    assert run.state == "success"
    assert decisions, "the gate made no decision"
    assert decisions[0].decided_at - SUBMITTED < timedelta(minutes=30), decisions[0].decided_at


def test_a_frozen_clock_moves_only_when_told():
    clock = FrozenClock(SUBMITTED)
    time.sleep(0.01)
    assert clock.now() == SUBMITTED
    clock.advance(timedelta(hours=1))
    assert clock.now() == SUBMITTED + timedelta(hours=1)
