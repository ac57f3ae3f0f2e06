"""The carbon gates of one DAG file, read with Airflow's own ``DagBag``, for ``carbon-sensors simulate --dag``.

Finds every gated task (a :class:`~carbon_sensors.sensors.CarbonAwareSensor`, a ``@carbon_aware``
task, an operator wrapped by ``carbon_gated``; mapped ones too, one gate per distinct instance, see
:func:`mapped_gates_of`), its :class:`~carbon_sensors.gate.CarbonGate`, and the
DAG's run times from its timetable (cron strings in the DAG's time zone, timedeltas, presets such as
``@daily``), whatever the DAG's ``start_date``, ``end_date`` or ``catchup`` say: the backtest
replays the schedule over the traces' years. A templated deadline is rendered for each run with
the run's dates (``data_interval_end``, ``logical_date``, ``ds`` ...); one that needs more (a
Variable, an XCom, params) cannot be evaluated, and the backtest asks for ``--slack``.
Imported by :func:`carbon_sensors.gated_files.load_gated_tasks` only; imports Airflow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from carbon_sensors.deadlines import After, NextLocalTime, is_template
from carbon_sensors.errors import CarbonSensorsError, ConfigurationError
from carbon_sensors.gate import CarbonGate
from carbon_sensors.simulate_dag import GatedTask, describe_deadline, relative_deadline
from carbon_sensors.timeutil import parse_utc

__all__ = ["gate_of", "load", "mapped_gates_of"]


def load(path: str | Path, task_id: str | None = None) -> list[GatedTask]:
    """Every gated task in the DAG file at ``path`` (only ``task_id`` if given, as a task id or ``dag_id.task_id``)."""
    path = Path(path)
    from airflow.dag_processing.dagbag import DagBag

    with _quiet():
        bag = DagBag(str(path), safe_mode=False, load_op_links=False)
    if bag.import_errors:
        trace = next(iter(bag.import_errors.values()))
        last = next((line.strip() for line in reversed(trace.strip().splitlines()) if line.strip()), "unknown error")
        raise ConfigurationError(f"the DAG file {path} does not import: {last}; fix it (python {path} shows the whole "
                                 "traceback) and run again")
    if not bag.dags:
        raise ConfigurationError(
            f"{path} defines no DAG; give the file that creates it (a @dag function called at the end of the file, "
            "or a 'with DAG(...)' block)")
    found: list[tuple[Any, Any, CarbonGate, str]] = []
    mapped: dict[int, str] = {}  # index in found -> the mapped instance's label ("zone=FR"), where gates differ
    for dag_id in sorted(bag.dags):
        dag = bag.dags[dag_id]
        for task in dag.tasks:
            gate, kind = gate_of(task)
            if gate is not None:
                found.append((dag, task, gate, kind))
                continue
            for gate, kind, label in mapped_gates_of(task):
                if label:
                    mapped[len(found)] = label
                found.append((dag, task, gate, kind))
    if not found:
        raise ConfigurationError(
            f"DAG {', '.join(sorted(bag.dags))} in {path} has no carbon-gated task (no CarbonAwareSensor, @carbon_aware "
            "task or carbon_gated operator); add a gate to the task to backtest, or give the file that has one")
    dags_of: dict[str, set[str]] = {}
    for d, t, _, _ in found:
        dags_of.setdefault(t.task_id, set()).add(d.dag_id)
    names = [(t.task_id if len(dags_of[t.task_id]) == 1 else f"{d.dag_id}.{t.task_id}")
             + (f"[{mapped[i]}]" if i in mapped else "") for i, (d, t, _, _) in enumerate(found)]
    if task_id is not None:
        chosen = [i for i, (name, (d, t, _, _)) in enumerate(zip(names, found, strict=True))
                  if task_id in (name, t.task_id, f"{d.dag_id}.{t.task_id}")]
        if not chosen:
            raise ConfigurationError(f"--task {task_id} names no gated task in {path}; the gated tasks are: "
                                     f"{', '.join(names)}")
        found, names = [found[i] for i in chosen], [names[i] for i in chosen]
    schedules: dict[str, tuple[Any, str, str | None]] = {}
    out = []
    for name, (dag, task, gate, kind) in zip(names, found, strict=True):
        if dag.dag_id not in schedules:
            schedules[dag.dag_id] = _schedule(dag)
        runs, schedule_text, schedule_problem = schedules[dag.dag_id]
        deadline, deadline_text, deadline_problem = _deadline(dag, gate.deadline)
        out.append(GatedTask(
            name=name, owner=f"DAG {dag.dag_id}", task_id=task.task_id, kind=kind, gate=gate, deadline=deadline,
            deadline_text=deadline_text, runs=runs, schedule_text=schedule_text, deadline_problem=deadline_problem,
            schedule_problem=schedule_problem,
        ))
    return out


def gate_of(task: Any) -> tuple[CarbonGate | None, str]:
    """A task's carbon gate and how it is gated, or (None, "") for an ungated task."""
    own = getattr(task, "carbon_gate", None)  # gated operators and @carbon_aware tasks
    if isinstance(own, CarbonGate):
        cls = type(task)
        base = cls.__bases__[-1].__name__ if cls.__bases__ else cls.__name__
        return own, "@carbon_aware" if base.endswith("DecoratedOperator") else f"carbon_gated({base})"
    sensor = getattr(task, "gate", None)  # CarbonAwareSensor
    if isinstance(sensor, CarbonGate):
        return sensor, type(task).__name__
    return None, ""


def mapped_gates_of(task: Any) -> list[tuple[CarbonGate, str, str]]:
    """A mapped task's carbon gates: (gate, kind, label), one per distinct gate its instances get.

    A mapped ``@carbon_aware`` task or ``carbon_gated`` operator has one gate for every instance (its
    ``carbon=``). A mapped :class:`~carbon_sensors.sensors.CarbonAwareSensor` builds one per instance
    from its ``partial()`` and ``expand()`` arguments; instances whose gates are equal count once,
    labelled by what set them apart (``zone=FR``). Values another task makes at run time cannot be read.
    """
    partial = getattr(task, "partial_kwargs", None)
    cls = getattr(task, "operator_class", None)
    if partial is None or not isinstance(cls, type):
        return []
    base = cls.__bases__[-1].__name__ if cls.__bases__ else cls.__name__
    carbon = partial.get("carbon")
    if carbon is not None:
        from carbon_sensors.operators.carbon import _coerce_gate

        kind = "@carbon_aware" if base.endswith("DecoratedOperator") else f"carbon_gated({base})"
        return [(carbon if isinstance(carbon, CarbonGate) else _coerce_gate(carbon), f"{kind}, mapped", "")]
    from carbon_sensors.sensors import CarbonAwareSensor

    if not issubclass(cls, CarbonAwareSensor):
        return []
    gates: list[tuple[CarbonGate, str, str]] = []
    for instance in _expansions(task):
        label = ",".join(f"{k}={_shown(v)}" for k, v in instance.items() if not _same_everywhere(task, k))
        try:
            sensor = cls(task_id=task.task_id, **{**partial, **instance})
        except CarbonSensorsError as exc:  # Airflow builds mapped instances only at run time: this is their parse
            raise ConfigurationError(f"mapped task {task.task_id}[{label or 'every instance'}]: {exc}") from None
        if all(sensor.gate != gate for gate, _, _ in gates):
            gates.append((sensor.gate, f"{cls.__name__}, mapped", label))
    return gates


def _expansions(task: Any) -> list[dict[str, Any]]:
    """The keyword arguments of each instance of a mapped task, from literal ``expand``/``expand_kwargs`` values."""
    from itertools import product

    value = getattr(getattr(task, "expand_input", None), "value", None)
    if isinstance(value, dict) and all(isinstance(v, list | tuple) for v in value.values()):
        keys = list(value)
        return [dict(zip(keys, combo, strict=True)) for combo in product(*(value[k] for k in keys))]
    if isinstance(value, list | tuple) and all(isinstance(v, dict) for v in value):
        return [dict(v) for v in value]
    raise ConfigurationError(
        f"task {task.task_id} is mapped over values another task makes at run time, which a backtest cannot read; "
        "backtest one instance's settings with --workload, or map over a literal list")


def _same_everywhere(task: Any, key: str) -> bool:
    value = task.expand_input.value
    return isinstance(value, dict) and len(value.get(key, ())) == 1


def _shown(value: Any) -> str:
    return "+".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def _schedule(dag: Any) -> tuple[Callable[[datetime, datetime], list[dict[str, datetime]]] | None, str, str | None]:
    """The DAG's run times as a function of the span, its schedule in words, and why there are none."""
    from airflow.serialization.encoders import coerce_to_core_timetable

    timetable = coerce_to_core_timetable(dag.timetable)
    summary = getattr(timetable, "summary", type(timetable).__name__)
    text = f"{summary} ({type(timetable).__name__}, {getattr(dag, 'timezone', 'UTC')})"
    if not getattr(timetable, "can_be_scheduled", True) or not getattr(timetable, "periodic", True):
        why = {"NullTimetable": "schedule=None runs it only when triggered",
               "OnceTimetable": "schedule='@once' runs it once",
               "ContinuousTimetable": "schedule='@continuous' starts each run when the last ends"}
        name = type(timetable).__name__
        problem = why.get(name) or (f"it runs when its assets are updated ({summary})" if "Asset" in name
                                    else f"its timetable {name} gives no regular run times")
        return None, text, problem

    def runs(start: datetime, end: datetime) -> list[dict[str, datetime]]:
        import pendulum
        from airflow.timetables.base import DataInterval, TimeRestriction

        restriction = TimeRestriction(earliest=pendulum.instance(start), latest=pendulum.instance(end), catchup=True)
        out: list[dict[str, datetime]] = []
        last = None
        try:
            while (info := timetable.next_dagrun_info(last_automated_data_interval=last,
                                                      restriction=restriction)) is not None:
                interval = info.data_interval or DataInterval.exact(info.run_after)
                if last is not None and interval.end <= last.end:
                    break  # a timetable that does not move on
                out.append({"run_after": info.run_after, "data_interval_start": interval.start,
                            "data_interval_end": interval.end, "logical_date": info.logical_date or info.run_after})
                last = interval
        except (NotImplementedError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"DAG {dag.dag_id}'s timetable {type(timetable).__name__} cannot list its run "
                                     f"times ({exc}); give --every, how often it runs (e.g. --every 24h)") from None
        return out

    return runs, text, None


def _deadline(dag: Any, spec: Any) -> tuple[Callable[[Mapping[str, datetime]], datetime] | None, str, str | None]:
    """The deadline of each run from its anchors, in words, and why it cannot be evaluated."""
    if isinstance(spec, After | NextLocalTime):
        text, _ = describe_deadline(spec)
        return relative_deadline(spec), text, None
    if not is_template(spec):
        text, problem = describe_deadline(spec)
        return None, text, problem
    try:
        template = dag.get_template_env().from_string(spec)
    except Exception as exc:  # noqa: BLE001 - any template error means: ask for --slack
        return None, f"template {spec!r}", f"the deadline template {spec!r} does not compile ({exc})"

    def at(anchors: Mapping[str, datetime]) -> datetime:
        try:
            rendered = template.render(**_context(dag, anchors))
            return parse_utc(rendered.strip(), "the rendered deadline")
        except CarbonSensorsError as exc:
            raise ConfigurationError(f"the deadline template {spec!r} rendered as something else than a time with an "
                                     f"offset ({exc})") from None
        except Exception as exc:  # noqa: BLE001 - e.g. jinja2.UndefinedError for var, ti, params
            raise ConfigurationError(f"the deadline template {spec!r} needs more than a run's dates to render "
                                     f"({type(exc).__name__}: {exc})") from None

    return at, f"template {spec!r}, rendered for each run", None


def _context(dag: Any, anchors: Mapping[str, datetime]) -> dict[str, Any]:
    """What a backtest knows of a run's template context: its dates, and Airflow's macros."""
    import pendulum

    moments = {k: pendulum.instance(v) for k, v in anchors.items() if v is not None}
    logical = moments.get("logical_date", moments["run_after"])
    context: dict[str, Any] = {**moments, "ds": logical.format("YYYY-MM-DD"), "ds_nodash": logical.format("YYYYMMDD"),
                               "ts": logical.isoformat(), "ts_nodash": logical.format("YYYYMMDDTHHmmss"),
                               "dag": dag}
    try:
        from airflow.sdk.execution_time import macros

        context["macros"] = macros
    except ImportError:  # pragma: no cover - an Airflow without the SDK's macros: templates needing them fail
        pass
    return context


@contextmanager
def _quiet():
    """Airflow's lines while it fills the DagBag ("Filling up the DagBag", an import error's traceback) stay off
    the command's output (its --json goes to stdout); the command reports an import error itself.

    Airflow's log writers hold the process's own stdout and stderr, so those are redirected too.
    """
    import io
    import os
    import sys
    import tempfile
    from contextlib import redirect_stderr, redirect_stdout

    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        try:
            sys.__stdout__.flush()
            sys.__stderr__.flush()
            saved = os.dup(1), os.dup(2)
        except (AttributeError, OSError, ValueError):  # no file descriptors to redirect here
            yield
            return
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
