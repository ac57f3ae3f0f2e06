"""Metrics through Airflow's own metrics facade, so they go to StatsD or OpenTelemetry as the deployment says.

Names (Airflow adds its ``[metrics]`` prefix, ``airflow.`` by default):

- ``carbon_sensors.waiting_tasks`` (gauge, per triggerer, tag ``hostname``; also
  ``carbon_sensors.waiting_tasks.<hostname>`` for StatsD without tags): gates waiting in that triggerer.
- ``carbon_sensors.gate_wait`` (timing): from the gate's first decision to its start, when it opens.
- ``carbon_sensors.forced_starts`` (counter, tag ``reason``; also ``carbon_sensors.forced_starts.<reason>``).
- ``carbon_sensors.energy_kwh``, ``carbon_sensors.carbon_g.<signal>`` and
  ``carbon_sensors.saved_carbon_g.<signal>`` (counters, when a run record completes). Grams are
  split by signal because average and marginal intensities are never added up.
- ``carbon_sensors.decisions_dropped`` (counter): decisions the trail could not keep.

Every function here swallows its own errors: a metric never fails a task or holds up a gate.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
import threading
from datetime import datetime, timedelta
from typing import Any

__all__ = [
    "emit_waiting",
    "gate_opened",
    "incr",
    "run_recorded",
    "timing",
    "gauge",
    "waiting_changed",
    "waiting_count",
]

log = logging.getLogger(__name__)

PREFIX = "carbon_sensors"
_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
_initialised_pid: int | None = None
_waiting = 0
_waiting_lock = threading.Lock()
_hostname: str | None = None


def _stats() -> Any:
    """Airflow's metrics facade for third-party code, set up from ``[metrics]`` once in processes that have not."""
    global _initialised_pid
    from airflow.sdk.observability import stats

    if _initialised_pid != os.getpid():
        _initialised_pid = os.getpid()
        implementation = sys.modules.get(getattr(stats.initialize, "__module__", ""), None)
        # The task runner sets the facade up; a triggerer's trigger process may not have: do as the task runner does.
        if implementation is not None and getattr(implementation, "_factory", "set") is None:
            from airflow.sdk.configuration import conf
            from airflow.sdk.observability.metrics import stats_utils

            stats.initialize(factory=stats_utils.get_stats_factory(),
                             export_legacy_names=conf.getboolean("metrics", "legacy_names_on", fallback=True))
    return stats


def _safe(part: Any) -> str:
    """One segment of a metric name: letters, digits, ``_`` and ``-`` only."""
    return _UNSAFE.sub("_", str(part))[:100] or "unknown"


def _tags(tags: dict[str, Any] | None) -> dict[str, str] | None:
    return None if not tags else {k: str(v) for k, v in tags.items() if v is not None}


def incr(name: str, count: float = 1, tags: dict[str, Any] | None = None) -> None:
    """Add ``count`` to the counter ``carbon_sensors.<name>``; never raises."""
    try:
        _stats().incr(f"{PREFIX}.{name}", count, tags=_tags(tags))
    except Exception as exc:  # noqa: BLE001 - metrics never fail the work
        log.debug("carbon-sensors metric %s not sent: %s", name, exc)


def gauge(name: str, value: float, tags: dict[str, Any] | None = None) -> None:
    """Set the gauge ``carbon_sensors.<name>``; never raises."""
    try:
        _stats().gauge(f"{PREFIX}.{name}", value, tags=_tags(tags))
    except Exception as exc:  # noqa: BLE001
        log.debug("carbon-sensors metric %s not sent: %s", name, exc)


def timing(name: str, value: timedelta, tags: dict[str, Any] | None = None) -> None:
    """Send the timing ``carbon_sensors.<name>``; never raises."""
    try:
        _stats().timing(f"{PREFIX}.{name}", value, tags=_tags(tags))
    except Exception as exc:  # noqa: BLE001
        log.debug("carbon-sensors metric %s not sent: %s", name, exc)


def _parse(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def gate_opened(event: dict[str, Any], task: Any) -> None:
    """``task``'s gate decided to start (``go`` or ``forced``): its wait, and a forced start by its reason; never raises."""
    try:
        status = event.get("status")
        tags = {"dag_id": task.dag_id, "task_id": task.task_id, "zone": event.get("zone"), "status": status}
        decided, submitted = _parse(event.get("decided_at")), _parse(event.get("submitted_at"))
        if decided is not None and submitted is not None:
            timing("gate_wait", max(timedelta(0), decided - submitted), tags)
        if status == "forced":
            reason = event.get("forced_reason") or "unknown"
            incr("forced_starts", 1, {**tags, "reason": reason})
            incr(f"forced_starts.{_safe(reason)}", 1, tags)
    except Exception as exc:  # noqa: BLE001
        log.debug("carbon-sensors gate metrics not sent: %s", exc)


def run_recorded(record: Any) -> None:
    """A run record completed: its energy, carbon and saved carbon (grams split by signal); never raises."""
    try:
        if getattr(record, "status", "started") == "started":
            return
        key = record.key
        tags = {"dag_id": key.dag_id, "task_id": key.task_id, "zone": record.zone, "team": record.team,
                "signal": record.carbon_signal, "status": record.status}
        if record.energy_kwh is not None:
            incr("energy_kwh", round(float(record.energy_kwh), 9), tags)
        signal = _safe(record.carbon_signal or "unknown")
        if record.carbon_g is not None:
            incr(f"carbon_g.{signal}", round(float(record.carbon_g), 6), tags)
        if record.saved_carbon_g is not None:
            incr(f"saved_carbon_g.{signal}", round(float(record.saved_carbon_g), 6), tags)
    except Exception as exc:  # noqa: BLE001
        log.debug("carbon-sensors run metrics not sent: %s", exc)


def waiting_changed(delta: int) -> None:
    """A gate started (+1) or stopped (-1) waiting in this process (cheap: the event loop calls it)."""
    global _waiting
    with _waiting_lock:
        _waiting = max(0, _waiting + delta)


def waiting_count() -> int:
    """How many gates wait in this process now."""
    return _waiting


def emit_waiting() -> None:
    """Send this process's waiting-gate gauge (the decision trail's background thread calls it); never raises."""
    global _hostname
    try:
        if _hostname is None:
            _hostname = socket.gethostname()
        count = waiting_count()
        gauge("waiting_tasks", count, {"hostname": _hostname})
        gauge(f"waiting_tasks.{_safe(_hostname)}", count)
    except Exception as exc:  # noqa: BLE001
        log.debug("carbon-sensors waiting gauge not sent: %s", exc)
