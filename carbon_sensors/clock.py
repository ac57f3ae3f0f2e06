"""Clocks. Everything that needs the time takes a :class:`Clock`, so tests never patch.

Production code uses :class:`SystemClock`. Tests and demos install another clock for the whole
process with :func:`carbon_sensors.testing.use_clock`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "SystemClock", "default_clock", "set_default_clock"]


class Clock(Protocol):
    """Tells the time (aware UTC) and sleeps."""

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The wall clock and ``asyncio.sleep``.

    >>> SystemClock().now().tzinfo is not None
    True
    """

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        import asyncio  # here, not at module level: DAG files import the core on every parse

        await asyncio.sleep(max(0.0, seconds))


_default: Clock = SystemClock()


def default_clock() -> Clock:
    """The clock gates use when none is injected (the system clock unless a test replaced it)."""
    return _default


def set_default_clock(clock: Clock) -> Clock:
    """Replace the process-wide default clock; return the previous one. Prefer ``testing.use_clock``."""
    global _default
    previous, _default = _default, clock
    return previous
