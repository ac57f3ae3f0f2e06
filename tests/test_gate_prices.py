"""A gate with a price source: the three-number policy decides, the event carries price next to carbon, and a
failing price source costs neither the deadline nor the plan."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from static_source import StaticSource

from carbon_sensors import After, CarbonGate, ConfigurationError, decide
from carbon_sensors.errors import SourceUnavailableError
from carbon_sensors.forecast import Forecast
from carbon_sensors.gate import wait_for_window
from carbon_sensors.planning import Policy
from carbon_sensors.prices import PriceForecast
from carbon_sensors.testing import FrozenClock

T0 = datetime(2026, 6, 15, 0, 0, tzinfo=UTC)
H = timedelta(hours=1)
CARBON = [400, 380, 150, 200, 390, 400, 400, 400, 400]
PRICE = [100, 90, 160, 95, 300, 100, 100, 100, 100]


class StaticPrices:
    """Serves one price forecast per zone, or raises ``fail`` (a vendor outage)."""

    kind = "static_prices"

    def __init__(self, values: list[float], currency: str = "EUR", fail: Exception | None = None) -> None:
        self.values, self.currency, self.fail = values, currency, fail
        self.asked: list[datetime] = []

    async def fetch(self, zone: str, start: datetime, end: datetime, *, now: datetime) -> PriceForecast:
        self.asked.append(now)
        if self.fail is not None:
            raise self.fail
        return PriceForecast.from_points([(T0 + i * H, v) for i, v in enumerate(self.values)], zone=zone,
                                         source=self.kind, currency=self.currency, resolution=H)

    def to_spec(self) -> dict[str, Any]:
        return {"kind": self.kind}


def gate(prices: StaticPrices | None, **policy: Any) -> CarbonGate:
    forecast = Forecast.from_points([(T0 + i * H, v) for i, v in enumerate(CARBON)], zone="DE", source="static")
    return CarbonGate(zones="DE", deadline=After(hours=8), expected_duration=H, source=StaticSource({"DE": forecast}),
                      policy=Policy(safety_margin=timedelta(0), **policy), price_source=prices)


def decided(g: CarbonGate, now: datetime = T0, **kw: Any):
    return asyncio.run(decide(g, now=now, deadline=T0 + 8 * H, submitted_at=T0, **kw))


def test_the_cost_cap_decides_and_the_event_carries_both_figures():
    decision = decided(gate(StaticPrices(PRICE), max_cost_increase_pct=10))
    event = decision.to_event()
    assert event["status"] == "wait" and event["planned_start"] == (T0 + 3 * H).isoformat()
    assert (event["intensity"], event["intensity_at_submission"], event["saving_pct"]) == (200.0, 400.0, 50.0)
    assert (event["price"], event["price_at_submission"], event["cost_change_pct"]) == (95.0, 100.0, -5.0)
    assert event["price_currency"] == "EUR" and event["price_source"] == "static_prices"
    assert event["price_degraded"] is False
    assert "50% cleaner and 5% cheaper than now" in event["reason"]


def test_a_gate_without_a_price_source_has_the_carbon_event_it_always_had():
    event = decided(gate(None)).to_event()
    assert "price" not in event and "price_currency" not in event


def test_a_cost_setting_without_a_price_source_is_refused_at_parse_time():
    with pytest.raises(ConfigurationError, match="need a price forecast: give price_source="):
        gate(None, objective="cost")


def test_a_price_source_in_another_currency_is_refused_at_parse_time():
    with pytest.raises(ConfigurationError, match="the policy's prices are in USD but the price source quotes EUR"):
        gate(StaticPrices(PRICE, currency="EUR"), max_cost_increase_pct=0, currency="USD")


def test_a_failing_price_source_plans_on_carbon_alone_and_says_so(caplog):
    prices = StaticPrices(PRICE, fail=SourceUnavailableError("prices vendor answered 503 three times"))
    with caplog.at_level(logging.WARNING, logger="carbon_sensors.gate"):
        decision = decided(gate(prices, max_cost_increase_pct=10))
    event = decision.to_event()
    assert event["status"] == "wait" and event["planned_start"] == (T0 + 2 * H).isoformat()  # the carbon plan
    assert event["price_degraded"] is True and event["price"] is None
    assert "Planned on carbon alone: no price forecast for DE" in event["reason"]
    assert "price source failed for DE (SourceUnavailableError: prices vendor answered 503" in caplog.text


def test_a_failing_price_source_never_holds_up_a_job_at_its_latest_start():
    prices = StaticPrices(PRICE, fail=SourceUnavailableError("down"))
    decision = decided(gate(prices, objective="cost"), now=T0 + 7 * H)
    assert decision.status == "forced" and decision.forced_reason == "latest_start"


def test_the_price_at_submission_stays_the_first_decisions_while_the_gate_waits():
    prices = StaticPrices(PRICE)
    clock = FrozenClock(T0)
    decisions = []
    final = asyncio.run(wait_for_window(gate(prices, max_cost_increase_pct=10), deadline=T0 + 8 * H, submitted_at=T0,
                                        clock=clock, on_decision=decisions.append))
    assert final.status == "go" and clock.now() == T0 + 3 * H
    assert len(prices.asked) >= 2  # re-planned with fresh prices
    event = final.to_event()
    assert event["price_at_submission"] == 100.0 and event["price"] == 95.0 and event["cost_change_pct"] == -5.0


def test_the_decision_trail_keeps_the_price_as_the_event_gives_it():
    """A priced decision's trail entry (what the Carbon page and the ledger show) is the event's, price included."""
    from carbon_sensors.ledger import DecisionEntry
    from carbon_sensors.plugins import trail
    from carbon_sensors.records import RunKey

    g = gate(StaticPrices(PRICE), max_cost_increase_pct=10)
    decision = decided(g)
    direct = trail.decision_entry(decision, dag_id="d", task_id="t", run_id="r", try_number=1, map_index=-1, gate=g,
                                  origin="triggerer")
    via_event = DecisionEntry.from_event(RunKey("airflow", "d", "t", "r", 1, -1), decision.to_event(),
                                         next_check=decision.next_check, expected_duration_s=3600.0,
                                         source_spec=g.source.to_spec(), origin="triggerer")
    assert direct == via_event
    assert (direct.price, direct.price_at_submission, direct.cost_change_pct, direct.price_currency) == (
        95.0, 100.0, -5.0, "EUR")
