"""The backtest's strategies: when (and where) each starts a job, on the forecasts issued so far.

``now`` starts at submission; ``oracle`` plans once on the actuals (perfect foresight); ``commit_once``
plans once on the forecast issued at submission; ``replan`` plans at every hourly refresh on the latest
forecast as it is; ``carbon_sensors`` waits in the gate (:func:`carbon_sensors.gate.wait_for_window`)
against a source serving the forecast issued at the last hour. Given price traces, each plans on
the price forecasts too (``plan(..., prices=)``, ``CarbonGate(price_source=)``), its cost ceiling
measured against the price at submission, as a waiting gate's is.
Used by :mod:`carbon_sensors.simulate`; imports nothing of it.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from carbon_sensors.errors import ConfigurationError, ForecastCoverageError, SourceDataError
from carbon_sensors.forecast import Forecast
from carbon_sensors.planning import plan

__all__ = ["Prices", "SimulatedSource", "start_time", "strategies_on_prices"]

HOUR = 3600.0

class SimulatedSource:
    """A Source serving, at any moment, the forecast issued at the last hour: what a live API would."""

    kind = "simulated"
    refresh_interval = timedelta(hours=1)

    def __init__(self, forecasts: dict[str, Any], signal: str, measured: dict[str, Forecast] | None = None):
        self.forecasts, self.signal = forecasts, signal
        self.measured = measured or {}
        self._history: dict[tuple[str, float, float], Forecast] = {}
        self._indexes: dict[str, Any] = {}

    async def fetch(self, zone: str, start: datetime, end: datetime, *, now: datetime) -> Forecast:
        return self.forecasts[zone].issued_at(now.timestamp())

    async def fetch_measured(self, zone: str, start: datetime, end: datetime, *, now: datetime) -> Forecast:
        """The trace's actuals from ``start`` until the current hour began: what a grid has measured by ``now``."""
        actual = self.measured.get(zone)
        if actual is None:
            raise SourceDataError(f"no measured history for zone {zone!r} in this backtest")
        until = math.floor(min(end, now).timestamp() / HOUR) * HOUR
        key = (zone, start.timestamp(), until)
        if key not in self._history:
            if len(self._history) > 256:
                self._history.clear()
            self._history[key] = self._window(zone, actual, start.timestamp(), until, now)
        return self._history[key]

    def _window(self, zone: str, actual: Forecast, start_s: float, until_s: float, now: datetime) -> Forecast:
        from carbon_sensors.planning.prior import PersistenceIndex

        if zone not in self._indexes:
            try:  # an hourly trace is analysed once; any other is sliced and analysed per window
                self._indexes[zone] = PersistenceIndex(actual)
            except ConfigurationError:
                self._indexes[zone] = None
        try:
            index = self._indexes[zone]
            if index is not None:
                return index.window(start_s, until_s)
            lo, hi = bisect_left(actual.starts_s, start_s), bisect_left(actual.starts_s, until_s)
            if hi <= lo:
                raise ForecastCoverageError("no point in the window")
            return replace(actual, starts_s=actual.starts_s[lo:hi], values=actual.values[lo:hi], end_s=until_s,
                           measured_until=datetime.fromtimestamp(until_s, UTC))
        except ForecastCoverageError:
            raise SourceDataError(f"the trace of zone {zone!r} has no measurements before {now.isoformat()}") from None

    def check_zone(self, zone: str) -> None:
        if zone not in self.forecasts:
            raise ConfigurationError(f"no trace for zone {zone!r}")

    def to_spec(self) -> dict[str, Any]:
        return {"kind": self.kind}



@dataclass(frozen=True)
class Prices:
    """Each zone's actual prices and the price forecasts the strategies plan on."""

    actual: dict[str, Any]
    forecasts: dict[str, Any]

    def issued(self, zones: Sequence[str], t_s: float) -> list[Any]:
        return [self.forecasts[z].issued_at(t_s) for z in zones]



def _plan(forecasts, prices, **kwargs):
    """``plan()``, on the price forecasts too where there are price traces."""
    return plan(forecasts, prices=prices, **kwargs) if prices else plan(forecasts, **kwargs)


def strategies_on_prices(strategies: Sequence[str]) -> list[str]:
    """The strategies that plan on price forecasts (``now`` only has its window priced)."""
    return [s for s in strategies if s != "now"]


class _SimulatedPriceSource(SimulatedSource):
    """A price source serving, at any moment, the price forecast issued at the last hour."""

    kind = "simulated-prices"


async def start_time(strategy, traces, forecasts, source, submit_s, deadline_s, expected, policy,
                 prices=None) -> tuple[float, str]:
    home = traces[0].zone
    submit = datetime.fromtimestamp(submit_s, UTC)
    deadline = datetime.fromtimestamp(deadline_s, UTC)
    if strategy == "now":
        return submit_s, home
    if strategy == "oracle":
        perfect = [t.actual for t in traces]
        p = _plan(perfect, prices and [prices.actual[t.zone] for t in traces], now=submit, deadline=deadline,
                  expected_duration=expected, policy=replace(policy, min_saving_pct=0.0))
        return p.planned_start.timestamp(), p.zone
    try:
        if strategy == "commit_once":
            zones = [t.zone for t in traces if t.zone in forecasts]
            p = _plan([forecasts[z].issued_at(submit_s) for z in zones], prices and prices.issued(zones, submit_s),
                      now=submit, deadline=deadline, expected_duration=expected, policy=policy)
            return p.planned_start.timestamp(), p.zone
        if strategy == "replan":
            return _replan_start(traces, forecasts, submit_s, deadline_s, expected, policy, prices)
        return await _gated_start(traces, source, submit, deadline, expected, policy, prices)
    except ForecastCoverageError:
        return submit_s, home  # no forecast to plan on: start at once, as a gate falls back


def _replan_start(traces, forecasts, submit_s, deadline_s, expected, policy, prices=None) -> tuple[float, str]:
    """The plain re-plan: at every hourly refresh plan on the latest forecast as it is (no correction,
    no hysteresis, no minimum saving) and start once "now" is the best window, never after the latest start."""
    policy = replace(policy, min_saving_pct=0.0)
    deadline = datetime.fromtimestamp(deadline_s, UTC)
    latest_s = deadline_s - (expected + policy.margin_for(expected)).total_seconds()
    if policy.max_delay is not None:
        latest_s = min(latest_s, submit_s + policy.max_delay.total_seconds())
    now_s = submit_s
    zones = [t.zone for t in traces if t.zone in forecasts]
    baseline = {}  # the price at submission, which the cost ceiling stays measured against
    while True:
        p = _plan([forecasts[z].issued_at(now_s) for z in zones], prices and prices.issued(zones, now_s),
                  now=datetime.fromtimestamp(now_s, UTC), deadline=deadline, expected_duration=expected, policy=policy,
                  **baseline)
        if prices and not baseline:
            baseline = {"price_baseline": p.price_now}
        planned_s = min(p.planned_start.timestamp(), latest_s)
        refresh_s = (math.floor(now_s / HOUR) + 1) * HOUR  # the next forecast
        if planned_s <= now_s + 1e-6 or planned_s < refresh_s:  # no news comes before the planned start
            return max(now_s, planned_s), p.zone
        now_s = refresh_s


async def _gated_start(traces, source, submit, deadline, expected, policy, prices=None) -> tuple[float, str]:
    from carbon_sensors.gate import CarbonGate, wait_for_window
    from carbon_sensors.testing import FrozenClock

    extra = {"price_source": _SimulatedPriceSource(prices.forecasts, "price")} if prices else {}
    gate = CarbonGate(
        zones=tuple(t.zone for t in traces if t.zone in source.forecasts), deadline=deadline,
        expected_duration=expected, source=source, policy=policy, on_source_error="run_now",
        check_interval=timedelta(hours=1), **extra,
    )
    clock = FrozenClock(submit)
    decision = await wait_for_window(gate, deadline=deadline, submitted_at=submit, clock=clock)
    zone = decision.plan.zone if decision.plan is not None else gate.home_zone
    return clock.now().timestamp(), zone
