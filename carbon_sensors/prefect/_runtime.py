"""Small runtime helpers the Prefect adapter shares (private)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Coroutine
from datetime import datetime
from typing import Any, TypeVar

from carbon_sensors.timeutil import as_utc

T = TypeVar("T")

log = logging.getLogger("carbon_sensors.prefect")


def run_coro(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` from sync code, keeping the caller's context (Prefect's run and settings contexts).

    Without a running loop it runs here; inside one (a notebook, an async caller) it runs on a helper
    thread, in a copy of this context so the Prefect client still talks to the same API.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures

    context = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(context.run, asyncio.run, coro).result()


def run_logger() -> Any:
    """The Prefect run logger where there is a run (its lines reach the UI), else this package's logger."""
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.logging import get_run_logger

    if FlowRunContext.get() is not None or TaskRunContext.get() is not None:
        return get_run_logger()
    return log


def flow_run_anchor(now: datetime) -> datetime:
    """What a relative deadline hangs from: the current flow run's expected start, else its creation, else now.

    A flow run's expected start is the time it was first scheduled for (a cron slot, or the start a
    planner chose); Prefect does not move it when the run is rescheduled, so it stays a fixed anchor.
    Never later than ``now`` (a run does not start before it is due; an injected test clock may say so).
    """
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    flow_run = getattr(context, "flow_run", None)
    for moment in (getattr(flow_run, "expected_start_time", None), getattr(flow_run, "created", None)):
        if isinstance(moment, datetime) and moment.tzinfo is not None:
            return min(as_utc(moment), as_utc(now))
    return as_utc(now)
