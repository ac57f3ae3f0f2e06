"""``@carbon_aware_flow``: a flow that waits for its low-carbon window without holding a worker.

When a run of a deployed flow starts, the gate decides first. To wait, the run reschedules itself:
it sets its own state to ``Scheduled`` at the planned start and ends its process (Prefect's
``Pause`` signal); the worker (or ``serve``) starts it again then, and the gate re-checks a fresh
forecast. At the latest start it always runs. A run that is not from a deployment (a flow called
directly, a subflow) has nothing to restart it, so it waits in its own process instead.

What the gate must remember between starts lives in the run's labels (``carbon-sensors.*``): the
absolute deadline and latest start, when the run was submitted, the intensity it would have had
then, the planned start and the number of self-deferrals. The deadline is fixed at the first start
(from the run's expected start, which Prefect never moves), so it never drifts later.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from carbon_sensors import overrides
from carbon_sensors.clock import default_clock
from carbon_sensors.deadlines import resolve_deadline
from carbon_sensors.errors import ConfigurationError, GateError
from carbon_sensors.gate import (
    CarbonGate,
    Decision,
    Override,
    decide,
    kill_switch_from_env,
    wait_for_window,
)
from carbon_sensors.planning import latest_start
from carbon_sensors.prefect._runtime import flow_run_anchor, run_coro, run_logger
from carbon_sensors.prefect._settings import GATE_SETTINGS, build_gate, gate_from_dict
from carbon_sensors.timeutil import parse_utc, to_iso
from carbon_sensors.units import format_carbon, format_energy

__all__ = [
    "DEFAULT_MAX_DEFERRALS",
    "FORCE_VARIABLE",
    "LABEL_PREFIX",
    "START_SLACK",
    "carbon_aware_flow",
    "current_decision",
]

#: Every label the gate writes on a flow run starts with this.
LABEL_PREFIX = "carbon-sensors."
L_GATE = LABEL_PREFIX + "gate"
L_DEADLINE = LABEL_PREFIX + "deadline"
L_LATEST = LABEL_PREFIX + "latest_start"
L_SUBMITTED = LABEL_PREFIX + "submitted_at"
L_INTENSITY = LABEL_PREFIX + "intensity_at_submission"
L_SIGNAL = LABEL_PREFIX + "signal_at_submission"
L_PRICE = LABEL_PREFIX + "price_at_submission"
L_PLANNED = LABEL_PREFIX + "planned_start"
L_DEFERRALS = LABEL_PREFIX + "deferrals"
L_STATUS = LABEL_PREFIX + "status"
L_DECISION = LABEL_PREFIX + "decision"

#: A run started this close to its planned start runs (Prefect may start a run ~0.5 s early).
START_SLACK = timedelta(seconds=5)
#: After this many self-deferrals a run starts whatever the forecast says (a guard against loops).
DEFAULT_MAX_DEFERRALS = 24
#: The Prefect Variable that force-starts gated runs: ``*``, a flow name, or ``flow/deployment``
#: (comma separated or a JSON list; ``fnmatch`` patterns).
FORCE_VARIABLE = "carbon_sensors_force"

_current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("carbon_decision", default=None)


def current_decision() -> dict[str, Any] | None:
    """The decision that let the running gated flow or task start (``Decision.to_event()``), or None."""
    return _current.get()


@contextmanager
def work_scope(event: dict[str, Any], gate: CarbonGate | None = None, *, record: bool = True) -> Iterator[Any]:
    """The one place the gated work runs, with its decision in :func:`current_decision`.

    The work runs under a :class:`~carbon_sensors.recording.RunRecorder` (the same meter and ledger
    records as in Airflow, keyed by the flow run's id), which it yields (None outside a run); pass
    it to :func:`record_artifact` (or ``await arecord_artifact``) afterwards.
    """
    token = _current.set(event)
    recorder = _recorder(event, gate) if record else None
    try:
        if recorder is None:
            yield None
        else:
            with recorder:
                yield recorder
    finally:
        _current.reset(token)


def _recorder(event: dict[str, Any], gate: CarbonGate | None) -> Any:
    """A recorder for the current flow or task run: orchestrator ``prefect``, tags from ``team:search``-style run tags."""
    from prefect.context import FlowRunContext, TaskRunContext

    from carbon_sensors.recording import RunRecorder, tags_from
    from carbon_sensors.records import RunKey

    flow_context, task_context = FlowRunContext.get(), TaskRunContext.get()
    flow_run = getattr(flow_context, "flow_run", None)
    flow_name = getattr(getattr(flow_context, "flow", None), "name", None) or "flow"
    task_run = getattr(task_context, "task_run", None)
    if task_run is not None:  # a gated task: one record per task run try
        name = getattr(getattr(task_context, "task", None), "name", None) or task_run.name
        key = RunKey("prefect", flow_name, name, str(task_run.flow_run_id or task_run.id), int(task_run.run_count or 1),
                     -1)
        tags = [*(getattr(flow_run, "tags", None) or ()), *(task_run.tags or ())]
    elif flow_run is not None:
        key = RunKey("prefect", flow_name, flow_name, str(flow_run.id), int(flow_run.run_count or 1), -1)
        tags = list(flow_run.tags or ())
    else:
        return None  # outside a Prefect run there is no run to key the record to
    expected = gate.expected_duration if gate is not None else None
    return RunRecorder(key, event=event, source=gate.source if gate is not None else None, expected_duration=expected,
                       tags=tags_from(None, tags), price_source=gate.price_source if gate is not None else None)


_ARTIFACT_FIGURES = ("status", "zone", "energy_kwh", "energy_measured", "carbon_g", "saved_carbon_g", "carbon_signal",
                     "carbon_basis", "tokens", "cost_usd", "price_currency", "expected_energy_cost", "energy_cost",
                     "counterfactual_energy_cost", "saved_energy_cost", "delay_s", "duration_s", "forced", "forced_reason",
                     "team", "project")
_ARTIFACT = {"key": "carbon-record", "description": "carbon-sensors: what this run used and saved"}


_SHOWN = {"energy_kwh": format_energy, "carbon_g": format_carbon, "saved_carbon_g": format_carbon}


def _artifact_rows(recorder: Any) -> list[dict[str, Any]]:
    """Each figure's value in base units (as in XCom), and energy and carbon for people in the unit they need."""
    record = recorder.record
    summary = record.summary()
    rows = []
    for name in _ARTIFACT_FIGURES:
        raw = getattr(record, name, None)
        shown = _SHOWN[name](raw) if name in _SHOWN and raw is not None else summary.get(name)
        rows.append({"figure": name, "value": summary.get(name), "shown": "" if shown is None else str(shown)})
    return rows


def record_artifact(recorder: Any) -> None:
    """A table artifact on the run: energy, gCO2e, saved, tokens, cost (never fails the run)."""
    if recorder is None:
        return
    try:
        from prefect.artifacts import create_table_artifact

        create_table_artifact(table=_artifact_rows(recorder), **_ARTIFACT, _sync=True)
    except Exception as exc:  # noqa: BLE001 - a missing artifact never fails the work
        run_logger().warning("carbon-sensors could not attach the run's record artifact: %s", exc)


async def arecord_artifact(recorder: Any) -> None:
    """:func:`record_artifact` for async flows and tasks."""
    if recorder is None:
        return
    try:
        from prefect.artifacts import acreate_table_artifact

        await acreate_table_artifact(table=_artifact_rows(recorder), **_ARTIFACT)
    except Exception as exc:  # noqa: BLE001 - a missing artifact never fails the work
        run_logger().warning("carbon-sensors could not attach the run's record artifact: %s", exc)


def carbon_aware_flow(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    gate: CarbonGate | None = None,
    max_deferrals: int = DEFAULT_MAX_DEFERRALS,
    **kwargs: Any,
) -> Any:
    """Make a flow wait for its low-carbon window: ``@carbon_aware_flow(zone=..., deadline=..., expected_duration=...)``.

    Use it in place of ``@flow``: the gate settings are the Airflow sensor's (``zone``/``zones``,
    ``deadline``, ``expected_duration``, ``source``, ``max_delay``, ``threshold``, ``min_saving_pct``,
    ``safety_margin``, ``on_source_error``, ``check_interval``, ``fallbacks``, and the cost settings
    ``price_source``, ``max_cost_increase_pct``, ``objective``, ``max_intensity``,
    ``carbon_price_per_tonne``, ``currency``, and ``persistence_prior``) with ``block`` for the credentials block, or a ready
    ``gate=CarbonGate(...)``; every other keyword goes to ``@flow``
    (``name=``, ``retries=``, ``log_prints=`` ...). A relative deadline such as ``After(hours=8)``
    counts from the run's expected start.

    Each self-deferral raises the run's own retries budget by one, so waiting never uses up the
    retries you set for failures.
    """
    gate_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in GATE_SETTINGS}
    if gate is None:
        gate = build_gate(**gate_kwargs)
    elif gate_kwargs:
        raise TypeError(f"give either gate= or the gate settings, not both ({', '.join(gate_kwargs)})")
    if isinstance(max_deferrals, bool) or not isinstance(max_deferrals, int) or max_deferrals < 0:
        raise ConfigurationError(f"max_deferrals must be a whole number, zero or more, got {max_deferrals!r}")
    flow_kwargs = kwargs

    def wrap(target: Callable[..., Any]) -> Any:
        from prefect import Flow, flow

        if isinstance(target, Flow):
            raise TypeError(
                "@carbon_aware_flow takes the place of @flow: remove @flow and pass its options to "
                "@carbon_aware_flow (e.g. @carbon_aware_flow(zone='DE', ..., retries=2))"
            )
        if inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target):
            raise TypeError("@carbon_aware_flow does not support generator flows")
        if not callable(target):
            raise TypeError(f"@carbon_aware_flow decorates a function, got {type(target).__name__}")
        flow_retries = flow_kwargs.get("retries") or 0

        if inspect.iscoroutinefunction(target):

            @functools.wraps(target)
            async def gated(*args: Any, **kw: Any) -> Any:
                event = _passed(await _gate_flow_run(gate, max_deferrals, flow_retries))
                with work_scope(event, gate) as recorder:
                    result = await target(*args, **kw)
                await arecord_artifact(recorder)
                return result

        else:

            @functools.wraps(target)
            def gated(*args: Any, **kw: Any) -> Any:
                event = _passed(run_coro(_gate_flow_run(gate, max_deferrals, flow_retries)))
                with work_scope(event, gate) as recorder:
                    result = target(*args, **kw)
                record_artifact(recorder)
                return result

        options = dict(flow_kwargs)
        if "version" not in options:
            options["version"] = _source_version(target)
        built = flow(gated, **options)
        built.carbon_gate = gate
        return built

    return wrap(fn) if fn is not None else wrap


def _source_version(target: Callable[..., Any]) -> str | None:
    """Prefect's default flow version (a hash of the flow's file), taken from the user's file, not ours."""
    from prefect.utilities.hashing import file_hash

    try:
        path = inspect.getsourcefile(target)
        return file_hash(path) if path else None
    except (OSError, TypeError):
        return None


# -- one start of a gated flow run ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Outcome:
    """A gate's answer for one start: the decision event to run with, or the Scheduled state to pause in."""

    event: dict[str, Any] | None = None
    paused_in: Any = None


def _passed(outcome: _Outcome) -> dict[str, Any]:
    """The decision event to run with; raises Prefect's ``Pause`` when the run rescheduled itself."""
    if outcome.paused_in is not None:
        from prefect.exceptions import Pause

        raise Pause(state=outcome.paused_in)
    assert outcome.event is not None
    return outcome.event


async def _gate_flow_run(gate: CarbonGate, max_deferrals: int, flow_retries: int) -> _Outcome:
    """Decide for the current flow run: the decision to start with, or the state it rescheduled itself to."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    flow_run = getattr(context, "flow_run", None)
    flow_name = getattr(getattr(context, "flow", None), "name", None) or "flow"
    logger = run_logger()
    if flow_run is None or flow_run.deployment_id is None:
        outcome = _Outcome(event=(await _wait_in_process(gate, logger)).to_event())
    else:
        outcome = await _decide_deployed(gate, flow_run, flow_name, max_deferrals, flow_retries, logger)
    if outcome.event is not None:
        await _publish(outcome.event, flow_name, logger)
    return outcome


async def _wait_in_process(gate: CarbonGate, logger: Any) -> Decision:
    clock = default_clock()
    now = clock.now()
    anchor = flow_run_anchor(now)
    deadline = resolve_deadline(gate.deadline, {"run_after": anchor})

    return await wait_for_window(gate, deadline=deadline, submitted_at=min(anchor, now), clock=clock,
                                 on_decision=wait_logger(logger, "in this process (the run is not from a deployment)"))


def wait_logger(logger: Any, where: str) -> Callable[[Decision], None]:
    """Logs a waiting gate's plan once, and again whenever a re-plan moves it."""
    last: list[Any] = [None]

    def say(decision: Decision) -> None:
        planned = decision.plan.planned_start if decision.plan is not None else None
        if decision.status == "wait" and planned != last[0]:
            last[0] = planned
            logger.info("Carbon gate waiting %s: %s", where, decision.reason)

    return say


@dataclass(slots=True)
class _Memo:
    """What the gate keeps on the run between starts (its labels)."""

    deadline: datetime
    submitted_at: datetime
    intensity: float | None = None
    signal: str | None = None
    planned_start: datetime | None = None
    deferrals: int = 0
    price: float | None = None
    status: str | None = None
    decision: dict[str, Any] | None = None

    @classmethod
    def from_labels(cls, labels: dict[str, Any]) -> _Memo | None:
        if not labels.get(L_DEADLINE):
            return None
        try:
            decision = json.loads(labels[L_DECISION]) if labels.get(L_DECISION) else None
            return cls(
                deadline=parse_utc(labels[L_DEADLINE], L_DEADLINE),
                submitted_at=parse_utc(labels.get(L_SUBMITTED) or labels[L_DEADLINE], L_SUBMITTED),
                intensity=None if labels.get(L_INTENSITY) in (None, "") else float(labels[L_INTENSITY]),
                signal=labels.get(L_SIGNAL) or None,
                planned_start=parse_utc(labels[L_PLANNED], L_PLANNED) if labels.get(L_PLANNED) else None,
                deferrals=int(labels.get(L_DEFERRALS) or 0),
                status=labels.get(L_STATUS) or None,
                decision=decision if isinstance(decision, dict) else None,
                price=None if labels.get(L_PRICE) in (None, "") else float(labels[L_PRICE]),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"the carbon-sensors labels on this flow run are malformed ({exc})") from None

    def labels(self, gate: CarbonGate) -> dict[str, Any]:
        out: dict[str, Any] = {
            L_DEADLINE: to_iso(self.deadline),
            L_LATEST: to_iso(latest_start(self.deadline, gate.expected_duration, gate.policy)),
            L_SUBMITTED: to_iso(self.submitted_at),
            L_DEFERRALS: self.deferrals,
        }
        if self.intensity is not None:
            out[L_INTENSITY] = round(self.intensity, 3)
        if self.signal:
            out[L_SIGNAL] = self.signal
        if self.price is not None:
            out[L_PRICE] = round(self.price, 4)
        if self.planned_start is not None:
            out[L_PLANNED] = to_iso(self.planned_start)
        if self.status:
            out[L_STATUS] = self.status
        if self.decision is not None:
            out[L_DECISION] = json.dumps(self.decision, sort_keys=True)
        return out


async def _decide_deployed(
    gate: CarbonGate, flow_run: Any, flow_name: str, max_deferrals: int, flow_retries: int, logger: Any
) -> _Outcome:
    from prefect.client.orchestration import get_client

    async with get_client() as client:  # fresh: an in-process retry still holds the labels of its first start
        labels = dict((await client.read_flow_run(flow_run.id)).labels or {})
    memo = _Memo.from_labels(labels)
    if memo is not None and memo.status in ("go", "forced") and memo.decision is not None:
        logger.info("Carbon gate passed on an earlier start of this run (%s); running the retry now.", memo.status)
        return _Outcome(event=memo.decision)
    clock = default_clock()
    now = clock.now()
    replan = memo is not None  # an earlier start of this run planned with this configuration
    if memo is None:
        anchor = flow_run_anchor(now)
        memo = _Memo(deadline=resolve_deadline(gate.deadline, {"run_after": anchor}), submitted_at=min(anchor, now))
    if labels.get(L_GATE):
        gate = gate_from_dict(labels[L_GATE], memo.deadline)
    override = kill_switch_from_env() or await _forced_by_variable(flow_run, flow_name, logger)
    decision = await decide(
        gate, now=now, deadline=memo.deadline, submitted_at=memo.submitted_at, override=override,
        intensity_at_submission=memo.intensity, waiting_until=memo.planned_start, signal_at_submission=memo.signal,
        price_at_submission=memo.price, configuration_checked=replan,
    )
    if memo.intensity is None:
        memo.intensity, memo.signal = decision.intensity_at_submission, decision.signal_at_submission
    if memo.price is None:
        memo.price = decision.price_at_submission
    if decision.status == "wait":
        assert decision.plan is not None
        start = decision.plan.planned_start
        if start - now <= START_SLACK:
            decision = replace(decision, status="go", next_check=None, reason=(
                f"Starting now: the planned start {to_iso(start)} is {(start - now).total_seconds():.1f} s away. "
                f"{decision.reason}"))
        elif memo.deferrals >= max_deferrals:
            decision = replace(decision, status="forced", forced_reason="max_deferrals", next_check=None, reason=(
                f"Starting now: this run has already rescheduled itself {memo.deferrals} times (max_deferrals). "
                f"{decision.reason}"))
        else:
            memo.planned_start, memo.deferrals, memo.status = start, memo.deferrals + 1, "wait"
            async with get_client() as client:
                await client.update_flow_run_labels(flow_run.id, memo.labels(gate))
                await _raise_retries(client, flow_run, flow_retries)
                state = await _reschedule(client, flow_run, start, decision.reason)
            logger.info(
                "Carbon gate: rescheduled this run to %s (self-deferral %d); no worker is held while it waits. %s",
                to_iso(start), memo.deferrals, decision.reason,
            )
            return _Outcome(paused_in=state)
    memo.status, memo.decision = decision.status, decision.to_event()
    async with get_client() as client:
        await client.update_flow_run_labels(flow_run.id, memo.labels(gate))
    return _Outcome(event=memo.decision)


async def _raise_retries(client: Any, flow_run: Any, flow_retries: int) -> None:
    """Give the run one more retry, so the start this deferral costs does not use up one for failures."""
    fresh = await client.read_flow_run(flow_run.id)
    policy = fresh.empirical_policy.model_copy()
    policy.retries = (policy.retries if policy.retries is not None else flow_retries) + 1
    await client.update_flow_run(flow_run.id, empirical_policy=policy)


async def _reschedule(client: Any, flow_run: Any, start: datetime, reason: str) -> Any:
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.states import Scheduled

    result = await client.set_flow_run_state(
        flow_run.id, Scheduled(scheduled_time=start, message=f"Carbon gate: {reason}"), force=True
    )
    if result.status != SetStateStatus.ACCEPT or result.state is None:
        raise GateError(
            f"Prefect did not accept rescheduling this run to {to_iso(start)} ({result.status}); "
            "check the run's state in the UI and start it again"
        )
    return result.state


async def _forced_by_variable(flow_run: Any, flow_name: str, logger: Any) -> Override | None:
    """An override when the Prefect Variable ``carbon_sensors_force`` names this flow (or its deployment)."""
    from prefect.variables import Variable

    try:
        value = await Variable.aget(FORCE_VARIABLE, default=None)
        if value in (None, "", False, [], {}):
            return None
        names = [flow_name]
        if flow_run.deployment_id is not None:
            from prefect.client.orchestration import get_client

            async with get_client() as client:
                deployment = await client.read_deployment(flow_run.deployment_id)
            names.append(f"{flow_name}/{deployment.name}")
    except Exception as exc:  # noqa: BLE001 - an override we cannot read is no override
        logger.warning("Cannot read the Prefect Variable %r (%s); ignoring it.", FORCE_VARIABLE, type(exc).__name__)
        return None
    return match_force(value, names)


def match_force(value: Any, names: list[str]) -> Override | None:
    """An override when ``value`` (``*``, names or ``fnmatch`` patterns) matches one of ``names``."""
    return overrides.match_force(value, names, f"the Prefect Variable {FORCE_VARIABLE!r}")


# -- what a decision leaves behind ------------------------------------------------------------------------

_KEY = re.compile(r"[^a-z0-9]+")


async def _publish(event: dict[str, Any], flow_name: str, logger: Any) -> None:
    """Log the decision in words and attach it to the run as a markdown artifact (never a secret)."""
    if event.get("status") == "forced":
        logger.warning("Carbon gate FORCED start (%s): %s", event.get("forced_reason"), event.get("reason"))
    else:
        logger.info("Carbon gate go: %s", event.get("reason"))
    try:
        from prefect.artifacts import acreate_markdown_artifact
        from prefect.context import FlowRunContext

        if FlowRunContext.get() is None:
            return
        key = "carbon-decision-" + (_KEY.sub("-", flow_name.lower()).strip("-") or "flow")
        await acreate_markdown_artifact(markdown=decision_markdown(event), key=key[:100],
                                        description="Why this run started when it did (carbon-sensors)")
    except Exception as exc:  # noqa: BLE001 - an artifact is a courtesy; it never fails the run
        logger.warning("Could not attach the carbon decision artifact (%s).", type(exc).__name__)


def decision_markdown(event: dict[str, Any]) -> str:
    """A decision event as a small markdown table."""
    rows = [(k, event.get(k)) for k in ("status", "zone", "planned_start", "latest_start", "deadline", "intensity",
                                         "intensity_at_submission", "saving_pct", "signal", "source", "price",
                                         "price_at_submission", "cost_change_pct", "price_currency", "forced_reason",
                                         "fallback", "decided_at") if event.get(k) is not None]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return f"### Carbon gate: {event.get('status')}\n\n{event.get('reason', '')}\n\n| field | value |\n|---|---|\n{table}\n"
