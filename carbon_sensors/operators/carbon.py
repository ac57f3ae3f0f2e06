"""Gate any Airflow operator on a low-carbon window without rewriting it, and the runtime all gates share.

>>> from datetime import timedelta
>>> from airflow.providers.standard.operators.bash import BashOperator
>>> from carbon_sensors import After, CarbonGate
>>> GatedBash = carbon_gated(BashOperator)
>>> task = GatedBash(task_id="rebuild_index", bash_command="make index",
...                  carbon=CarbonGate(zones="GB", deadline=After(hours=12), expected_duration=timedelta(hours=2)))
>>> task.carbon_gate.zones
('GB',)

Each gated try is metered and recorded in the run ledger (energy, tokens, carbon, saved carbon,
cost, tagged from params or DAG tags such as ``team:search``); a summary goes to XCom under
``carbon_record``. ``record_run=False`` turns that off for one task, ``strict_recording=True`` fails
the task when its record cannot be written (by default a warning, and the record is spooled).

Force-starting (all documented in the README):
- DAG run conf ``{"carbon_sensors_force": true}`` (every gate in that run) or a list of task ids;
- the Airflow Variable ``carbon_sensors_force`` (``*``, ``dag_id`` or ``dag_id.task_id``, comma
  separated or a JSON list; ``fnmatch`` patterns), checked again every ``check_interval`` while waiting;
- the kill switch ``[carbon_sensors] kill_switch = True`` (``AIRFLOW__CARBON_SENSORS__KILL_SWITCH``)
  or ``CARBON_SENSORS_KILL_SWITCH=1``: every gate passes at once.
"""

from __future__ import annotations

import fnmatch
import logging
import sys
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from carbon_sensors.clock import default_clock
from carbon_sensors.deadlines import DeadlineSpec, is_template, resolve_deadline
from carbon_sensors.errors import ConfigurationError, GateError
from carbon_sensors.gate import CarbonGate, Decision, Override, decide, force_patterns, kill_switch_from_env
from carbon_sensors.planning import DEFAULT_MIN_SAVING_PCT, Policy
from carbon_sensors.signals import run_sync
from carbon_sensors.timeutil import as_utc
from carbon_sensors.wire import read_event

if TYPE_CHECKING:
    from carbon_sensors.signals import Source
    from carbon_sensors.triggers.carbon import CarbonWindowTrigger

__all__ = [
    "DECISION_XCOM_KEY",
    "FORCE_CONF_KEY",
    "RECORD_XCOM_KEY",
    "CarbonGateMixin",
    "build_gate",
    "carbon_gated",
    "kill_switch",
]

log = logging.getLogger(__name__)

#: DAG run conf key that force-starts gates in that run.
FORCE_CONF_KEY = "carbon_sensors_force"
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
) -> CarbonGate:
    """A :class:`CarbonGate` from the flat keyword arguments the sensor and decorator take.

    ``conn_id`` names the Airflow Connection holding the source's credentials; it goes into the
    source's spec (never the key itself). ``expected_duration=None`` learns it from the ledger.
    """
    if (zone is None) == (zones is None):
        raise ConfigurationError("give exactly one of zone='DE' or zones=['DE', 'FR'] (home zone first)")
    if conn_id is not None:
        source = _with_conn_id(source, conn_id)
    gate = CarbonGate(
        zones=zone if zone is not None else tuple(zones or ()),
        deadline=deadline,
        expected_duration=expected_duration,
        source=source,
        policy=Policy(max_delay=max_delay, threshold=threshold, min_saving_pct=min_saving_pct, safety_margin=safety_margin),
        on_source_error=on_source_error,
        check_interval=check_interval,
        fallbacks=tuple(fallbacks or ()),
    )
    gate.check_not_past(default_clock().now())
    return gate


def _with_conn_id(source: Any, conn_id: str) -> dict[str, Any]:
    from carbon_sensors.signals import source_from_spec

    spec = {"kind": source} if isinstance(source, str) else dict(source) if isinstance(source, dict) else source.to_spec()
    spec["conn_id"] = conn_id
    if source_from_spec(spec).to_spec().get("conn_id") != conn_id:
        raise ConfigurationError(f"the {spec.get('kind')!r} source takes no connection; remove conn_id={conn_id!r}")
    return spec


GATE_KWARGS = frozenset(build_gate.__kwdefaults__) | {"deadline"}
#: Keyword arguments of gated operators (and the decorator) about the run record, not the gate.
RECORD_KWARGS = frozenset({"record_run", "strict_recording"})


def _conf(key: str, fallback: Any = None) -> Any:
    try:
        from airflow.sdk.configuration import conf

        return conf.get("carbon_sensors", key, fallback=fallback)
    except Exception:  # noqa: BLE001 - an unreadable option is an unset one
        return fallback


def ledger_url() -> str | None:
    """``[carbon_sensors] ledger_url`` (``AIRFLOW__CARBON_SENSORS__LEDGER_URL``), else the ledger's own default."""
    return _conf("ledger_url") or None


def kill_switch() -> Override | None:
    """The global kill switch, from the environment or Airflow's ``[carbon_sensors] kill_switch``."""
    if (switch := kill_switch_from_env()) is not None:
        return switch
    try:
        from airflow.sdk.configuration import conf

        if conf.getboolean("carbon_sensors", "kill_switch", fallback=False):
            return Override("kill_switch", "the kill switch [carbon_sensors] kill_switch is on")
    except Exception as exc:  # noqa: BLE001 - a broken config must not block work
        log.warning("cannot read [carbon_sensors] kill_switch (%s); treating it as off", exc)
    return None


def force_variable_name() -> str:
    try:
        from airflow.sdk.configuration import conf

        return conf.get("carbon_sensors", "force_variable", fallback=FORCE_CONF_KEY)
    except Exception:  # noqa: BLE001
        return FORCE_CONF_KEY


def read_force_variable() -> Any:
    """The force-start Variable's value, or None when unset."""
    from airflow.sdk import Variable

    return Variable.get(force_variable_name(), default=None)


def match_force_variable(value: Any, dag_id: str, task_id: str) -> Override | None:
    """An override when the Variable's patterns match ``dag_id`` or ``dag_id.task_id``."""
    for pattern in force_patterns(value):
        if fnmatch.fnmatchcase(dag_id, pattern) or fnmatch.fnmatchcase(f"{dag_id}.{task_id}", pattern):
            return Override("manual", f"the Variable {force_variable_name()!r} force-starts {pattern!r}")
    return None


def match_run_conf(conf: Any, task_id: str) -> Override | None:
    """An override when the DAG run conf's ``carbon_sensors_force`` is true or names this task."""
    value = (conf or {}).get(FORCE_CONF_KEY) if isinstance(conf, dict) else None
    for pattern in force_patterns(value):
        if fnmatch.fnmatchcase(task_id, pattern):
            return Override("manual", f"the DAG run conf {FORCE_CONF_KEY!r} force-starts this task")
    return None


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

    def first_decision(self) -> Decision:
        if self.gate.expected_duration is None:
            from carbon_sensors.planning import MIN_HISTORY_RUNS

            decision = Decision(
                "forced",
                f"Starting now: expected_duration is learned from the ledger and it holds {self.history_runs} of the "
                f"{MIN_HISTORY_RUNS} successful runs needed; give expected_duration= to plan from the first run.",
                self.now, self.gate.home_zone, forced_reason="no_duration_history", submitted_at=self.submitted_at,
            )
            self._record(decision)
            return decision
        decision = run_sync(
            decide(self.gate, now=self.now, deadline=self.deadline, submitted_at=self.submitted_at, override=self.override())
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
        return CarbonWindowTrigger(
            zones=list(self.gate.zones),
            deadline=self.deadline,
            expected_duration_s=self.gate.expected_duration.total_seconds(),
            submitted_at=self.submitted_at,
            source=self.gate.source.to_spec(),
            policy=self.gate.policy.to_dict(),
            on_source_error=self.gate.on_source_error,
            check_interval_s=self.gate.check_interval.total_seconds(),
            dag_id=self.task.dag_id,
            task_id=self.task.task_id,
            run_id=getattr(ti, "run_id", None),
            map_index=getattr(ti, "map_index", -1) if isinstance(getattr(ti, "map_index", -1), int) else -1,
            intensity_at_submission=first.intensity_at_submission,
            fallbacks=[f.to_spec() for f in self.gate.fallbacks],
            signal_at_submission=first.signal_at_submission,
            waiting_until=first.plan.planned_start if first.plan is not None else None,
            try_number=try_number if isinstance(try_number := getattr(ti, "try_number", None), int) else None,
        )


def finish(task: Any, event: Any) -> dict[str, Any]:
    """Check a decision event, log it in words, and return it for XCom; raise on an error event."""
    if not isinstance(event, dict) or "status" not in event:
        raise GateError(f"the carbon gate resumed with an unexpected event {event!r}; clear the task to re-plan")
    if event["status"] == "error":
        raise GateError(f"the carbon gate failed: {event.get('reason')}; fix the cause and clear the task to retry")
    event = read_event(event)  # a status from a newer triggerer starts the task (see carbon_sensors.wire)
    if event["status"] == "forced":
        task.log.warning("Carbon gate FORCED start (%s): %s", event.get("forced_reason"), event.get("reason"))
    else:
        task.log.info("Carbon gate go: %s", event.get("reason"))
    _metrics().gate_opened(event, task)
    return event


def _metrics() -> Any:
    from carbon_sensors.plugins import metrics

    return metrics


class CarbonGateMixin:
    """Makes an operator wait for its carbon window before its own ``execute`` runs.

    Use :func:`carbon_gated` rather than this class directly. The decision goes to XCom under
    ``carbon_decision``; the operator's own return value is untouched.
    """

    carbon_gate: CarbonGate
    record_run: bool = True
    strict_recording: bool = False

    def execute(self, context: Any) -> Any:
        run = GateRun(self, self.carbon_gate, context)
        decision = run.first_decision()
        if decision.status == "wait":
            self.defer(trigger=run.trigger(decision), method_name="carbon_resume")  # type: ignore[attr-defined]
        event = decision.to_event()
        if run.gate.expected_duration is not None:
            event["expected_duration_s"] = run.gate.expected_duration.total_seconds()
        return self._run_gated(context, event)

    def carbon_resume(self, context: Any, event: Any = None, **kwargs: Any) -> Any:
        """Called by Airflow when the trigger fires: record the decision, then run the real work."""
        return self._run_gated(context, event)

    def _run_gated(self, context: Any, event: Any) -> Any:
        # A resumed task is a fresh process that never ran GateRun: the recorder may read a keyed
        # source (the run's measured intensity), so its Connection lookup must be registered here too.
        import carbon_sensors.hooks.carbon  # noqa: F401

        decision = finish(self, event)
        ti = context["ti"]
        ti.xcom_push(key=DECISION_XCOM_KEY, value=decision)
        if not self.record_run:
            return super().execute(context)  # type: ignore[misc]
        recorder = self._recorder(context, decision)
        try:
            with recorder:
                result = super().execute(context)  # type: ignore[misc]
        finally:
            _metrics().run_recorded(getattr(recorder, "record", None))
        ti.xcom_push(key=RECORD_XCOM_KEY, value=recorder.record.summary())
        return result

    def _recorder(self, context: Any, decision: dict[str, Any]) -> Any:
        from carbon_sensors.recording import RunRecorder, tags_from
        from carbon_sensors.records import RunKey

        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        key = RunKey(
            "airflow", self.dag_id, self.task_id, str(getattr(ti, "run_id", None) or context.get("run_id")),  # type: ignore[attr-defined]
            int(getattr(ti, "try_number", 1) or 1), map_index if isinstance(map_index, int) else -1,
        )
        dag = getattr(self, "dag", None)
        expected = decision.get("expected_duration_s") or (
            self.carbon_gate.expected_duration.total_seconds() if self.carbon_gate.expected_duration else None)
        strict = self.strict_recording or str(_conf("strict_recording", "False")).strip().lower() in ("1", "true", "yes", "on")
        prices = None
        if prices_file := _conf("prices_file"):
            from carbon_sensors.accounting import Prices

            prices = Prices.from_env(prices_file)
        return RunRecorder(
            key, event=decision, source=self.carbon_gate.source,
            expected_duration=None if expected is None else timedelta(seconds=float(expected)),
            tags=tags_from(context.get("params"), getattr(dag, "tags", None)),
            ledger=ledger_url(), prices=prices, strict=strict,
        )


_gated_classes: dict[type, type] = {}


def _plan_link() -> Any:
    """The "Carbon plan" extra link, imported when links are read (serializing, the UI), not when a DAG is parsed."""
    from carbon_sensors.plugins.links import CarbonPlanLink

    return CarbonPlanLink()


def _coerce_gate(carbon: Any) -> CarbonGate:
    if isinstance(carbon, dict):
        return build_gate(**carbon)
    if isinstance(carbon, CarbonGate):
        carbon.check_not_past(default_clock().now())
        return carbon
    raise ConfigurationError(f"carbon= takes a CarbonGate or a dict of its settings, got {type(carbon).__name__}")


def carbon_gated(operator_class: type) -> type:
    """A subclass of ``operator_class`` whose tasks wait for a carbon window first (``carbon=`` kwarg)."""
    if issubclass(operator_class, CarbonGateMixin):
        return operator_class
    if operator_class not in _gated_classes:
        name = f"CarbonGated{operator_class.__name__.lstrip('_')}"

        # Defined on the new class itself so Airflow's metaclass wraps it (default_args, init bookkeeping).
        def __init__(
            self: Any, *args: Any, carbon: CarbonGate | dict[str, Any], record_run: bool = True,
            strict_recording: bool = False, **kwargs: Any,
        ) -> None:
            operator_class.__init__(self, *args, **kwargs)
            self.carbon_gate = _coerce_gate(carbon)
            self.record_run, self.strict_recording = bool(record_run), bool(strict_recording)

        namespace = {"__module__": __name__, "__doc__": operator_class.__doc__, "__init__": __init__}
        links = getattr(operator_class, "operator_extra_links", ())
        if isinstance(links, list | tuple):  # a property computes its own links: leave those alone
            namespace["operator_extra_links"] = property(lambda self, _own=tuple(links): (*_own, _plan_link()))
        cls = type(name, (CarbonGateMixin, operator_class), namespace)
        _gated_classes[operator_class] = cls
        setattr(sys.modules[__name__], name, cls)  # importable by path, as Airflow sometimes needs
    return _gated_classes[operator_class]
