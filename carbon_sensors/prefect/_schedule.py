"""``schedule_in_window``: plan a deployment's run now, create it for its low-carbon window.

The run is created ``Scheduled`` at the planned start, so no worker is held until then. It carries
its gate settings and absolute deadline in its labels; when it starts, a flow decorated with
``@carbon_aware_flow`` re-checks a fresh forecast with them (and may move itself later, never past
the latest start). A flow without the decorator simply starts at the planned time.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from carbon_sensors.clock import default_clock
from carbon_sensors.deadlines import resolve_deadline
from carbon_sensors.gate import CarbonGate, decide, kill_switch_from_env
from carbon_sensors.planning import latest_start
from carbon_sensors.prefect._flow import L_GATE, _Memo
from carbon_sensors.prefect._runtime import run_coro, run_logger
from carbon_sensors.prefect._settings import build_gate_from, gate_to_dict
from carbon_sensors.timeutil import as_utc, to_iso

__all__ = ["ScheduledRun", "aschedule_in_window", "schedule_in_window"]


@dataclass(frozen=True, slots=True)
class ScheduledRun:
    """A flow run created for its low-carbon window, and the plan behind it.

    ``scheduled_time`` is when the run is due (the planned start, or now); ``decision`` is the
    planner's decision event (``Decision.to_event()``: status, zone, intensities, saving, reason).
    """

    flow_run_id: UUID
    flow_run_name: str
    deployment: str
    scheduled_time: datetime
    deadline: datetime
    latest_start: datetime
    decision: dict[str, Any]

    @property
    def reason(self) -> str:
        """The plan in words."""
        return str(self.decision.get("reason", ""))

    @property
    def waits(self) -> bool:
        """Whether the run waits for a later window (rather than being due now)."""
        return self.decision.get("status") == "wait"


async def aschedule_in_window(
    deployment_name: str | UUID,
    *,
    gate: CarbonGate | None = None,
    parameters: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    tags: Iterable[str] | None = None,
    flow_run_name: str | None = None,
    work_queue_name: str | None = None,
    job_variables: dict[str, Any] | None = None,
    now: datetime | None = None,
    **settings: Any,
) -> ScheduledRun:
    """Async :func:`schedule_in_window`; ``settings`` are :func:`~carbon_sensors.prefect.build_gate`'s."""
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    if gate is None:
        if "deadline" not in settings or "expected_duration" not in settings:
            raise TypeError("schedule_in_window needs deadline= and expected_duration= (or a ready gate=)")
        gate = build_gate_from("schedule_in_window", settings)
    elif settings:
        raise TypeError(f"give either gate= or the gate settings, not both ({', '.join(sorted(settings))})")
    now = default_clock().now() if now is None else as_utc(now, "now")
    absolute = resolve_deadline(gate.deadline, {"run_after": now})
    decision = await decide(gate, now=now, deadline=absolute, submitted_at=now, override=kill_switch_from_env())
    start = decision.plan.planned_start if decision.status == "wait" and decision.plan is not None else now
    memo = _Memo(deadline=absolute, submitted_at=now, intensity=decision.intensity_at_submission,
                 signal=decision.signal_at_submission, planned_start=start, status="scheduled",
                 price=decision.price_at_submission)
    labels = {**memo.labels(gate), L_GATE: json.dumps(gate_to_dict(gate), sort_keys=True)}
    async with get_client() as client:
        deployment = await _read_deployment(client, deployment_name)
        # What run_deployment(name, scheduled_time=start, timeout=0, as_subflow=False) does, with the
        # labels in the same request: a run due at once never starts without its deadline.
        flow_run = await client.create_flow_run_from_deployment(
            deployment.id, parameters=parameters or {}, state=Scheduled(scheduled_time=start, message=decision.reason),
            name=flow_run_name, tags=tags, idempotency_key=idempotency_key, work_queue_name=work_queue_name,
            job_variables=job_variables, labels=labels,
        )
    scheduled = _scheduled_time(flow_run, start)
    run_logger().info("Carbon-aware run %s of %s scheduled for %s: %s", flow_run.name, deployment.name,
                      to_iso(scheduled), decision.reason)
    return ScheduledRun(
        flow_run_id=flow_run.id, flow_run_name=flow_run.name, deployment=str(deployment_name),
        scheduled_time=scheduled, deadline=absolute,
        latest_start=latest_start(absolute, gate.expected_duration, gate.policy), decision=decision.to_event(),
    )


def schedule_in_window(deployment_name: str | UUID, **kwargs: Any) -> ScheduledRun:
    """Plan a run of ``deployment_name`` (``"flow-name/deployment-name"`` or its id) and create it for its window.

    Takes the gate settings of :func:`~carbon_sensors.prefect.carbon_aware_flow` (``zone``/``zones``,
    ``deadline``, ``expected_duration``, ``source``, ``block``, ``max_delay``, ``threshold``,
    ``min_saving_pct``, ``safety_margin``, ``on_source_error``, ``check_interval``, ``fallbacks``,
    ``price_source``, ``max_cost_increase_pct``, ``objective``, ``max_intensity``,
    ``carbon_price_per_tonne``, ``currency``, ``persistence_prior``) or ``gate=``, and for the run ``parameters``,
    ``idempotency_key`` (a repeat returns the same run, as first planned), ``tags``, ``flow_run_name``,
    ``work_queue_name`` and ``job_variables``. A relative deadline counts from ``now`` (default: the
    clock). Use :func:`aschedule_in_window` from async code.
    """
    return run_coro(aschedule_in_window(deployment_name, **kwargs))


schedule_in_window.__signature__ = inspect.signature(aschedule_in_window)  # type: ignore[attr-defined]


async def _read_deployment(client: Any, name: str | UUID) -> Any:
    from prefect.exceptions import ObjectNotFound

    from carbon_sensors.errors import ConfigurationError

    try:
        if isinstance(name, UUID):
            return await client.read_deployment(name)
        try:
            return await client.read_deployment(UUID(str(name)))
        except ValueError:
            return await client.read_deployment_by_name(str(name))
    except ObjectNotFound:
        raise ConfigurationError(
            f"no deployment {str(name)!r}; name it 'flow-name/deployment-name' (see `prefect deployment ls`)"
        ) from None


def _scheduled_time(flow_run: Any, planned: datetime) -> datetime:
    """When the run is due, as the server holds it (a repeated idempotency key returns the first plan)."""
    state = flow_run.state
    details = getattr(state, "state_details", None)
    moment = getattr(details, "scheduled_time", None) or flow_run.expected_start_time or planned
    return as_utc(moment)
