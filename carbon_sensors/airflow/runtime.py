"""The Airflow runtime of one gate: its settings from flat keywords, and its evaluation inside one task try.

The sensor, the gated operators and ``@carbon_aware`` all go through this API:

- :func:`build_gate` makes a :class:`~carbon_sensors.gate.CarbonGate` from the sensor's keywords
  (:data:`GATE_KWARGS`); :data:`RECORD_KWARGS` are the run-record keywords of gated operators;
- :class:`GateRun` renders the deadline, reads the overrides, makes the first decision, writes it to
  the decision trail and builds the trigger;
- :func:`finish` checks the decision event a task resumes with and logs it.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from carbon_sensors.airflow.settings import kill_switch, ledger_url, match_force_variable, match_run_conf, read_force_variable
from carbon_sensors.clock import default_clock
from carbon_sensors.deadlines import DeadlineSpec, is_template, resolve_deadline
from carbon_sensors.errors import ConfigurationError, GateError
from carbon_sensors.gate import GATE_SETTINGS, CarbonGate, Decision, Override, decide
from carbon_sensors.planning import DEFAULT_MIN_SAVING_PCT
from carbon_sensors.signals import run_sync
from carbon_sensors.timeutil import as_utc
from carbon_sensors.wire import read_event

if TYPE_CHECKING:
    from carbon_sensors.signals import Source
    from carbon_sensors.triggers.carbon import CarbonWindowTrigger

__all__ = [
    "DECISION_XCOM_KEY",
    "GATE_KWARGS",
    "RECORD_KWARGS",
    "RECORD_XCOM_KEY",
    "GateRun",
    "build_gate",
    "finish",
]

log = logging.getLogger(__name__)

#: XCom key under which a gated operator (not the sensor, which returns it) stores its decision.
DECISION_XCOM_KEY = "carbon_decision"
#: XCom key of the run record's short summary (energy, carbon, saved, cost).
RECORD_XCOM_KEY = "carbon_record"


def build_gate(
    *,
    zone: str | None = None,
    zones: list[str] | tuple[str, ...] | None = None,
    deadline: DeadlineSpec,
    expected_duration: timedelta | None = None,
    source: Source | str | dict[str, Any] = "embedded",
    max_delay: timedelta | None = None,
    threshold: float | None = None,
    min_saving_pct: float = DEFAULT_MIN_SAVING_PCT,
    safety_margin: timedelta | None = None,
    on_source_error: str = "run_now",
    check_interval: timedelta = timedelta(minutes=1),
    conn_id: str | None = None,
    fallbacks: list[Source | str | dict[str, Any]] | None = None,
    price_source: Any = None,
    max_cost_increase_pct: float | None = None,
    objective: str = "carbon",
    max_intensity: float | None = None,
    carbon_price_per_tonne: float | None = None,
    currency: str | None = None,
    persistence_prior: bool = True,
) -> CarbonGate:
    """A :class:`CarbonGate` from the flat keyword arguments the sensor and decorator take.

    ``conn_id`` names the Airflow Connection holding the source's credentials; it goes into the
    source's spec (never the key itself). ``expected_duration=None`` learns it from the ledger.
    """
    settings = {name: value for name, value in locals().items() if name in GATE_SETTINGS}
    if conn_id is not None:
        settings["source"] = _with_conn_id(source, conn_id)
    gate = CarbonGate.from_settings(**settings)
    gate.check_not_past(default_clock().now())
    return gate


def _with_conn_id(source: Any, conn_id: str) -> dict[str, Any]:
    from carbon_sensors.signals import source_from_spec

    spec = {"kind": source} if isinstance(source, str) else dict(source) if isinstance(source, dict) else source.to_spec()
    spec["conn_id"] = conn_id
    if source_from_spec(spec).to_spec().get("conn_id") != conn_id:
        raise ConfigurationError(f"the {spec.get('kind')!r} source takes no connection; remove conn_id={conn_id!r}")
    return spec


#: The keywords :func:`build_gate` takes: the gate's settings, and ``conn_id`` for the source's credentials.
GATE_KWARGS = frozenset(GATE_SETTINGS) | {"conn_id"}
#: Keyword arguments of gated operators (and the decorator) about the run record, not the gate.
RECORD_KWARGS = frozenset({"record_run", "strict_recording"})


class GateRun:
    """One gate evaluated inside one Airflow task try: deadline, overrides, first decision, trigger."""

    def __init__(self, task: Any, gate: CarbonGate, context: Any) -> None:
        # Registers the Connection resolver; imported when a task runs, not when its DAG is parsed.
        import carbon_sensors.hooks.carbon  # noqa: F401

        self.task, self.gate, self.context = task, gate, context
        self.clock = default_clock()
        self.now = self.clock.now()
        self.deadline = self._deadline()
        ti = context.get("ti")
        start = getattr(ti, "start_date", None)
        self.submitted_at = min(as_utc(start), self.now) if isinstance(start, datetime) and start.tzinfo else self.now
        self.history_runs = 0
        if gate.expected_duration is None:
            from carbon_sensors.recording import learned_duration

            learned, self.history_runs = learned_duration(ledger_url(), "airflow", task.dag_id, task.task_id)
            if learned is not None:
                self.gate = replace(gate, expected_duration=learned)
                task.log.info("Carbon gate: expected duration %s, learned from %d runs in the ledger",
                              learned, self.history_runs)

    def _deadline(self) -> datetime:
        spec = self.gate.deadline
        if is_template(spec):
            spec = self.task.render_template(spec, self.context)
        dag_run = self.context.get("dag_run")
        anchors = {
            "data_interval_start": self.context.get("data_interval_start"),
            "data_interval_end": self.context.get("data_interval_end"),
            "logical_date": self.context.get("logical_date"),
            "run_after": getattr(dag_run, "run_after", None),
        }
        return resolve_deadline(spec, anchors)

    def override(self) -> Override | None:
        if (switch := kill_switch()) is not None:
            return switch
        dag_run = self.context.get("dag_run")
        if (manual := match_run_conf(getattr(dag_run, "conf", None), self.task.task_id)) is not None:
            return manual
        try:
            value = read_force_variable()
        except Exception as exc:  # noqa: BLE001 - an override we cannot read is no override
            log.warning("cannot read the force-start Variable (%s); ignoring it", exc)
            return None
        return match_force_variable(value, self.task.dag_id, self.task.task_id)

    def first_decision(self, *, replan: bool = False) -> Decision:
        """The decision of this task try's plan. ``replan``: an earlier poke of this try planned with
        the same configuration, so a configuration that breaks now (a deleted connection) is a source
        failure that the fallbacks and the latest start decide, not an error that fails the task."""
        if self.gate.expected_duration is None:
            from carbon_sensors.planning import MIN_HISTORY_RUNS

            decision = Decision(
                "forced",
                f"Starting now: expected_duration is learned from the ledger and it holds {self.history_runs} of the "
                f"{MIN_HISTORY_RUNS} successful runs needed; give expected_duration= to plan from the first run.",
                self.now, self.gate.home_zone, forced_reason="no_duration_history", submitted_at=self.submitted_at,
                deadline=self.deadline,  # no latest start: it needs the duration this gate does not have yet
            )
            self._record(decision)
            return decision
        decision = run_sync(
            decide(self.gate, now=self.now, deadline=self.deadline, submitted_at=self.submitted_at, override=self.override(),
                   configuration_checked=replan)
        )
        if decision.status == "wait":  # go/forced are logged once, by finish()
            self.task.log.info("Carbon gate waiting: %s", decision.reason)
        self._record(decision)
        return decision

    def _record(self, decision: Decision) -> None:
        """Write the decision to the ledger's decision trail; a failure is a warning, never the task's."""
        try:
            from carbon_sensors.plugins import trail

            if not trail.recording_enabled():
                return
            ti = self.context.get("ti")
            trail.record_now(trail.decision_entry(
                decision, dag_id=self.task.dag_id, task_id=self.task.task_id, run_id=getattr(ti, "run_id", None),
                try_number=getattr(ti, "try_number", None), map_index=getattr(ti, "map_index", -1), gate=self.gate,
                origin=trail.ORIGIN_WORKER,
            ), ledger_url())
        except Exception as exc:  # noqa: BLE001 - the trail never fails a task
            log.warning("cannot record the carbon gate decision (%s); the gate goes on", exc)

    def trigger(self, first: Decision) -> CarbonWindowTrigger:
        from carbon_sensors.triggers.carbon import CarbonWindowTrigger

        ti = self.context.get("ti")
        map_index = getattr(ti, "map_index", -1)
        try_number = getattr(ti, "try_number", None)
        return CarbonWindowTrigger.from_gate(
            self.gate,
            deadline=self.deadline,
            submitted_at=self.submitted_at,
            dag_id=self.task.dag_id,
            task_id=self.task.task_id,
            run_id=getattr(ti, "run_id", None),
            map_index=map_index if isinstance(map_index, int) else -1,
            try_number=try_number if isinstance(try_number, int) else None,
            intensity_at_submission=first.intensity_at_submission,
            signal_at_submission=first.signal_at_submission,
            waiting_until=first.plan.planned_start if first.plan is not None else None,
            price_at_submission=first.price_at_submission,
        )


def finish(task: Any, event: Any) -> dict[str, Any]:
    """Check a decision event, log it in words, and return it for XCom; raise on an error event."""
    if isinstance(event, dict) and event.get("status") == "error":
        raise GateError(f"the carbon gate failed: {event.get('reason')}; fix the cause and clear the task to retry")
    event = read_event(event)  # a status or shape from a newer triggerer starts the task (see carbon_sensors.wire)
    if event["status"] == "forced":
        task.log.warning("Carbon gate FORCED start (%s): %s", event.get("forced_reason"), event.get("reason"))
    else:
        task.log.info("Carbon gate go: %s", event.get("reason"))
    _metrics().gate_opened(event, task)
    return event


def _metrics() -> Any:
    from carbon_sensors.plugins import metrics

    return metrics
