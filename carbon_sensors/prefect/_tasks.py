"""Tasks: wait for a short window inside the running process, or just ask for the plan.

``@carbon_aware_task`` sleeps (asynchronously) until its window, so it holds its worker while it
waits: meant for waits of minutes to an hour, bounded by the policy's ``max_delay`` (one hour unless
you say otherwise). For longer waits use ``@carbon_aware_flow``, which frees the worker.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from carbon_sensors.clock import default_clock
from carbon_sensors.deadlines import resolve_deadline
from carbon_sensors.errors import ConfigurationError
from carbon_sensors.gate import CarbonGate, Decision, decide, kill_switch_from_env, wait_for_window
from carbon_sensors.prefect._flow import arecord_artifact, record_artifact, wait_logger, work_scope
from carbon_sensors.prefect._runtime import flow_run_anchor, run_coro, run_logger
from carbon_sensors.prefect._settings import GATE_SETTINGS, build_gate, build_gate_from
from carbon_sensors.timeutil import as_utc

__all__ = ["DEFAULT_TASK_MAX_DELAY", "carbon_aware_task", "decide_now", "plan_carbon_window"]

#: How long ``@carbon_aware_task`` may wait in its process unless given ``max_delay``.
DEFAULT_TASK_MAX_DELAY = timedelta(hours=1)


def carbon_aware_task(fn: Callable[..., Any] | None = None, /, *, gate: CarbonGate | None = None, **kwargs: Any) -> Any:
    """A task that first waits in its process for a low-carbon window: ``@carbon_aware_task(zone=..., ...)``.

    Takes the same gate settings as :func:`~carbon_sensors.prefect.carbon_aware_flow` (``max_delay``
    defaults to one hour here: the wait holds the worker) or ``gate=``; every other keyword goes to
    ``@task``. A relative deadline counts from the flow run's expected start (or from now outside a
    flow). The task's return value is untouched; :func:`~carbon_sensors.prefect.current_decision`
    gives the decision inside it.
    """
    gate_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in GATE_SETTINGS}
    if gate is None:
        gate_kwargs.setdefault("max_delay", DEFAULT_TASK_MAX_DELAY)
        gate = build_gate(**gate_kwargs)
    elif gate_kwargs:
        raise TypeError(f"give either gate= or the gate settings, not both ({', '.join(gate_kwargs)})")
    task_kwargs = kwargs

    def wrap(target: Callable[..., Any]) -> Any:
        from prefect import Task

        if isinstance(target, Task):
            raise TypeError(
                "@carbon_aware_task takes the place of @task: remove @task and pass its options to "
                "@carbon_aware_task (e.g. @carbon_aware_task(zone='DE', ..., retries=2))"
            )
        if inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target):
            raise TypeError("@carbon_aware_task does not support generator tasks")

        if inspect.iscoroutinefunction(target):

            @functools.wraps(target)
            async def gated(*args: Any, **kw: Any) -> Any:
                decision = await _wait(gate)
                with work_scope(decision.to_event(), gate) as recorder:
                    result = await target(*args, **kw)
                await arecord_artifact(recorder)
                return result

        else:

            @functools.wraps(target)
            def gated(*args: Any, **kw: Any) -> Any:
                decision = run_coro(_wait(gate))
                with work_scope(decision.to_event(), gate) as recorder:
                    result = target(*args, **kw)
                record_artifact(recorder)
                return result

        built = task(gated, **task_kwargs)
        built.carbon_gate = gate
        return built

    return wrap(fn) if fn is not None else wrap


async def _wait(gate: CarbonGate) -> Decision:
    logger = run_logger()
    clock = default_clock()
    now = clock.now()
    anchor = flow_run_anchor(now)
    deadline = resolve_deadline(gate.deadline, {"run_after": anchor})

    waiting = wait_logger(logger, "in this process")

    def say(decision: Decision) -> None:
        waiting(decision)
        if decision.status == "forced":
            logger.warning("Carbon gate FORCED start (%s): %s", decision.forced_reason, decision.reason)
        elif decision.status == "go":
            logger.info("Carbon gate go: %s", decision.reason)

    # Submitted now, not at the flow's start: max_delay bounds this task's own wait.
    return await wait_for_window(gate, deadline=deadline, submitted_at=now, clock=clock, on_decision=say)


async def decide_now(gate: CarbonGate, now: datetime | None = None, anchor: datetime | None = None) -> Decision:
    """One decision for ``gate`` at ``now`` (default: the clock), the deadline resolved from ``anchor``."""
    now = default_clock().now() if now is None else as_utc(now, "now")
    anchor = flow_run_anchor(now) if anchor is None else as_utc(anchor, "anchor")
    deadline = resolve_deadline(gate.deadline, {"run_after": anchor})
    return await decide(gate, now=now, deadline=deadline, submitted_at=min(anchor, now), override=kill_switch_from_env())


@task(name="plan-carbon-window", cache_policy=NO_CACHE)
def plan_carbon_window(*, now: datetime | None = None, **settings: Any) -> dict[str, Any]:
    """A Prefect task: the plan for a job as the decision event dict (``status``, ``planned_start``, ``reason`` ...).

    Takes :func:`~carbon_sensors.prefect.build_gate`'s settings (``zone``, ``deadline``,
    ``expected_duration``, ``source``, ``block`` ...). Decides once and does not wait. A relative
    deadline counts from the flow run's expected start (or from ``now`` outside a flow).
    """
    if now is not None and not isinstance(now, datetime):
        raise ConfigurationError(f"now must be an aware datetime, got {type(now).__name__}")
    gate = build_gate_from("plan_carbon_window", settings)
    decision = run_coro(decide_now(gate, now))
    run_logger().info("Carbon plan (%s): %s", decision.status, decision.reason)
    return decision.to_event()
