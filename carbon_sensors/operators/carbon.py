"""Gate any Airflow operator on a low-carbon window without rewriting it (runtime: :mod:`carbon_sensors.airflow.runtime`).

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

import sys
from datetime import timedelta
from typing import Any

from carbon_sensors.airflow import settings
from carbon_sensors.airflow.runtime import (
    DECISION_XCOM_KEY,
    GATE_KWARGS,
    RECORD_KWARGS,
    RECORD_XCOM_KEY,
    GateRun,
    build_gate,
    finish,
)
from carbon_sensors.airflow.settings import FORCE_CONF_KEY, kill_switch
from carbon_sensors.clock import default_clock
from carbon_sensors.errors import ConfigurationError
from carbon_sensors.gate import CarbonGate

__all__ = [
    "DECISION_XCOM_KEY",
    "FORCE_CONF_KEY",
    "GATE_KWARGS",
    "RECORD_KWARGS",
    "RECORD_XCOM_KEY",
    "CarbonGateMixin",
    "build_gate",
    "carbon_gated",
    "kill_switch",
]


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
            from carbon_sensors.plugins import metrics

            metrics.run_recorded(getattr(recorder, "record", None))
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
        strict = self.strict_recording or settings.strict_recording()
        prices = None
        if prices_file := settings.prices_file():
            from carbon_sensors.accounting import Prices

            prices = Prices.from_env(prices_file)
        return RunRecorder(
            key, event=decision, source=self.carbon_gate.source, price_source=self.carbon_gate.price_source,
            expected_duration=None if expected is None else timedelta(seconds=float(expected)),
            tags=tags_from(context.get("params"), getattr(dag, "tags", None)),
            ledger=settings.ledger_url(), prices=prices, strict=strict,
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
