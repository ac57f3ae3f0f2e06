"""What would my DAG have saved? The gated tasks of a DAG (or Prefect flow) file, backtested as written.

A loader reads the file with its own orchestrator and returns one :class:`GatedTask` per carbon
gate: its :class:`~carbon_sensors.gate.CarbonGate` (zones, deadline, expected duration, policy)
and the run times of its schedule. The loaders are adapters (:mod:`carbon_sensors.airflow.dag_gates`
reads a DAG file with Airflow's ``DagBag``, :mod:`carbon_sensors.prefect.flow_gates` a flow file),
reached through :func:`carbon_sensors.gated_files.load_gated_tasks`; this module, core, never imports
them, nor Airflow or Prefect.

Each gated task becomes a :class:`ScheduledWorkload`: one job per scheduled run inside the traces,
submitted when the run starts (``run_after``: the data interval end, for Airflow's schedules) and due
by the gate's own deadline for that run, resolved as the gate resolves it (an ``After(...)`` from its
anchor, a ``NextLocalTime`` in its time zone, a template rendered for the run). The policy goes to
the planner as it is. What the file does not say, a flag gives: ``--slack`` (the deadline, as the
time after each run's data interval end), ``--every`` (the schedule), ``--duration`` (the expected
duration); each also overrides what the file says.

>>> ScheduledWorkload("etl", 1.0, ((0.0, 28800.0), (86400.0, 115200.0))).runs(0, 100000)
[(0.0, 28800.0)]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from carbon_sensors.deadlines import After, NextLocalTime, does_not_fit, is_template, resolve_deadline
from carbon_sensors.errors import CarbonSensorsError, ConfigurationError, DeadlineError, UnknownZoneError
from carbon_sensors.simulate import Workload

__all__ = [
    "GatedTask",
    "Overrides",
    "ScheduledWorkload",
    "describe_deadline",
    "every",
    "relative_deadline",
    "simulate_gated",
]

HOUR = 3600.0
Anchors = Mapping[str, datetime]


@dataclass(frozen=True)
class GatedTask:
    """One carbon gate of a DAG or flow file, with what the backtest needs to replay its runs.

    ``deadline`` gives a run's deadline from its anchors (``run_after``, ``data_interval_end`` ...),
    or is None with ``deadline_problem`` saying why it cannot be evaluated; ``runs`` gives the
    anchors of the scheduled runs between two moments, or is None with ``schedule_problem``.
    """

    name: str  # the workload's name in the output: the task id (dag_id.task_id where two DAGs share one)
    owner: str  # "DAG catalog_enrichment", "flow catalog-enrichment"
    task_id: str
    kind: str  # CarbonAwareSensor, @carbon_aware, carbon_gated(BashOperator), @carbon_aware_flow ...
    gate: Any  # the CarbonGate
    deadline: Callable[[Anchors], datetime] | None
    deadline_text: str
    runs: Callable[[datetime, datetime], list[dict[str, datetime]]] | None
    schedule_text: str
    deadline_problem: str | None = None
    schedule_problem: str | None = None


@dataclass(frozen=True)
class ScheduledWorkload:
    """A workload whose jobs come from a schedule: explicit (submission, deadline) pairs in epoch seconds."""

    name: str
    duration_h: float
    runs_s: tuple[tuple[float, float], ...]

    def runs(self, start_s: float, end_s: float) -> list[tuple[float, float]]:
        """The pairs submitted at or after ``start_s`` whose deadline is at or before ``end_s`` (as :class:`Workload`)."""
        return [(s, d) for s, d in self.runs_s if s >= start_s and d <= end_s]


@dataclass(frozen=True)
class Overrides:
    """What the command's flags give in place of the file: ``--slack``, ``--every``, ``--duration``,
    ``--min-saving-pct``, ``--no-persistence-prior``."""

    slack: timedelta | None = None
    every: timedelta | None = None
    duration: timedelta | None = None
    min_saving_pct: float | None = None
    persistence_prior: bool | None = None


def relative_deadline(spec: After | NextLocalTime) -> Callable[[Anchors], datetime]:
    """A run's deadline from its anchors, as the gate resolves it."""
    def at(anchors: Anchors) -> datetime:
        return resolve_deadline(spec, anchors)

    return at


def describe_deadline(spec: Any, anchor_word: str = "") -> tuple[str, str | None]:
    """The deadline in words, and why a backtest cannot evaluate it (None where it can)."""
    from carbon_sensors.durations import format_span

    if isinstance(spec, After):
        zone = f" ({spec.timezone} calendar days)" if spec.timezone else ""
        span = timedelta(weeks=spec.weeks, days=spec.days, hours=spec.hours, minutes=spec.minutes)
        return f"After: {format_span(span)} after {anchor_word or spec.anchor}{zone}", None
    if isinstance(spec, NextLocalTime):
        return f"NextLocalTime: the next {spec.at} {spec.timezone} after {anchor_word or spec.anchor}", None
    if is_template(spec):
        return f"template {spec!r}", f"the deadline is the template {spec!r}"
    moment = spec.isoformat() if isinstance(spec, datetime) else str(spec)
    return (f"the fixed moment {moment}",
            f"the deadline is the fixed moment {moment}, which no run in the traces' years shares")


def every(period: timedelta) -> Callable[[datetime, datetime], list[dict[str, datetime]]]:
    """Runs every ``period`` from midnight UTC (as ``--workload name:every=...``), each an exact interval."""
    period_s = period.total_seconds()
    if period_s <= 0:
        raise ConfigurationError(f"--every {period} must be longer than zero, e.g. --every 24h")

    def runs(start: datetime, end: datetime) -> list[dict[str, datetime]]:
        start_s, end_s = start.timestamp(), end.timestamp()
        t, out = math.floor(start_s / 86400) * 86400, []
        while t <= end_s:
            if t >= start_s:
                moment = datetime.fromtimestamp(t, UTC)
                out.append(dict.fromkeys(("run_after", "data_interval_start", "data_interval_end", "logical_date"),
                                         moment))
            t += period_s
        return out

    return runs


def _span_text(seconds: float) -> str:
    """A span the workload grammar reads back exactly (8h, 90min, or seconds)."""
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}min"
    return f"{seconds:g}"


def build_workload(
    task: GatedTask, start: datetime, end: datetime, overrides: Overrides | None = None,
    runs_cache: dict | None = None,
) -> tuple[ScheduledWorkload, dict[str, Any]]:
    """The task's workload over ``[start, end]`` and what was read for it; errors name the flag that is missing."""
    from carbon_sensors.durations import format_span

    overrides = overrides or Overrides()

    where = f"{task.owner}, task {task.task_id}"
    duration = overrides.duration or task.gate.expected_duration
    if duration is None:
        raise ConfigurationError(
            f"{where}: expected_duration is None (learned from the run ledger at run time), which a backtest cannot "
            "learn; give --duration, how long the gated work takes (e.g. --duration 90m)")
    if overrides.every is not None:
        runs_of, schedule = every(overrides.every), f"every {format_span(overrides.every)} from 00:00 UTC (--every)"
    elif task.runs is not None:
        runs_of, schedule = task.runs, task.schedule_text
    else:
        raise ConfigurationError(f"{where}: {task.schedule_problem}, so a backtest has no run times; give --every, "
                                 "how often it would run (e.g. --every 24h)")
    if overrides.slack is not None:
        slack = overrides.slack
        problem = does_not_fit(duration, task.gate.policy.margin_for(duration), slack, "of --slack")
        if problem:
            raise DeadlineError(f"{where}: {problem}; give a longer --slack or a shorter --duration")

        def deadline_of(anchors: Anchors) -> datetime:
            return (anchors.get("data_interval_end") or anchors["run_after"]) + slack

        deadline_text = f"{format_span(slack)} after each data interval end (--slack)"
    elif task.deadline is not None:
        deadline_of, deadline_text = task.deadline, task.deadline_text
    else:
        raise ConfigurationError(
            f"{where}: {task.deadline_problem}, which a backtest cannot evaluate for past runs; give --slack, the "
            "time from each run's data interval end to its deadline (e.g. --slack 8h)")
    key = (id(runs_of), start, end)
    cache = runs_cache if runs_cache is not None else {}
    if key not in cache:
        cache[key] = runs_of(start, end)
    pairs = []
    for anchors in cache[key]:
        try:
            due = deadline_of(anchors)
        except CarbonSensorsError as exc:
            raise DeadlineError(f"{where}: {exc}; give --slack to backtest it with a fixed slack instead") from None
        pairs.append((anchors["run_after"].timestamp(), due.timestamp()))
    if not pairs:
        raise ConfigurationError(f"{where}: its schedule ({schedule}) has no run between {start:%Y-%m-%d} and "
                                 f"{end:%Y-%m-%d}, the traces' span; give traces of its years, or --every")
    workload = ScheduledWorkload(task.name, duration.total_seconds() / HOUR, tuple(pairs))
    slacks = sorted({round(d - s) for s, d in pairs})
    info = {
        "workload": task.name, "defined_in": task.owner, "task_id": task.task_id, "gate": task.kind,
        "zones": list(task.gate.zones), "schedule": schedule, "runs": len(pairs), "deadline": deadline_text,
        "slack": _span_text(slacks[0]) if len(slacks) == 1 else
        f"{_span_text(slacks[0])} to {_span_text(slacks[-1])}",
        "expected_duration": _span_text(duration.total_seconds()),
        "from_flags": [f for f, v in (("--slack", overrides.slack), ("--every", overrides.every),
                                      ("--duration", overrides.duration)) if v is not None],
    }
    return workload, info


def equivalent_workload(workload: ScheduledWorkload, start_s: float, end_s: float) -> Workload | None:
    """The plain ``--workload`` with the same jobs over ``[start_s, end_s]``, where the schedule is that regular."""
    runs = workload.runs(start_s, end_s)
    if len(runs) < 2:
        return None
    period_s, slack_s = runs[1][0] - runs[0][0], runs[0][1] - runs[0][0]
    first = runs[0][0]
    day_s = first - math.floor(first / 86400) * 86400
    weekly = period_s == 7 * 86400
    offset_s = day_s if weekly or period_s >= 86400 else day_s % period_s
    try:
        candidate = Workload(workload.name, period_h=period_s / HOUR, duration_h=workload.duration_h,
                             slack_h=slack_s / HOUR, offset_h=offset_s / HOUR,
                             weekday=datetime.fromtimestamp(first, UTC).weekday() if weekly else None)
    except ConfigurationError:
        return None
    return candidate if candidate.runs(start_s, end_s) == runs else None


def workload_spec(w: Workload) -> str:
    """``w`` in the ``--workload`` grammar."""
    parts = [f"every={_span_text(w.period_h * HOUR)}", f"duration={_span_text(w.duration_h * HOUR)}",
             f"slack={_span_text(w.slack_h * HOUR)}"]
    if w.offset_h:
        parts.append(f"offset={_span_text(w.offset_h * HOUR)}")
    if w.weekday is not None:
        parts.append(f"weekday={w.weekday}")
    return f"{w.name}:{','.join(parts)}"


def trace_groups(tasks: Sequence[GatedTask], traces: Sequence[Any]) -> list[list[Any]]:
    """Each task's traces, home zone first, matched by zone name; a zone without a trace is an error."""
    by_zone: dict[str, Any] = {}
    for trace in traces:
        if trace.zone in by_zone:
            raise ConfigurationError(f"two traces for zone {trace.zone!r} ({by_zone[trace.zone].name} and {trace.name});"
                                     " pass one --trace per zone")
        by_zone[trace.zone] = trace
    groups = []
    for task in tasks:
        missing = [z for z in task.gate.zones if z not in by_zone]
        if missing:
            raise UnknownZoneError(
                f"{task.owner}, task {task.task_id} runs in zone(s) {', '.join(task.gate.zones)}, but no --trace is for "
                f"{', '.join(missing)} (the traces are for {', '.join(sorted(by_zone))}); pass a --trace for "
                f"{', '.join(missing)}, e.g. {missing[0]}_2021-2023_hourly.csv (a trace's zone is its file name up to "
                "the first underscore)")
        groups.append([by_zone[z] for z in task.gate.zones])
    return groups


def simulate_gated(
    tasks: Sequence[GatedTask], traces: Sequence[Any], settings: Any, *, overrides: Overrides | None = None,
    prices: Sequence[Any] = (), workers: int | None = None, progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Backtest every gated task with its own zones, schedule, deadline, duration and policy.

    ``settings`` is the rest of the backtest (forecast model, seeds, strategies, overrun); its
    workloads and policy are replaced by each task's. Returns :func:`~carbon_sensors.simulate.simulate`'s
    output for all tasks together, with ``gated``: what was read for each (and the equivalent
    ``--workload`` where there is one) and ``settings.policies``: each task's policy.
    """
    from carbon_sensors.simulate import simulate

    if not tasks:
        raise ConfigurationError("no gated task to backtest")
    overrides = overrides or Overrides()
    out: dict[str, Any] = {}
    gated, results, summary, policies = [], [], {}, {}
    cache: dict = {}
    for task, group in zip(tasks, trace_groups(tasks, traces), strict=True):
        start_s = max(t.actual.starts_s[0] for t in group)
        end_s = min(t.actual.end_s for t in group)
        workload, info = build_workload(task, datetime.fromtimestamp(start_s, UTC), datetime.fromtimestamp(end_s, UTC),
                                        overrides, cache)
        policy = task.gate.policy
        if overrides.min_saving_pct is not None:
            policy = replace(policy, min_saving_pct=overrides.min_saving_pct)
            info["from_flags"].append("--min-saving-pct")
        if overrides.persistence_prior is not None:
            policy = replace(policy, persistence_prior=overrides.persistence_prior)
            info["from_flags"].append("--no-persistence-prior")
        equal = equivalent_workload(workload, start_s, end_s - workload.duration_h * HOUR * 4)
        info["equivalent_workload"] = None if equal is None else workload_spec(equal)
        info["runs"] = len(workload.runs(start_s, end_s - workload.duration_h * HOUR * 4))
        info["policy"] = policy.to_dict()
        zones = {t.zone for t in group}
        one = simulate([group], replace(settings, workloads=(workload,), policy=policy),
                       prices=[p for p in prices if p.zone in zones], workers=workers, progress=progress)
        out = out or one
        gated.append(info)
        results.extend(one["results"])
        summary.update(one["summary"])
        policies[task.name] = info["policy"]
    out["settings"] = {**{k: v for k, v in out["settings"].items() if k != "policy"},
                       "workloads": [t.name for t in tasks], "policies": policies}
    return {**out, "gated": gated, "results": results, "summary": summary}


def describe(gated: Sequence[Mapping[str, Any]]) -> list[str]:
    """What was read for each gated task, in lines for the table's head."""
    lines = []
    for info in gated:
        flags = f" (from {', '.join(info['from_flags'])})" if info["from_flags"] else ""
        policy = info["policy"]
        knobs = ", ".join(f"{k.removesuffix('_s')}={_policy_value(k, v)}" for k, v in policy.items() if v is not None)
        lines.append(f"{info['workload']}: {info['gate']} in {', '.join(info['zones'])} ({info['defined_in']})")
        lines.append(f"  schedule {info['schedule']}: {info['runs']} runs in the traces")
        lines.append(f"  deadline {info['deadline']} (slack {info['slack']}); expected duration "
                     f"{info['expected_duration']}; policy {knobs}{flags}")
        if info.get("equivalent_workload"):
            zones = info["zones"]
            shifting = (f" and --zones-group {','.join(zones)} (its rows with {zones[0]} as home)"
                        if len(zones) > 1 else "")
            lines.append(f"  the same jobs as --workload '{info['equivalent_workload']}'{shifting} with this policy")
    return lines


def _policy_value(key: str, value: Any) -> str:
    return _span_text(value) if key.endswith("_s") else f"{value:g}" if isinstance(value, float) else str(value)
