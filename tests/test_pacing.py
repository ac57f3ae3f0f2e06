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


class CountingTimer(FakeTimer):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def test_a_gate_in_line_is_resumed_about_once_not_every_iteration():
    """Thousands in line must not each be stepped at every iteration until their turn (O(n) per iteration)."""
    timer = CountingTimer()
    pacer = LoopPacer(budget_s=0.010, timer=timer)
    workers = 2000
    ran_in, _ = asyncio.run(burst(pacer, timer, workers=workers, cost_s=0.004))
    assert len(ran_in) == workers and ran_in == sorted(ran_in)
    assert max(ran_in.count(i) for i in set(ran_in)) <= 3  # still within the budget
    # One budget check per turn, per resume and per release: a few per unit, not one per unit per iteration
    # (that would be about workers**2 / 6, some 670,000 here).
    assert timer.reads < 5 * workers


def test_a_gate_cancelled_while_in_line_does_not_hold_up_the_others():
    timer = FakeTimer()
    pacer = LoopPacer(budget_s=0.010, timer=timer)

    async def main() -> list[int]:
        done: list[int] = []

        async def work(i: int) -> None:
            await pacer.turn()
            done.append(i)
            timer.now += 0.02  # each unit spends a whole budget

        tasks = [asyncio.create_task(work(i)) for i in range(6)]
        await asyncio.sleep(0)  # the first runs; the others wait in line
        tasks[2].cancel()
        tasks[3].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return done

    assert asyncio.run(main()) == [0, 1, 4, 5]
