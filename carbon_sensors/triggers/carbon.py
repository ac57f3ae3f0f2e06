"""``CarbonWindowTrigger``: waits in the Airflow triggerer for a low-carbon window, never past the latest start.

It sleeps until the next decision point (planned start, forecast refresh, latest start) in steps of
at most ``check_interval_s``, re-reading the clock and the manual override each step; re-plans on
every wake; and yields exactly one JSON event (see :meth:`carbon_sensors.gate.Decision.to_event`).
Errors are never swallowed: they come back as an ``{"status": "error"}`` event.

Kwargs hold only absolute UTC times, zone names, policy numbers and a source spec; never secrets.
Kwargs are only ever added (with defaults), never removed, so rows of older versions still load.
Rows of other releases go through :mod:`carbon_sensors.wire`: renamed kwargs are read under their
new name, unknown (newer) ones are dropped with a warning, and a row that still cannot be read
yields a ``forced`` event at once (``forced_reason: "unreadable_trigger"``) instead of failing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

import carbon_sensors.hooks.carbon  # noqa: F401 - registers the Connection resolver in the triggerer
from carbon_sensors.airflow.settings import kill_switch, match_force_variable, read_force_variable
from carbon_sensors.clock import Clock, default_clock
from carbon_sensors.errors import ConfigurationError
from carbon_sensors.gate import CarbonGate, Decision, Override, wait_for_window
from carbon_sensors.plugins import metrics, trail
from carbon_sensors.timeutil import parse_utc, to_iso
from carbon_sensors.wire import REQUIRED_KWARGS, TRIGGER_KWARGS, UNREADABLE_KWARGS, upgrade_kwargs

__all__ = ["CLASSPATH", "CarbonWindowTrigger"]

CLASSPATH = "carbon_sensors.triggers.carbon.CarbonWindowTrigger"


#: Kwargs added with price-aware gates (default None); a row without them is handed back without them.
_ADDED_WITH_PRICES = frozenset({"price_source", "price_at_submission"})


class CarbonWindowTrigger(BaseTrigger):
    """Fires once, with the decision to start, at the planned low-carbon window or the latest start.

    ``clock`` is an attribute, not a kwarg: tests set ``trigger.clock = FrozenClock(...)``.
    """

    clock: Clock | None = None
    #: Why this trigger's kwargs cannot be read (run() then starts the task at once); set only then.
    unreadable: str | None = None
    _raw: dict[str, Any] | None = None

    def __init__(
        self,
        *,
        zones: list[str] | None = None,
        deadline: str | datetime | None = None,
        expected_duration_s: float | None = None,
        submitted_at: str | datetime | None = None,
        source: dict[str, Any] | None = None,
        policy: dict[str, Any] | None = None,
        on_source_error: str = "run_now",
        check_interval_s: float = 60.0,
        dag_id: str | None = None,
        task_id: str | None = None,
        run_id: str | None = None,
        map_index: int = -1,
        intensity_at_submission: float | None = None,
        fallbacks: list[dict[str, Any]] | None = None,
        signal_at_submission: str | None = None,
        waiting_until: str | datetime | None = None,
        try_number: int | None = None,
        price_source: dict[str, Any] | None = None,
        price_at_submission: float | None = None,
        **other: Any,
    ) -> None:
        super().__init__()
        values = {name: value for name, value in locals().items() if name in TRIGGER_KWARGS}
        if other:  # written by another release: renamed, removed or newer kwargs
            upgraded, notes = upgrade_kwargs(other)
            defaults = type(self).__init__.__kwdefaults__
            values.update({k: v for k, v in upgraded.items() if values.get(k) == defaults.get(k)})  # unless given
            self.log.warning("carbon gate kwargs from another carbon-sensors release: %s", "; ".join(notes))
        try:
            self._setup(**values)
        except Exception as exc:  # noqa: BLE001 - a row this release cannot read still starts its task
            self.unreadable = f"{type(exc).__name__}: {exc}"
            # Kwargs added since the row's release, at their default, were not in it: hand back the row as it came.
            given = {k: v for k, v in values.items() if not (k in _ADDED_WITH_PRICES and v is None)}
            self._raw = {**given, **other}
            self.gate = None  # type: ignore[assignment]
            self.submitted_at = None  # type: ignore[assignment]
            self.dag_id, self.task_id, self.run_id = values.get("dag_id"), values.get("task_id"), values.get("run_id")
            self.map_index, self.try_number = values.get("map_index", -1), values.get("try_number")
            zones = values.get("zones")
            self._zone = str(zones[0]) if isinstance(zones, list | tuple) and zones else ""
            self.log.error("carbon gate kwargs cannot be read (%s); the task will start at once", self.unreadable)

    def _setup(
        self, *, zones, deadline, expected_duration_s, submitted_at, source, policy, on_source_error, check_interval_s,
        dag_id, task_id, run_id, map_index, intensity_at_submission, fallbacks, signal_at_submission, waiting_until,
        try_number, price_source, price_at_submission,
    ) -> None:
        given = locals()
        if missing := [name for name in REQUIRED_KWARGS if given[name] is None]:
            raise ConfigurationError(f"the trigger row lacks {', '.join(missing)}")
        # Only the gate and this task's own facts are kept (no copies of the kwargs): a triggerer
        # holds thousands of these, and serialize() rebuilds the kwargs from them.
        self.gate = _shared(CarbonGate.from_dict(given, deadline=parse_utc(deadline, "deadline")))
        self.submitted_at = parse_utc(submitted_at, "submitted_at")
        self.dag_id, self.task_id, self.run_id, self.map_index = dag_id, task_id, run_id, map_index
        self.intensity_at_submission = intensity_at_submission
        self.signal_at_submission = signal_at_submission
        self.price_at_submission = price_at_submission
        self.waiting_until = None if waiting_until is None else parse_utc(waiting_until, "waiting_until")
        self.try_number = try_number

    @classmethod
    def from_gate(
        cls,
        gate: CarbonGate,
        *,
        submitted_at: datetime,
        deadline: datetime | None = None,
        dag_id: str | None = None,
        task_id: str | None = None,
        run_id: str | None = None,
        map_index: int = -1,
        try_number: int | None = None,
        intensity_at_submission: float | None = None,
        signal_at_submission: str | None = None,
        waiting_until: datetime | None = None,
        price_at_submission: float | None = None,
    ) -> CarbonWindowTrigger:
        """The trigger that waits on ``gate`` for one task: the gate's settings (:meth:`CarbonGate.to_dict`) as
        kwargs, its absolute ``deadline`` (by default the gate's own), and the task's facts."""
        return cls(
            **gate.to_dict(), deadline=gate.deadline if deadline is None else deadline, submitted_at=submitted_at,
            dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=map_index, try_number=try_number,
            intensity_at_submission=intensity_at_submission, signal_at_submission=signal_at_submission,
            waiting_until=waiting_until, price_at_submission=price_at_submission,
        )

    @property
    def deadline(self) -> datetime | None:
        return None if self.gate is None else self.gate.deadline  # type: ignore[return-value]

    @property
    def zones(self) -> list[str]:
        return [] if self.gate is None else list(self.gate.zones)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        if self._raw is not None:  # unreadable: hand the row back as it came
            return CLASSPATH, dict(self._raw)
        values = {
            **self.gate.to_dict(),
            "deadline": to_iso(self.deadline),
            "submitted_at": to_iso(self.submitted_at),
            "dag_id": self.dag_id,
            "task_id": self.task_id,
            "run_id": self.run_id,
            "map_index": self.map_index,
            "intensity_at_submission": self.intensity_at_submission,
            "signal_at_submission": self.signal_at_submission,
            "waiting_until": to_iso(self.waiting_until),
            "try_number": self.try_number,
            "price_at_submission": self.price_at_submission,
        }
        # A gate without prices writes the row an earlier release wrote, so a triggerer not yet upgraded reads it quietly.
        return CLASSPATH, {name: values[name] for name in TRIGGER_KWARGS
                           if not (name in _ADDED_WITH_PRICES and values[name] is None)}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        clock = self.clock or default_clock()
        if self.unreadable is not None:
            yield TriggerEvent(self._unreadable_event(clock))
            return
        metrics.waiting_changed(+1)
        try:
            decision = await wait_for_window(
                self.gate,
                deadline=self.deadline,
                submitted_at=self.submitted_at,
                clock=clock,
                read_override=self._read_override,
                on_decision=self._log_decision,
                intensity_at_submission=self.intensity_at_submission,
                signal_at_submission=self.signal_at_submission,
                waiting_until=self.waiting_until,
                price_at_submission=self.price_at_submission,
                configuration_checked=True,  # the task's first plan used this configuration
            )
            event = decision.to_event()
        except Exception as exc:  # reported, not swallowed: the task raises it on resume
            self.log.exception("carbon gate failed while waiting")
            failed = Decision("error", f"{type(exc).__name__}: {exc}", clock.now(), self.gate.home_zone,
                              submitted_at=self.submitted_at)
            self._record(failed)
            event = failed.to_event()
        finally:
            metrics.waiting_changed(-1)
        yield TriggerEvent(event)

    def _unreadable_event(self, clock: Clock) -> dict[str, Any]:
        """Start the task now: without readable kwargs there is no plan, and the latest start may be any moment."""
        from carbon_sensors import __version__

        reason = (f"Starting now: this triggerer's carbon-sensors {__version__} cannot read the gate's trigger "
                  f"({self.unreadable}); run the same carbon-sensors version on the triggerers as on the workers.")
        return Decision("forced", reason, clock.now(), self._zone, forced_reason=UNREADABLE_KWARGS).to_event()

    def _log_decision(self, decision: Decision) -> None:
        self.log.info("carbon gate %s: %s", decision.status, decision.reason)
        self._record(decision)

    def _record(self, decision: Decision) -> None:
        """Queue the decision for the ledger's decision trail: never blocks the loop, never raises."""
        try:
            if self.run_id is None or not trail.recording_enabled():
                return
            try_number = self.try_number or getattr(getattr(self, "task_instance", None), "try_number", None)
            trail.submit_decision(
                decision, dag_id=self.dag_id, task_id=self.task_id, run_id=self.run_id, try_number=try_number,
                map_index=self.map_index, gate=self.gate, origin=trail.ORIGIN_TRIGGERER,
            )
        except Exception as exc:  # noqa: BLE001 - the trail never holds up a gate
            self.log.debug("carbon gate decision not recorded: %s", exc)

    async def _read_override(self) -> Override | None:
        if self.dag_id is None:
            return None
        return await _overrides.read(self.dag_id, self.task_id or "")


_gates: dict[CarbonGate, CarbonGate] = {}


def _shared(gate: CarbonGate) -> CarbonGate:
    """One object per distinct gate: the mapped tasks of one run wait on equal gates."""
    if len(_gates) >= 4096:
        _gates.clear()
    return _gates.setdefault(gate, gate)


class _OverrideCache:
    """The manual-override Variable and kill switch, read at most once per ``ttl_s`` per triggerer process.

    Thousands of waiting triggers share one read; a read that fails counts as "no override" and is
    logged once, so an unreachable metadata store never stops a gate from meeting its deadline.
    """

    def __init__(self, ttl_s: float = 30.0) -> None:
        self.ttl_s = ttl_s
        self._value: tuple[float, Any] | None = None
        self._inflight: asyncio.Future | None = None
        self._warned = False

    async def read(self, dag_id: str, task_id: str) -> Override | None:
        switch, value = await self._values()
        return switch or match_force_variable(value, dag_id, task_id)

    async def _values(self) -> tuple[Override | None, Any]:
        if self._value is not None and time.monotonic() - self._value[0] < self.ttl_s:
            return self._value[1]
        if self._inflight is not None and self._inflight.get_loop() is asyncio.get_running_loop():
            return await asyncio.shield(self._inflight)
        future = self._inflight = asyncio.get_running_loop().create_future()
        value: tuple[Override | None, Any] = (kill_switch(), None)
        try:
            value = (value[0], await asyncio.to_thread(read_force_variable))
        except Exception as exc:  # noqa: BLE001 - an override we cannot read is no override
            if not self._warned:
                self._warned = True
                logging.getLogger(__name__).warning("cannot read the force-start Variable (%s); ignoring it", exc)
        finally:
            # Even when cancelled: waiters get the kill switch at least, and nobody waits forever.
            self._value = (time.monotonic(), value)
            future.set_result(value)
            self._inflight = None
        return value

    def clear(self) -> None:
        """Forget the cached values (tests, or after changing the Variable in-process)."""
        self._value = None


_overrides = _OverrideCache()
