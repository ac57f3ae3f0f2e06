"""The loop pacer spreads a burst of work over loop iterations, each within its budget."""

from __future__ import annotations

import asyncio

import pytest

from carbon_sensors.errors import ConfigurationError
from carbon_sensors.pacing import LoopPacer


class FakeTimer:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def burst(pacer: LoopPacer, timer: FakeTimer, workers: int, cost_s: float) -> tuple[list[int], int]:
    """``workers`` units of work of ``cost_s`` each, all ready at once; the loop iteration each ran in."""
    iteration, ran_in = 0, []
    done = asyncio.Event()

    async def ticker() -> None:  # one step per loop iteration
        nonlocal iteration
        while not done.is_set():
            iteration += 1
            await asyncio.sleep(0)

    async def work() -> None:
        await pacer.turn()
        ran_in.append(iteration)
        timer.now += cost_s

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    await asyncio.gather(*(work() for _ in range(workers)))
    done.set()
    await tick
    return ran_in, iteration


def test_a_burst_is_spread_over_iterations_within_the_budget():
    timer = FakeTimer()
    pacer = LoopPacer(budget_s=0.010, timer=timer)
    ran_in, _ = asyncio.run(burst(pacer, timer, workers=20, cost_s=0.004))
    per_iteration = {i: ran_in.count(i) for i in set(ran_in)}
    assert len(ran_in) == 20
    # A unit starts only while the iteration's budget lasts: 0, 4 and 8 ms in, so three per iteration.
    assert set(per_iteration.values()) <= {1, 2, 3} and max(per_iteration.values()) == 3
    assert len(per_iteration) >= 7
    assert ran_in == sorted(ran_in)  # first come, first served


def test_cheap_work_all_runs_in_one_iteration():
    timer = FakeTimer()
    pacer = LoopPacer(budget_s=0.010, timer=timer)
    ran_in, _ = asyncio.run(burst(pacer, timer, workers=50, cost_s=0.0))
    assert len(set(ran_in)) == 1


def test_each_event_loop_has_its_own_budget():
    timer = FakeTimer()
    pacer = LoopPacer(budget_s=0.010, timer=timer)
    first, _ = asyncio.run(burst(pacer, timer, workers=3, cost_s=0.02))
    second, _ = asyncio.run(burst(pacer, timer, workers=3, cost_s=0.02))  # a fresh loop starts a fresh slice
    assert len(set(first)) == 3 and len(set(second)) == 3


def test_the_budget_must_be_positive():
    with pytest.raises(ConfigurationError, match="positive"):
        LoopPacer(budget_s=0)
