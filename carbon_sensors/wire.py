"""Trigger kwargs and events across releases: what a rolling upgrade puts between workers and triggerers.

Trigger rows hold the kwargs the worker's release wrote; the triggerer rebuilds them with its own
release, which may be newer (an upgrade while gates wait) or older (a rolling upgrade that has not
reached the triggerers yet). Both must resume the gate, never crash, never lose the task:

- kwargs an earlier release wrote load as they are (kwargs are only ever added, with defaults);
  a kwarg renamed since then is read under its new name (:data:`RENAMED_KWARGS`), one removed is
  dropped (:data:`REMOVED_KWARGS`);
- kwargs this release does not know (a newer release's) are dropped with a warning: they were
  added with a default, and the default is the older behaviour;
- kwargs that still cannot be read give a ``forced`` event at once, whose reason says what to
  upgrade: the task starts, by its latest start, instead of failing in the triggerer;
- on the worker, an event whose ``status`` this release does not know starts the task too
  (:func:`read_event`); an ``error`` event still fails it, as it always has.

>>> kwargs, notes = upgrade_kwargs({"zones": ["DE"], "deadline": "2026-06-15T08:00:00+00:00",
...     "expected_duration_s": 3600.0, "submitted_at": "2026-06-15T00:00:00+00:00", "priority_class": "gold"})
>>> sorted(kwargs), notes
(['deadline', 'expected_duration_s', 'submitted_at', 'zones'], ["ignored 'priority_class' (written by a newer carbon-sensors)"])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "EVENT_STATUSES",
    "REMOVED_KWARGS",
    "RENAMED_KWARGS",
    "REQUIRED_KWARGS",
    "TRIGGER_KWARGS",
    "UNREADABLE_EVENT",
    "UNREADABLE_KWARGS",
    "read_event",
    "upgrade_kwargs",
]

#: Every kwarg ``CarbonWindowTrigger`` takes (a test pins it to ``__init__``), in ``serialize()`` order.
TRIGGER_KWARGS: tuple[str, ...] = (
    "zones", "deadline", "expected_duration_s", "submitted_at", "source", "policy", "on_source_error",
    "check_interval_s", "dag_id", "task_id", "run_id", "map_index", "intensity_at_submission", "fallbacks",
    "signal_at_submission", "waiting_until", "try_number", "price_source", "price_at_submission",
)
#: Without these there is no gate to run (every release has written them).
REQUIRED_KWARGS: tuple[str, ...] = ("zones", "deadline", "expected_duration_s", "submitted_at")
#: old name -> new name, for kwargs renamed since a release wrote them. None has been renamed yet.
RENAMED_KWARGS: dict[str, str] = {}
#: kwargs earlier releases wrote and this one no longer reads. None has been removed yet.
REMOVED_KWARGS: frozenset[str] = frozenset()

#: The statuses a trigger event may have; see :meth:`carbon_sensors.gate.Decision.to_event`.
EVENT_STATUSES = ("go", "forced", "error")
#: ``forced_reason`` of the event a trigger yields when it cannot read its own kwargs.
UNREADABLE_KWARGS = "unreadable_trigger"
#: ``forced_reason`` given to an event whose status this release cannot read.
UNREADABLE_EVENT = "unreadable_event"


def upgrade_kwargs(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``kwargs`` from any release as this release's kwargs, and what was changed, in words."""
    known = set(TRIGGER_KWARGS)
    out: dict[str, Any] = {}
    notes: list[str] = []
    for name, value in kwargs.items():
        if name in RENAMED_KWARGS:
            new = RENAMED_KWARGS[name]
            notes.append(f"read {name!r} as {new!r} (renamed)")
            out.setdefault(new, value)
        elif name in known:
            out[name] = value
        elif name in REMOVED_KWARGS:
            notes.append(f"dropped {name!r} (no longer used)")
        else:
            notes.append(f"ignored {name!r} (written by a newer carbon-sensors)")
    return out, notes


def read_event(event: Any) -> dict[str, Any]:
    """A trigger event as this release reads it: an unknown ``status``, or no dict at all, becomes a ``forced`` start.

    A newer triggerer may yield a status (or a shape) this worker does not know. The trigger only
    fires when the task should start (or on an error, which has its own status), so the task
    starts, and the reason says so.

    >>> read_event({"status": "go_elsewhere", "reason": "cleaner in GB", "zone": "GB"})["forced_reason"]
    'unreadable_event'
    >>> read_event(["go"])["status"]
    'forced'
    """
    if not isinstance(event, Mapping):
        what = f"an event this carbon-sensors cannot read ({str(event)[:200]!r})"
        event = {}
    else:
        event = dict(event)
        what = f"status {event.get('status')!r}, which this carbon-sensors cannot read (its reason: {event.get('reason')!r})"
    if event.get("status") in EVENT_STATUSES:
        return event
    event.update(
        status="forced", forced=True, forced_reason=UNREADABLE_EVENT,
        reason=f"Starting now: the gate's trigger sent {what}; "
               "upgrade carbon-sensors on the workers to the triggerers' version.",
    )
    return event
