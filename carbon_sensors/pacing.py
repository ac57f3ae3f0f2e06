"""Share an event loop fairly when thousands of waiting gates wake at once.

Gates re-plan when their source refreshes, so a triggerer's gates tend to wake together: asyncio
runs every callback that is ready in one loop iteration, and a thousand re-plans in one iteration
block the loop (and every other trigger in the process) for a long time. :class:`LoopPacer` gives
each loop iteration a time budget: a gate that finds the budget spent waits in line, and the line
moves one batch per iteration, after the loop has served its timers and I/O. A gate in line is
resumed when its turn comes, not at every iteration until then: with thousands in line, stepping
each of them once per iteration would itself overrun the budget.

>>> import asyncio
>>> pacer = LoopPacer(budget_s=0.005)
>>> async def gate(i):
...     await pacer.turn()
...     return i
>>> async def main():
...     return await asyncio.gather(*(gate(i) for i in range(3)))
>>> asyncio.run(main())
[0, 1, 2]
"""

from __future__ import annotations

import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from carbon_sensors.errors import ConfigurationError

if TYPE_CHECKING:
    import asyncio

__all__ = ["DEFAULT_BUDGET_S", "LoopPacer", "default_pacer"]

#: Work one loop iteration may spend on re-plans before the rest wait a turn (the triggerer warns at 200 ms).
DEFAULT_BUDGET_S = 0.01
_MAX_BATCH = 4096


class _Queue:
    """One loop's pacing state: when its current slice began, and the gates waiting for a turn."""

    __slots__ = ("batch", "began", "bounced", "released_at", "releasing", "waiters")

    def __init__(self) -> None:
        self.began: float | None = None  # None: no paced work in this loop iteration yet
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.bounced: list[asyncio.Future[None]] = []  # released, but the budget was spent: first next time
        self.releasing = False
        self.released_at: float | None = None
        self.batch = 1


class LoopPacer:
    """A per-loop time budget for bursts of work: ``await pacer.turn()`` before each unit of work."""

    __slots__ = ("__weakref__", "_queues", "_timer", "budget_s")

    def __init__(self, budget_s: float = DEFAULT_BUDGET_S, timer: Callable[[], float] = time.perf_counter) -> None:
        if not budget_s > 0:
            raise ConfigurationError(f"budget_s must be positive, got {budget_s!r}")
        self.budget_s, self._timer = budget_s, timer
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = weakref.WeakKeyDictionary()

    async def turn(self) -> None:
        """Return at once while this loop iteration's budget lasts; otherwise wait in line for a later one."""
        import asyncio  # here, not at the top: importing the core must not import asyncio (DAG parsing)

        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _Queue()
        if not queue.waiters and not queue.bounced and self._within_budget(loop, queue):
            return
        waiter = loop.create_future()
        queue.waiters.append(waiter)
        while True:
            if not queue.releasing:
                queue.releasing = True
                loop.call_soon(self._release, loop, queue)
            await waiter
            if self._within_budget(loop, queue):
                return
            waiter = loop.create_future()  # released, but earlier ones spent the budget: first in line next time
            queue.bounced.append(waiter)

    def _within_budget(self, loop: asyncio.AbstractEventLoop, queue: _Queue) -> bool:
        now = self._timer()
        if queue.began is None:
            queue.began = now
            loop.call_soon(_end_slice, queue)  # runs in the next iteration, ahead of what this one defers
            return True
        return now - queue.began < self.budget_s

    def _release(self, loop: asyncio.AbstractEventLoop, queue: _Queue) -> None:
        """Once per loop iteration while gates wait: let the next batch run in the next iteration.

        The batch grows while iterations stay within the budget and shrinks to fit when they do not,
        so a waiting gate is resumed about once, not once per iteration until its turn comes.
        """
        now = self._timer()
        if queue.released_at is not None:
            spent = now - queue.released_at  # about one loop iteration, with the last batch in it
            queue.batch = max(1, int(queue.batch * self.budget_s / spent)) if spent > self.budget_s else \
                min(queue.batch * 2, _MAX_BATCH)
        if queue.bounced:
            queue.waiters.extendleft(reversed(queue.bounced))
            queue.bounced.clear()
        released = 0
        while queue.waiters and released < queue.batch:
            waiter = queue.waiters.popleft()
            if not waiter.done():  # a gate cancelled while in line is skipped
                waiter.set_result(None)
                released += 1
        if queue.waiters or released:
            queue.released_at = now
            loop.call_soon(self._release, loop, queue)
        else:
            queue.releasing, queue.released_at = False, None


def _end_slice(queue: _Queue) -> None:
    queue.began = None


_default = LoopPacer()


def default_pacer() -> LoopPacer:
    """The process's pacer, shared by every waiting gate."""
    return _default
