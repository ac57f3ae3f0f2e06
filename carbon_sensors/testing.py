"""Clocks for tests and demos. Not for production: a gate's real clock is the system clock.

- :class:`FrozenClock`: time stands still until the test moves it; ``sleep`` moves it.
- :class:`CompressedClock`: time runs ``factor`` times faster than the wall clock (the demo uses
  3600: an hour a second) from the first wait on it; ``sleep`` sleeps ``seconds / factor`` for real.
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
    """A clock that starts at ``start`` and runs ``factor`` times faster than real time.

    It stands at ``start`` until something first sleeps on it (a gate's first wait), so the seconds a
    framework takes to start up (``dag.test()`` parsing the DAG again, a metadata database) are not
    multiplied into simulated hours before the gate has made its first plan. ``running=True``
    starts it at once instead, for clocks that several processes must agree on.

    >>> from datetime import datetime, timezone
    >>> clock = CompressedClock(datetime(2026, 6, 15, 18, tzinfo=timezone.utc), factor=3600)
    >>> clock.now().hour  # however long ago it was made: time runs from the first wait
    18
    """

    def __init__(self, start: datetime, factor: float = 3600.0, *, running: bool = False) -> None:
        if factor <= 0:
            raise ValueError("factor must be positive")
        self.start, self.factor = as_utc(start, "start"), factor
        self._t0: float | None = time.monotonic() if running else None

    def now(self) -> datetime:
        if self._t0 is None:
            return self.start
        return self.start + timedelta(seconds=(time.monotonic() - self._t0) * self.factor)

    def sleep(self, seconds: float) -> Awaitable[None]:
        if self._t0 is None:
            self._t0 = time.monotonic()
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
