"""Clocks. Everything that needs the time takes a :class:`Clock`, so tests never patch.

Production code uses :class:`SystemClock`. Tests and demos install another clock for the whole
process with :func:`carbon_sensors.testing.use_clock`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "SystemClock", "default_clock", "set_default_clock"]


class Clock(Protocol):
    """Tells the time (aware UTC) and sleeps."""

    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> Awaitable[None]: ...


class SystemClock:
    """The wall clock and ``asyncio.sleep``.

    >>> SystemClock().now().tzinfo is not None
    True
    """

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> Awaitable[None]:
        # Returns asyncio.sleep's own coroutine (no wrapper frame: a triggerer sleeps thousands of
        # these); asyncio is imported here, not at module level, as DAG files import the core.
        import asyncio

        return asyncio.sleep(max(0.0, seconds))


_default: Clock = SystemClock()


def default_clock() -> Clock:
    """The clock gates use when none is injected (the system clock unless a test replaced it)."""
    return _default


def set_default_clock(clock: Clock) -> Clock:
    """Replace the process-wide default clock; return the previous one. Prefer ``testing.use_clock``."""
    global _default
    previous, _default = _default, clock
    return previous
