"""The source interface every signal source implements (async first), and its sync facade."""

from __future__ import annotations

from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar, runtime_checkable

from carbon_sensors.forecast import Forecast, Signal

__all__ = ["Source", "run_sync"]

T = TypeVar("T")


@runtime_checkable
class Source(Protocol):
    """Where forecasts come from.

    ``fetch`` returns a :class:`Forecast` covering at least ``[start, end]`` where the source can,
    raising an error from :mod:`carbon_sensors.errors` where it cannot. ``refresh_interval`` is how
    often a fresher forecast may appear (None: never, the data is static). ``to_spec()`` is a
    JSON-able description (never a secret) that :func:`carbon_sensors.signals.source_from_spec`
    turns back into an equal source, so a trigger can carry it.
    """

    kind: str
    signal: Signal
    refresh_interval: timedelta | None

    async def fetch(self, zone: str, start: datetime, end: datetime, *, now: datetime) -> Forecast: ...

    def check_zone(self, zone: str) -> None: ...

    def to_spec(self) -> dict[str, Any]: ...


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from sync code, even where an event loop is already running."""
    import asyncio
    import concurrent.futures

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
