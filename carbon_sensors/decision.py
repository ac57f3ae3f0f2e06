"""The ``Decision``: one outcome of a carbon gate, and the event a trigger yields and XCom keeps.

>>> from datetime import datetime, timezone
>>> d = Decision("forced", "Starting now: the kill switch is on.", datetime(2026, 6, 15, tzinfo=timezone.utc), "DE",
...              forced_reason="kill_switch")
>>> d.to_event()["status"], d.to_event()["forced"], d.to_event()["forced_reason"]
('forced', True, 'kill_switch')
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from carbon_sensors.planning import Plan
from carbon_sensors.timeutil import to_iso

__all__ = ["Decision"]


@dataclass(frozen=True, slots=True)
class Decision:
    """One outcome of a gate: ``go`` (start, the forecast says so), ``forced`` (start, something
    else says so), ``wait`` (until ``next_check``), or ``error``.

    ``intensity_at_submission`` is the forecast window mean had the job started when the gate first
    decided (the counterfactual: for a first plan that waits, the best start-now option in any allowed
    zone; else the home zone's); ``saving_pct`` in the event compares the planned start with it, as
    the plan's own saving does.

    ``to_event()`` is the JSON dict a trigger yields and the task pushes to XCom.
    """

    status: Literal["go", "forced", "wait", "error"]
    reason: str
    decided_at: datetime
    zone: str
    plan: Plan | None = None
    forced_reason: str | None = None
    fallback: str | None = None
    next_check: datetime | None = None
    intensity_at_submission: float | None = None
    signal_at_submission: str | None = None
    submitted_at: datetime | None = None
    deadline: datetime | None = None
    latest_start: datetime | None = None
    price_at_submission: float | None = None

    def to_event(self) -> dict[str, Any]:
        p = self.plan
        planned = None if p is None else p.intensity_planned
        submitted = self.intensity_at_submission
        return self._carbon_event(p, planned, submitted) | self._price_event(p)

    def _price_event(self, p: Plan | None) -> dict[str, Any]:
        """The planned window's price and its counterfactual, only where the gate had a price source."""
        if p is None or (p.price_currency is None and not p.price_degraded):
            return {}
        planned, submitted = p.price_planned, self.price_at_submission
        change = None if planned is None or not submitted else (planned - submitted) / abs(submitted) * 100.0
        return {
            "price": None if planned is None else round(planned, 4),
            "price_at_submission": None if submitted is None else round(submitted, 4),
            "cost_change_pct": None if change is None else round(change, 3),
            "price_currency": p.price_currency, "price_source": p.price_source, "price_degraded": p.price_degraded,
        }

    def _carbon_event(self, p: Plan | None, planned: float | None, submitted: float | None) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "zone": p.zone if p else self.zone,
            "planned_start": to_iso(p.planned_start) if p else None,
            "latest_start": to_iso(p.latest_start if p else self.latest_start),
            "deadline": to_iso(p.deadline if p else self.deadline),
            "intensity": None if p is None or p.intensity_planned is None else round(p.intensity_planned, 3),
            "intensity_at_submission": None if submitted is None else round(submitted, 3),
            "saving_pct": None if submitted is None or planned is None or submitted <= 0
            else round((submitted - planned) / submitted * 100.0, 3),
            "signal": p.signal if p else None,
            "source": p.source if p else None,
            "forced": self.status == "forced",
            "forced_reason": self.forced_reason,
            "fallback": self.fallback,
            "decided_at": to_iso(self.decided_at),
            "submitted_at": to_iso(self.submitted_at),
        }
