"""``CarbonAwareSensor``: put it upstream of heavy tasks; they start in the low-carbon window.

>>> from datetime import timedelta
>>> from carbon_sensors import After
>>> wait = CarbonAwareSensor(task_id="wait_for_clean_power", zone="DE",
...                          deadline=After(hours=8), expected_duration=timedelta(hours=1))
>>> wait.deferrable, wait.gate.home_zone
(True, 'DE')

Deferrable by default (it waits in the triggerer and holds no worker slot); with
``deferrable=False`` it pokes, in ``mode="poke"`` or ``mode="reschedule"``. It returns the decision
(XCom ``return_value``): status ``go`` or ``forced``, zone, planned start, intensities, signal,
source, and the reason in words.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from carbon_sensors.airflow.runtime import GATE_KWARGS, GateRun, build_gate, finish
from carbon_sensors.deadlines import DeadlineSpec
from carbon_sensors.planning import DEFAULT_MIN_SAVING_PCT

if TYPE_CHECKING:
    from carbon_sensors.signals import Source

__all__ = ["CarbonAwareSensor"]


class CarbonAwareSensor(BaseSensorOperator):
    """Waits for a low-carbon window that still meets the deadline; force-starts at the latest start.

    :param zone: the grid zone the work runs in (e.g. ``"DE"``, ``"GB"``, ``"US-CAL-CISO"``); or
        ``zones=[...]`` (home zone first) where the work may also run elsewhere.
    :param deadline: when the downstream work must be finished: an aware datetime, an ISO string,
        a template (``"{{ data_interval_end.add(hours=8) }}"``), ``After(hours=8)`` or
        ``NextLocalTime("06:00", timezone="Europe/Berlin")``. (templated)
    :param expected_duration: how long the gated work takes.
    :param source: where forecasts come from: ``"embedded"`` (default, offline), a spec dict or a Source.
    :param max_delay: never wait longer than this after the task starts.
    :param threshold: start at once when the window's mean intensity is at or below this (gCO2eq/kWh).
    :param min_saving_pct: only wait for savings of at least this percentage (default 3).
    :param safety_margin: kept free before the deadline (default 10 % of the duration, at least 5 min).
    :param on_source_error: after the fallbacks: ``"run_now"`` (default), ``"embedded"`` or ``"fail"``.
    :param conn_id: the Airflow Connection (type ``carbon_intensity``) with the source's credentials.
    :param fallbacks: sources tried in order when ``source`` fails, e.g. ``[{"kind": "neso"}, "embedded"]``.
    :param check_interval: how often a waiting gate re-checks the time and the force-start Variable.
    :param price_source: where energy prices come from (a price source or its spec, e.g.
        ``{"kind": "tariff", "flat": 95.0, "currency": "EUR"}``); with one, the plan, XCom and the
        run record give the price and energy cost next to carbon. The cost settings below need it.
    :param max_cost_increase_pct: only windows whose price is at most this much above starting now.
    :param objective: what the window minimises: ``"carbon"`` (default) or ``"cost"``.
    :param max_intensity: the carbon ceiling of a cost policy (gCO2eq/kWh).
    :param carbon_price_per_tonne: an internal carbon price folding cost and carbon into one figure.
    :param currency: the prices' currency (ISO 4217); a price source quoting another is refused.
    :param persistence_prior: where the source serves measured history (WattTime, NESO), blend each
        forecast hour with the zone's measured past, weighted by how wrong each has been (default
        True); False plans on the forecast as it is.
    :param deferrable: wait in the triggerer (default True) rather than in a worker slot.
    """

    template_fields: Sequence[str] = ("deadline",)
    ui_color = "#d4efdf"
    @property
    def operator_extra_links(self) -> tuple[Any, ...]:  # type: ignore[override]
        """"Carbon plan" on the task instance: its plan, decision trail and record (built when used, not at parse)."""
        from carbon_sensors.plugins.links import CarbonPlanLink

        return (CarbonPlanLink(),)

    def __init__(
        self,
        *,
        deadline: DeadlineSpec,
        expected_duration: timedelta,
        zone: str | None = None,
        zones: list[str] | None = None,
        source: Source | str | dict[str, Any] = "embedded",
        max_delay: timedelta | None = None,
        threshold: float | None = None,
        min_saving_pct: float = DEFAULT_MIN_SAVING_PCT,
        safety_margin: timedelta | None = None,
        on_source_error: str = "run_now",
        check_interval: timedelta = timedelta(minutes=1),
        conn_id: str | None = None,
        fallbacks: list[Source | str | dict[str, Any]] | None = None,
        price_source: Any = None,
        max_cost_increase_pct: float | None = None,
        objective: str = "carbon",
        max_intensity: float | None = None,
        carbon_price_per_tonne: float | None = None,
        currency: str | None = None,
        persistence_prior: bool = True,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deadline = deadline
        self.deferrable = deferrable
        # Every gate keyword above (GATE_KWARGS; a test checks this signature against it).
        self.gate = build_gate(**{name: value for name, value in locals().items() if name in GATE_KWARGS})

    def _run(self, context: Any) -> GateRun:
        # The rendered deadline (templates) replaces the one given at parse time.
        gate = self.gate if self.deadline is self.gate.deadline else _with_deadline(self.gate, self.deadline)
        return GateRun(self, gate, context)

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        run = self._run(context)
        decision = run.first_decision()
        if decision.status == "wait":
            self.defer(trigger=run.trigger(decision), method_name="execute_complete")
        return finish(self, decision.to_event())

    def execute_complete(self, context: Any, event: Any = None, **kwargs: Any) -> Any:
        """Resume from the trigger: log the decision and return it (XCom)."""
        return finish(self, event)

    def poke(self, context: Any) -> PokeReturnValue | bool:
        # A later poke of this try (poke mode: this instance; reschedule mode: Airflow's count) re-plans.
        replan = getattr(self, "_carbon_planned", False) or bool(context.get("task_reschedule_count"))
        decision = self._run(context).first_decision(replan=replan)
        self._carbon_planned = True
        if decision.status == "wait":
            return False
        return PokeReturnValue(is_done=True, xcom_value=finish(self, decision.to_event()))


def _with_deadline(gate: Any, deadline: DeadlineSpec) -> Any:
    from dataclasses import replace

    return replace(gate, deadline=deadline)
