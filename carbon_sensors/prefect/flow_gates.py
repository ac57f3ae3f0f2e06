"""The carbon gates of one Prefect flow file, for ``carbon-sensors simulate --flow``.

Imports the file (its ``if __name__ == "__main__":`` part does not run) and finds every
``@carbon_aware_flow`` and ``@carbon_aware_task`` at its top level, with its gate (static settings:
zones, deadline, expected duration, policy). A relative deadline counts from each run's scheduled
start, as a deployed run's does. The schedule lives in the deployment, not the flow: where the file
serves or deploys the flow with a literal ``cron=`` or ``interval=`` (``flow.serve(cron="0 0 * * *")``),
that is the schedule (a gated task takes its file's one schedule); otherwise the backtest asks for
``--every``. Imported by :func:`carbon_sensors.gated_files.load_gated_tasks` only; imports Prefect.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from carbon_sensors.deadlines import After, NextLocalTime
from carbon_sensors.errors import CarbonSensorsError, ConfigurationError
from carbon_sensors.gate import CarbonGate
from carbon_sensors.simulate_dag import GatedTask, describe_deadline, every, relative_deadline

__all__ = ["load", "served_schedules"]

_DEPLOYING = ("serve", "deploy", "to_deployment")


def load(path: str | Path, task_id: str | None = None) -> list[GatedTask]:
    """Every gated flow and task in the flow file at ``path`` (only ``task_id`` if given: its name or variable)."""
    from prefect import Flow, Task

    path = Path(path)
    module = _import(path)
    objects = {name: value for name, value in vars(module).items() if isinstance(value, Flow | Task)}
    if not any(isinstance(v, Flow) for v in objects.values()):
        raise ConfigurationError(f"{path} defines no Prefect flow at its top level; give the file that defines the flow")
    gated = {name: value for name, value in objects.items() if isinstance(getattr(value, "carbon_gate", None), CarbonGate)}
    if not gated:
        raise ConfigurationError(
            f"the flow(s) {', '.join(sorted(v.name for v in objects.values() if isinstance(v, Flow)))} in {path} have "
            "no carbon gate (no @carbon_aware_flow or @carbon_aware_task); add one, or give the file that has it")
    if task_id is not None:
        chosen = {n: v for n, v in gated.items() if task_id in (n, v.name)}
        if not chosen:
            raise ConfigurationError(f"--task {task_id} names no gated flow or task in {path}; the gated ones are: "
                                     f"{', '.join(v.name for v in gated.values())}")
        gated = chosen
    schedules = served_schedules(path.read_text())
    out = []
    for variable, obj in gated.items():
        gate: CarbonGate = obj.carbon_gate
        is_flow = isinstance(obj, Flow)
        found = schedules.get(variable) if is_flow else (next(iter(schedules.values())) if len(schedules) == 1 else None)
        runs, schedule_text, problem = _schedule(found, obj.name, is_flow)
        spec = gate.deadline
        deadline_text, deadline_problem = describe_deadline(spec, "the run's scheduled start")
        out.append(GatedTask(
            name=obj.name, owner=f"flow {obj.name}" if is_flow else f"task {obj.name}", task_id=obj.name,
            kind="@carbon_aware_flow" if is_flow else "@carbon_aware_task", gate=gate,
            deadline=relative_deadline(spec) if isinstance(spec, After | NextLocalTime) else None,
            deadline_text=deadline_text, runs=runs, schedule_text=schedule_text,
            deadline_problem=deadline_problem, schedule_problem=problem,
        ))
    return out


def _import(path: Path) -> Any:
    """The flow file as a module (not ``__main__``), its folder importable while it loads."""
    name = f"_carbon_sensors_flow_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"{path} is not a Python file; give the flow's .py file")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except CarbonSensorsError as exc:
        raise ConfigurationError(f"the flow file {path} does not import: {type(exc).__name__}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - whatever the file raises, the user fixes the file
        raise ConfigurationError(f"the flow file {path} does not import: {type(exc).__name__}: {exc}; fix it "
                                 f"(python {path} shows the whole traceback) and run again") from None
    finally:
        sys.path.remove(folder)
    return module


def served_schedules(source: str) -> dict[str, tuple[str, Any]]:
    """``{variable: ("cron", "0 0 * * *") | ("interval", seconds)}`` from ``variable.serve(cron=...)`` calls.

    Only literal values count (a cron string, an interval in seconds or ``timedelta(hours=...)``).

    >>> served_schedules("f.serve(name='n', cron='0 0 * * *')")
    {'f': ('cron', '0 0 * * *')}
    """
    found: dict[str, tuple[str, Any]] = {}
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _DEPLOYING
                and isinstance(node.func.value, ast.Name)):
            continue
        for keyword in node.keywords:
            value = _literal(keyword.value)
            if keyword.arg == "cron" and isinstance(value, str):
                found[node.func.value.id] = ("cron", value)
            elif keyword.arg == "interval" and isinstance(value, int | float | timedelta):
                seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
                found[node.func.value.id] = ("interval", seconds)
    return found


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute) and (
            getattr(node.func, "id", None) or getattr(node.func, "attr", None)) == "timedelta":
        try:
            return timedelta(**{k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg})
        except (ValueError, TypeError):
            return None
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def _schedule(found: tuple[str, Any] | None, name: str, is_flow: bool) -> tuple[Callable | None, str, str | None]:
    if found is None:
        where = "the flow" if is_flow else "the task's flow"
        return None, "", (f"the file serves {where} {name} on no literal cron= or interval= (its schedule is in the "
                          "deployment)")
    kind, value = found
    if kind == "interval":
        return every(timedelta(seconds=value)), f"interval {timedelta(seconds=value)} (served in the file)", None
    return _cron_runs(value), f"cron {value!r} (served in the file)", None


def _cron_runs(expression: str) -> Callable[[datetime, datetime], list[dict[str, datetime]]]:
    """The slots of a cron schedule, as Prefect's scheduler computes them (UTC)."""
    from prefect.server.schemas.schedules import CronSchedule

    from carbon_sensors.prefect._runtime import run_coro

    schedule = CronSchedule(cron=expression, timezone="UTC")

    def runs(start: datetime, end: datetime) -> list[dict[str, datetime]]:
        out: list[dict[str, datetime]] = []
        cursor = start
        while True:
            dates = [d for d in run_coro(schedule.get_dates(n=500, start=cursor, end=end)) if d <= end]
            fresh = [d for d in dates if not out or d.timestamp() > out[-1]["run_after"].timestamp()]
            if not fresh:
                return out
            for d in fresh:
                moment = datetime.fromtimestamp(d.timestamp(), UTC)
                out.append(dict.fromkeys(("run_after", "data_interval_start", "data_interval_end", "logical_date"),
                                         moment))
            cursor = out[-1]["run_after"] + timedelta(seconds=1)

    return runs
