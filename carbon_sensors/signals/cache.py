"""One request per zone, not per task: a per-process forecast cache for live sources.

Keyed by (source kind, base URL, zone, signal, granularity). Entries live for the source's refresh
cadence (``ttl_s``). Concurrent waiters share one in-flight request (single flight), which a waiter
cancelled mid-flight does not cancel. Size is bounded (least recently used entries go first). When a
refresh fails, a recent good forecast is served instead (stale-while-error, up to ``max_stale_s``),
marked ``[stale]`` in its ``source`` so records say which served.

Behind it, a deployment-wide layer (:mod:`carbon_sensors.signals.shared_cache`) can serve what another
process fetched: ``shared=`` a SharedForecastCache, or ``"configured"`` (what :data:`DEFAULT_CACHE`
uses) for the one the settings name; None (the default for a cache of one's own) for none.

>>> ForecastCache(max_entries=8).max_entries
8
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import replace
from typing import Any

from carbon_sensors.errors import ForecastError, SourceAuthError, SourceError
from carbon_sensors.forecast import Forecast

__all__ = ["DEFAULT_CACHE", "STALE_MARK", "ForecastCache"]

log = logging.getLogger(__name__)
STALE_MARK = " [stale]"


class ForecastCache:
    """A bounded, single-flight, stale-while-error cache of forecasts."""

    def __init__(self, max_entries: int = 512, *, shared: Any = None) -> None:
        self.max_entries = max_entries
        self.shared = shared
        self._entries: OrderedDict[Hashable, tuple[float, Forecast]] = OrderedDict()
        self._inflight: dict[Hashable, asyncio.Future] = {}
        self.fetches = 0  # upstream requests made, for tests and benchmarks

    def clear(self) -> None:
        self._entries.clear()
        self._inflight.clear()

    async def get(
        self, key: Hashable, fetch: Callable[[], Awaitable[Forecast]], *, ttl_s: float, max_stale_s: float
    ) -> Forecast:
        entry = self._entries.get(key)
        if entry is not None and time.monotonic() - entry[0] < ttl_s:
            self._entries.move_to_end(key)
            return entry[1]
        loop = asyncio.get_running_loop()
        running = self._inflight.get(key)
        if running is None or running.get_loop() is not loop:
            # The refresh is a task of its own that every caller awaits shielded: a caller cancelled
            # mid-flight (a trigger its triggerer drops) neither wastes the request already sent nor
            # cancels the others waiting for it, and the forecast still reaches this cache and the
            # shared one for the next caller.
            running = self._inflight[key] = loop.create_task(self._refresh(key, fetch, ttl_s, max_stale_s, entry))
            running.add_done_callback(_retrieved)
        return await asyncio.shield(running)

    async def _refresh(self, key: Hashable, fetch: Callable[[], Awaitable[Forecast]], ttl_s: float,
                       max_stale_s: float, entry: tuple[float, Forecast] | None) -> Forecast:
        try:
            self.fetches += 1
            forecast = await self._fetch(key, fetch, ttl_s, max_stale_s)
        except (SourceError, ForecastError) as exc:
            age = time.monotonic() - entry[0] if entry is not None else math.inf
            if entry is not None and age < max_stale_s and not isinstance(exc, SourceAuthError):
                log.warning("refresh failed (%s); serving the forecast from %.0f s ago", exc, age)
                return entry[1] if entry[1].source.endswith(STALE_MARK) else replace(
                    entry[1], source=entry[1].source + STALE_MARK)
            raise
        finally:
            if self._inflight.get(key) is asyncio.current_task():
                del self._inflight[key]
        if forecast.source.endswith(STALE_MARK):  # served stale by the shared layer: not fresh here either
            return forecast
        self._entries[key] = (time.monotonic(), forecast)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return forecast

    async def _fetch(self, key: Hashable, fetch: Callable[[], Awaitable[Forecast]], ttl_s: float,
                     max_stale_s: float) -> Forecast:
        shared = self.shared
        if shared == "configured":
            from carbon_sensors.signals.shared_cache import process_shared_cache

            shared = process_shared_cache()
        if shared is None:
            return await fetch()
        return await shared.get(key, fetch, ttl_s=ttl_s, max_stale_s=max_stale_s)


def _retrieved(task: asyncio.Task) -> None:
    """Marks a refresh's failure as seen: every caller may have been cancelled before it ended."""
    if not task.cancelled():
        task.exception()


#: The cache every live source in this process shares unless given its own.
DEFAULT_CACHE = ForecastCache(shared="configured")
