"""Clocks for tests and demos. Not for production: a gate's real clock is the system clock.

- :class:`FrozenClock`: time stands still until the test moves it; ``sleep`` moves it.
- :class:`CompressedClock`: time runs ``factor`` times faster than the wall clock (the demo uses
  3600: an hour a second); ``sleep`` sleeps ``seconds / factor`` for real.
- :func:`use_clock`: install a clock for the whole process, so gates and triggers created by a
  framework (``dag.test()``) use it too.

>>> from datetime import datetime, timezone
>>> clock = FrozenClock(datetime(2026, 6, 15, tzinfo=timezone.utc))
>>> with use_clock(clock):
...     default_clock() is clock
True
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from carbon_sensors.clock import Clock, default_clock, set_default_clock
from carbon_sensors.timeutil import as_utc

__all__ = ["CompressedClock", "FrozenClock", "default_clock", "use_clock"]


class FrozenClock:
    """A clock that only moves when told to: by :meth:`advance`, :meth:`set`, or by ``sleep``."""

    def __init__(self, start: datetime) -> None:
        self._now = as_utc(start, "start")
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, moment: datetime) -> None:
        """Jump to ``moment`` (backwards too: clocks do that)."""
        self._now = as_utc(moment, "moment")

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self._now += timedelta(seconds=max(0.0, seconds))
        await asyncio.sleep(0)


class CompressedClock:
    """A clock that starts at ``start`` and runs ``factor`` times faster than real time."""

    def __init__(self, start: datetime, factor: float = 3600.0) -> None:
        if factor <= 0:
            raise ValueError("factor must be positive")
        self.start, self.factor = as_utc(start, "start"), factor
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self._t0) * self.factor)

    def sleep(self, seconds: float) -> Awaitable[None]:
        # asyncio.sleep's own coroutine, as SystemClock returns it: no extra frame per sleeping gate,
        # so what a benchmark measures on this clock is what a triggerer holds on the real one.
        return asyncio.sleep(max(0.0, seconds) / self.factor)


@contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    """Make ``clock`` the process-wide default inside the ``with`` block."""
    previous = set_default_clock(clock)
    try:
        yield clock
    finally:
        set_default_clock(previous)
