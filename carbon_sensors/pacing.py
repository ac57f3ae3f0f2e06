"""Share an event loop fairly when thousands of waiting gates wake at once.

Gates re-plan when their source refreshes, so a triggerer's gates tend to wake together: asyncio
runs every callback that is ready in one loop iteration, and a thousand re-plans in one iteration
block the loop (and every other trigger in the process) for a long time. :class:`LoopPacer` gives
each loop iteration a time budget: a gate that finds the budget spent yields to the next iteration,
where the loop first serves its timers and I/O, then the deferred gates, budget by budget.

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
from collections.abc import Callable
from typing import TYPE_CHECKING

from carbon_sensors.errors import ConfigurationError

if TYPE_CHECKING:
    import asyncio

__all__ = ["DEFAULT_BUDGET_S", "LoopPacer", "default_pacer"]

#: Work one loop iteration may spend on re-plans before the rest wait a turn (the triggerer warns at 200 ms).
DEFAULT_BUDGET_S = 0.01


class LoopPacer:
    """A per-loop time budget for bursts of work: ``await pacer.turn()`` before each unit of work."""

    __slots__ = ("__weakref__", "_slices", "_timer", "budget_s")

    def __init__(self, budget_s: float = DEFAULT_BUDGET_S, timer: Callable[[], float] = time.perf_counter) -> None:
        if not budget_s > 0:
            raise ConfigurationError(f"budget_s must be positive, got {budget_s!r}")
        self.budget_s, self._timer = budget_s, timer
        # loop -> when its current slice began; a loop's entry is dropped at its next iteration.
        self._slices: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, float] = weakref.WeakKeyDictionary()

    async def turn(self) -> None:
        """Return at once while this loop iteration's budget lasts; otherwise yield iterations until it does."""
        import asyncio  # here, not at the top: importing the core must not import asyncio (DAG parsing)

        loop = asyncio.get_running_loop()
        while True:
            now = self._timer()
            began = self._slices.get(loop)
            if began is None:
                self._slices[loop] = now
                # Runs in the next iteration, ahead of the gates deferred in this one: a new slice.
                loop.call_soon(self._slices.pop, loop, None)
                return
            if now - began < self.budget_s:
                return
            await asyncio.sleep(0)


_default = LoopPacer()


def default_pacer() -> LoopPacer:
    """The process's pacer, shared by every waiting gate."""
    return _default
