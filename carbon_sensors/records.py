"""What one task try used and saved: the ``RunRecord`` the meter fills and the ledger stores.

One record per task try, keyed by :class:`RunKey` (orchestrator, DAG or flow, task, run, try, map
index). It is written when the try starts (``status="started"``) and completed when it ends
(``success``, ``failed``) or, when its worker died, closed as ``abandoned`` by ``reconcile``.

Units are in the names: kWh, grams CO2e, gCO2e/kWh, seconds, USD. ``carbon_signal`` says whether the
intensities are ``average`` or ``marginal``; the two are never added up together.

>>> from datetime import datetime, timezone
>>> key = RunKey("airflow", "nightly", "enrich", "scheduled__2026-06-15", 1)
>>> r = RunRecord(key=key, status="started", started_at=datetime(2026, 6, 15, 2, tzinfo=timezone.utc))
>>> r.key.dag_id, r.status, r.energy_kwh
('nightly', 'started', None)
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "CARBON_BASES",
    "RECORD_STATUSES",
    "ComponentEnergy",
    "RunKey",
    "RunRecord",
    "TokenUsage",
]

RecordStatus = Literal["started", "success", "failed", "abandoned"]
RECORD_STATUSES: tuple[str, ...] = ("started", "success", "failed", "abandoned")
#: ``forecast``: priced with the forecast the gate planned on; ``measured``: re-priced with actuals.
CARBON_BASES: tuple[str, ...] = ("forecast", "measured")


@dataclass(frozen=True, slots=True)
class RunKey:
    """Identifies one task try. ``orchestrator`` is ``airflow``, ``prefect`` or ``python``."""

    orchestrator: str
    dag_id: str
    task_id: str
    run_id: str
    try_number: int = 1
    map_index: int = -1


@dataclass(frozen=True, slots=True)
class ComponentEnergy:
    """Energy of one component over a run, and how it was obtained.

    ``component``: ``cpu``, ``gpu`` or ``memory``. ``method``: ``rapl``, ``nvml`` or ``estimate``.
    ``measured`` is False for estimates. ``detail`` says what exactly (devices, watts assumed, share).
    """

    component: str
    method: str
    measured: bool
    energy_kwh: float
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"component": self.component, "method": self.method, "measured": self.measured,
                "energy_kwh": self.energy_kwh, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens one model used in a run (summed over calls)."""

    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass(slots=True)
class RunRecord:
    """One task try's schedule window, energy, tokens, carbon and cost. ``None`` means not known (yet)."""

    key: RunKey
    status: RecordStatus = "started"
    # tags
    team: str | None = None
    project: str | None = None
    cost_centre: str | None = None
    # the schedule window
    submitted_at: datetime | None = None
    planned_start: datetime | None = None
    latest_start: datetime | None = None
    deadline: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    heartbeat_at: datetime | None = None
    zone: str | None = None
    forced: bool = False
    forced_reason: str | None = None
    fallback: str | None = None
    decision_reason: str | None = None
    error: str | None = None
    # energy
    energy_kwh: float | None = None
    energy_measured: bool | None = None
    components: tuple[ComponentEnergy, ...] = ()
    # tokens
    tokens: tuple[TokenUsage, ...] = ()
    # carbon
    carbon_signal: str | None = None
    carbon_source: str | None = None
    #: the gate's source spec (JSON, a connection id at most, never a key), so reconcile can ask it for actuals
    source_spec: dict[str, Any] | None = None
    carbon_basis: str | None = None
    intensity_g_per_kwh: float | None = None
    counterfactual_intensity_g_per_kwh: float | None = None
    carbon_g: float | None = None
    counterfactual_carbon_g: float | None = None
    saved_carbon_g: float | None = None
    # cost
    cost_energy_usd: float | None = None
    cost_tokens_usd: float | None = None
    cost_gpu_usd: float | None = None
    cost_usd: float | None = None
    # market energy price from the gate's price source, per MWh in ``price_currency`` (never converted):
    # what the plan expected for its window, what the run's interval cost, and what starting at submission
    # would have cost; ``energy_cost`` and the others are for the record's energy, in the same currency
    price_currency: str | None = None
    price_source: str | None = None
    expected_price_per_mwh: float | None = None
    price_per_mwh: float | None = None
    counterfactual_price_per_mwh: float | None = None
    expected_energy_cost: float | None = None
    energy_cost: float | None = None
    counterfactual_energy_cost: float | None = None
    saved_energy_cost: float | None = None
    # re-pricing by reconcile: {"carbon_g": [old, new], ...}
    repriced_at: datetime | None = None
    changes: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def prompt_tokens(self) -> int:
        return sum(t.prompt_tokens for t in self.tokens)

    @property
    def completion_tokens(self) -> int:
        return sum(t.completion_tokens for t in self.tokens)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    @property
    def delay_s(self) -> float | None:
        """How long the gate held the work back: from submission to start."""
        if self.submitted_at is None or self.started_at is None:
            return None
        return max(0.0, (self.started_at - self.submitted_at).total_seconds())

    @property
    def deadline_missed(self) -> bool | None:
        if self.deadline is None or self.ended_at is None:
            return None
        return self.ended_at > self.deadline

    def summary(self) -> dict[str, Any]:
        """The short JSON summary that goes to XCom and artifacts (no secrets, no long text)."""
        return {
            "status": self.status,
            "zone": self.zone,
            "duration_s": _r(self.duration_s),
            "delay_s": _r(self.delay_s),
            "energy_kwh": _r(self.energy_kwh, 6),
            "energy_measured": self.energy_measured,
            "tokens": self.total_tokens,
            "carbon_g": _r(self.carbon_g),
            "saved_carbon_g": _r(self.saved_carbon_g),
            "carbon_signal": self.carbon_signal,
            "carbon_basis": self.carbon_basis,
            "cost_usd": _r(self.cost_usd, 6),
            "price_currency": self.price_currency,
            "expected_energy_cost": _r(self.expected_energy_cost, 6),
            "energy_cost": _r(self.energy_cost, 6),
            "counterfactual_energy_cost": _r(self.counterfactual_energy_cost, 6),
            "saved_energy_cost": _r(self.saved_energy_cost, 6),
            "forced": self.forced,
            "forced_reason": self.forced_reason,
            "team": self.team,
            "project": self.project,
        }


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RunRecord))
