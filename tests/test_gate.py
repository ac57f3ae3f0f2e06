"""The gate: one decision from settings, a source and the time; and the waiting loop."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from forecast_csv import write_forecast_csv

from carbon_sensors import After, CarbonGate, ConfigurationError, DeadlineError, Policy, UnknownZoneError, decide
from carbon_sensors.gate import add_decision_listener, remove_decision_listener, wait_for_window
from carbon_sensors.signals import EMBEDDED_SOURCE_NAME, EmbeddedProfileSource
from carbon_sensors.signals.file import FileSource
from carbon_sensors.testing import FrozenClock

T0 = datetime(2026, 6, 15, 0, 0, tzinfo=UTC)


def gate_for(path, zones="DE", **kwargs):
    return CarbonGate(
        zones=zones, deadline=After(hours=8), expected_duration=timedelta(hours=1),
        source={"kind": "file", "path": str(path)}, **kwargs,
    )


def test_gate_validates_its_settings_at_construction():
    """Unknown zones, bad durations and bad policies fail when the DAG is parsed, with our errors."""
    with pytest.raises(UnknownZoneError, match="embedded profile has no zone 'XX'"):
        CarbonGate(zones="XX", deadline=After(hours=8), expected_duration=timedelta(hours=1))
    with pytest.raises(DeadlineError, match="does not fit"):
        CarbonGate(zones="DE", deadline=After(hours=1), expected_duration=timedelta(hours=2))
    with pytest.raises(ConfigurationError, match="positive timedelta"):
        CarbonGate(zones="DE", deadline=After(hours=8), expected_duration=timedelta(0))
    with pytest.raises(ConfigurationError, match="on_source_error"):
        CarbonGate(zones="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1), on_source_error="skip")
    with pytest.raises(ConfigurationError, match="no time zone"):
        CarbonGate(zones="DE", deadline=datetime(2030, 1, 1), expected_duration=timedelta(hours=1))


def test_absolute_deadline_already_past_is_refused_by_check_not_past():
    """A fixed deadline that has passed is refused when the DAG is parsed."""
    gate = CarbonGate(zones="DE", deadline=T0, expected_duration=timedelta(hours=1))
    with pytest.raises(DeadlineError, match="already past"):
        gate.check_not_past(T0 + timedelta(minutes=1))


def test_decide_waits_then_goes(tmp_path):
    """decide() says wait (with the next check at the planned start) before the dip and go at it."""
    path = write_forecast_csv(tmp_path / "f.csv", T0, [400, 400, 100, 400, 400, 400, 400, 400, 400])
    gate = gate_for(path)
    first = asyncio.run(decide(gate, now=T0, deadline=T0 + timedelta(hours=8), submitted_at=T0))
    assert first.status == "wait" and first.next_check == T0 + timedelta(hours=1)  # the file refreshes hourly
    later = asyncio.run(decide(gate, now=T0 + timedelta(hours=2), deadline=T0 + timedelta(hours=8), submitted_at=T0,
                               intensity_at_submission=first.intensity_at_submission))
    assert later.status == "go"
    event = later.to_event()
    assert event["intensity_at_submission"] == 400.0 and event["saving_pct"] == 75.0


def test_waiting_is_only_worth_it_against_the_best_start_now_zone(tmp_path):
    """With two zones, a future window barely better than starting now elsewhere is not waited for."""
    home = write_forecast_csv(tmp_path / "de.csv", T0, [400] * 30)
    other = [200.0] * 30
    other[20] = 199.0  # a hair better, 20 h later
    write_forecast_csv(tmp_path / "gb.csv", T0, other)
    from carbon_sensors.planning import plan
    from carbon_sensors.signals import FileSource

    forecasts = [
        FileSource(home).fetch_now("DE", T0, T0 + timedelta(hours=24), now=T0),
        FileSource(tmp_path / "gb.csv").fetch_now("GB", T0, T0 + timedelta(hours=24), now=T0),
    ]
    result = plan(forecasts, now=T0, deadline=T0 + timedelta(hours=24), expected_duration=timedelta(hours=1))
    assert result.decision == "run_now" and result.zone == "GB"
    assert result.expected_saving_pct == pytest.approx(50.0)


def test_the_decision_s_saving_is_the_plan_s_against_the_best_start_now_zone(tmp_path):
    """A two-zone wait's event measures its saving as its plan does: against starting now in the cleaner zone."""
    series = {"DE": [400.0] * 12, "GB": [200.0] * 3 + [100.0] + [200.0] * 8}
    (tmp_path / "both.csv").write_text("timestamp,zone,carbon_intensity\n" + "".join(
        f"{(T0 + timedelta(hours=h)).isoformat()},{zone},{values[h]}\n" for zone, values in series.items()
        for h in range(12)))
    source = {"kind": "file", "path": str(tmp_path / "both.csv")}
    gate = CarbonGate(zones=("DE", "GB"), deadline=After(hours=8), expected_duration=timedelta(hours=1),
                      source=source)
    first = asyncio.run(decide(gate, now=T0, deadline=T0 + timedelta(hours=8), submitted_at=T0))
    assert first.status == "wait" and first.plan.best_now_zone == "GB"
    event = first.to_event()
    assert event["intensity_at_submission"] == 200.0  # GB now, not DE's 400
    assert event["saving_pct"] == pytest.approx(first.plan.expected_saving_pct) == pytest.approx(50.0)
    later = asyncio.run(decide(gate, now=T0 + timedelta(hours=3), deadline=T0 + timedelta(hours=8), submitted_at=T0,
                               intensity_at_submission=first.intensity_at_submission))
    assert later.status == "go" and later.to_event()["saving_pct"] == pytest.approx(50.0)


class _BreaksAfterFirstPlan(FileSource):
    """A file source whose configuration breaks after the first plan, as a connection deleted while a gate waits."""

    fetches = 0

    async def fetch(self, zone, start, end, *, now):
        type(self).fetches += 1
        if type(self).fetches > 1:
            raise ConfigurationError("the Airflow Connection 'carbon_em' does not exist; create it or fix conn_id")
        return await super().fetch(zone, start, end, now=now)


def test_a_configuration_that_breaks_while_waiting_in_process_still_starts_the_job(tmp_path):
    """wait_for_window (Prefect's in-process wait, poke sensors) treats a configuration broken after its first plan
    as a source failure: on_source_error decides and the job starts, never an error that fails it."""
    path = write_forecast_csv(tmp_path / "f.csv", T0, [400, 400, 400, 100, 400, 400, 400, 400, 400])
    _BreaksAfterFirstPlan.fetches = 0
    gate = CarbonGate(zones="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1),
                      source=_BreaksAfterFirstPlan(path))
    decision = asyncio.run(wait_for_window(gate, deadline=T0 + timedelta(hours=8), submitted_at=T0,
                                           clock=FrozenClock(T0)))
    assert (decision.status, decision.forced_reason) == ("forced", "source_error"), decision
    assert "does not exist" in decision.reason and _BreaksAfterFirstPlan.fetches == 2
    _BreaksAfterFirstPlan.fetches = 1  # broken already at the first plan: a configuration error, the task fails
    with pytest.raises(ConfigurationError, match="does not exist"):
        asyncio.run(wait_for_window(gate, deadline=T0 + timedelta(hours=8), submitted_at=T0, clock=FrozenClock(T0)))


def test_a_fallback_that_cannot_serve_a_zone_is_refused_at_parse(tmp_path):
    """The primary serves the zone; the embedded-profile fallback does not: the DAG fails at parse, naming the fallback."""
    path = tmp_path / "xx.csv"
    path.write_text("timestamp,carbon_intensity\n2026-06-15T00:00:00+00:00,300\n2026-06-15T01:00:00+00:00,300\n")
    with pytest.raises(UnknownZoneError, match=r"fallback source 'embedded' serves none of the zones.*drop it from"):
        CarbonGate(zones="XX-NOWHERE", deadline=After(hours=8), expected_duration=timedelta(hours=1),
                   source={"kind": "file", "path": str(path)}, fallbacks=[{"kind": "embedded"}])


def test_a_fallback_that_serves_some_of_the_zones_plans_on_those(tmp_path):
    """A DE+GB gate whose fallback holds GB only: when the primary fails, the plan is made on GB alone."""
    gb = write_forecast_csv(tmp_path / "gb.csv", T0, [200.0] * 12)
    gate = CarbonGate(zones=("DE", "GB"), deadline=After(hours=8), expected_duration=timedelta(hours=1),
                      source={"kind": "file", "path": str(tmp_path / "gone.csv")},
                      fallbacks=[{"kind": "file", "path": str(gb), "zone": "GB"}])
    decision = asyncio.run(decide(gate, now=T0, deadline=T0 + timedelta(hours=8), submitted_at=T0))
    assert decision.fallback == "file" and decision.plan.zone == "GB", decision


def test_an_explicit_fallback_chain_skips_a_fallback_whose_connection_is_gone(tmp_path, monkeypatch):
    """fallbacks=[a keyed source whose connection was deleted, the embedded profile]: the second serves the plan."""
    monkeypatch.delenv("AIRFLOW_CONN_CARBON_EM_DELETED", raising=False)
    gate = CarbonGate(zones="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1),
                      source={"kind": "file", "path": str(tmp_path / "gone.csv")},
                      fallbacks=[{"kind": "electricitymaps", "conn_id": "carbon_em_deleted"}, {"kind": "embedded"}])
    decision = asyncio.run(decide(gate, now=T0, deadline=T0 + timedelta(hours=8), submitted_at=T0,
                                  configuration_checked=True))
    assert decision.status in ("wait", "go") and decision.fallback == "embedded", decision
    assert decision.plan.source == EMBEDDED_SOURCE_NAME


def test_listeners_see_every_decision_and_a_failing_listener_is_ignored(tmp_path):
    """Each re-plan reaches decision listeners; a listener that raises never stops the gate."""
    path = write_forecast_csv(tmp_path / "f.csv", T0, [400, 400, 400, 100, 400, 400, 400, 400, 400])
    seen = []

    def broken(_decision):
        raise RuntimeError("listener bug")

    add_decision_listener(seen.append)
    add_decision_listener(broken)
    try:
        decision = asyncio.run(wait_for_window(
            gate_for(path), deadline=T0 + timedelta(hours=8), submitted_at=T0, clock=FrozenClock(T0)
        ))
    finally:
        remove_decision_listener(seen.append)
        remove_decision_listener(broken)
    assert decision.status == "go"
    assert [d.status for d in seen] == ["wait", "wait", "wait", "go"]  # hourly refreshes, then the window
    assert seen[-1] is decision


def test_threshold_starts_at_once_when_the_grid_is_clean_enough(tmp_path):
    """With a threshold above the current intensity the gate goes at once, even if later is cleaner."""
    path = write_forecast_csv(tmp_path / "f.csv", T0, [150, 150, 20, 150, 150, 150, 150, 150, 150])
    gate = gate_for(path, policy=Policy(threshold=160))
    decision = asyncio.run(decide(gate, now=T0, deadline=T0 + timedelta(hours=8), submitted_at=T0))
    assert decision.status == "go" and "threshold" in decision.reason


def test_max_delay_counts_from_submission_not_from_each_replan(tmp_path):
    """max_delay is anchored at submission, so re-planning cannot push the start later and later."""
    path = write_forecast_csv(tmp_path / "f.csv", T0, [400 - 30 * h for h in range(10)])
    gate = gate_for(path, policy=Policy(max_delay=timedelta(hours=2)))
    clock = FrozenClock(T0)
    decision = asyncio.run(wait_for_window(gate, deadline=T0 + timedelta(hours=8), submitted_at=T0, clock=clock))
    assert decision.status == "go"
    assert clock.now() == T0 + timedelta(hours=2)


def test_a_waiting_gate_does_not_start_early_when_now_comes_within_the_minimum_saving(tmp_path):
    """Once waiting, re-plans pick the best window; the 3 % minimum does not start the gate an hour early."""
    path = write_forecast_csv(tmp_path / "f.csv", T0, [400, 400, 400, 390, 385, 400, 400, 400, 400, 400])
    gate = CarbonGate(zones="DE", deadline=After(hours=9), expected_duration=timedelta(hours=1),
                      source={"kind": "file", "path": str(path)}, policy=Policy(min_saving_pct=3.0))
    first = asyncio.run(decide(gate, now=T0, deadline=T0 + timedelta(hours=9), submitted_at=T0))
    assert first.status == "wait"  # 400 -> 385 saves 3.75 %: worth starting a wait...
    at_three = asyncio.run(decide(gate, now=T0 + timedelta(hours=3), deadline=T0 + timedelta(hours=9),
                                  submitted_at=T0, waiting_until=first.plan.planned_start))
    assert at_three.status == "wait" and at_three.plan.planned_start == T0 + timedelta(hours=4)
    fresh = asyncio.run(decide(gate, now=T0 + timedelta(hours=3), deadline=T0 + timedelta(hours=9), submitted_at=T0))
    assert fresh.status == "go"  # ...a new gate at 03:00 would not start waiting for 1.3 %


def test_a_forced_start_still_goes_to_the_cleanest_allowed_zone():
    """At the latest start the job must start now, but may still start in the cleaner zone."""
    from carbon_sensors import Forecast
    from carbon_sensors.planning import plan

    def flat(zone, value):
        return Forecast.from_points([(T0 + timedelta(hours=h), value) for h in range(10)], zone=zone, source="t")

    latest = T0 + timedelta(hours=8) - timedelta(hours=1) - timedelta(minutes=6)
    result = plan([flat("DE", 400), flat("GB", 150)], now=latest, deadline=T0 + timedelta(hours=8),
                  expected_duration=timedelta(hours=1))
    assert result.latest_start_reached and result.zone == "GB" and result.intensity_planned == 150
    alone = plan([flat("DE", 400)], now=latest, deadline=T0 + timedelta(hours=8), expected_duration=timedelta(hours=1))
    assert alone.zone == "DE"


def test_a_fallback_with_another_signal_never_mixes_into_the_saving(tmp_path):
    """If a marginal primary fails and an average fallback serves, no saving compares the two."""
    marginal = write_forecast_csv(tmp_path / "m.csv", T0, [400, 400, 100, 400, 400, 400, 400, 400, 400])
    average = write_forecast_csv(tmp_path / "a.csv", T0, [300, 300, 300, 300, 300, 300, 300, 300, 300])
    gate = CarbonGate(zones="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1),
                      source={"kind": "file", "path": str(marginal), "signal": "marginal"},
                      fallbacks=[{"kind": "file", "path": str(average)}])
    first = asyncio.run(decide(gate, now=T0, deadline=T0 + timedelta(hours=8), submitted_at=T0))
    assert first.intensity_at_submission == 400.0 and first.signal_at_submission == "marginal"
    marginal.unlink()  # the primary fails from now on
    later = asyncio.run(decide(gate, now=T0 + timedelta(hours=2), deadline=T0 + timedelta(hours=8), submitted_at=T0,
                               intensity_at_submission=400.0, signal_at_submission="marginal"))
    event = later.to_event()
    assert event["signal"] == "average" and event["fallback"] == "file"
    assert event["intensity_at_submission"] is None and event["saving_pct"] is None


def test_a_gate_whose_window_has_come_does_not_chase_the_same_window_a_day_later():
    """Waking a moment after its planned start, a gate on a repeating profile goes, not waits 24 h more."""
    from carbon_sensors.gate import wait_for_window

    start = datetime(2026, 6, 15, 0, 0, tzinfo=UTC)
    gate = CarbonGate(zones=["DE", "GB"], deadline=After(hours=48), expected_duration=timedelta(hours=6))

    class LateWaker(FrozenClock):
        async def sleep(self, seconds):
            await super().sleep(seconds + 0.05)  # every wake-up is 50 ms late, as real timers are

    clock = LateWaker(start)
    decision = asyncio.run(wait_for_window(gate, deadline=start + timedelta(hours=48), submitted_at=start, clock=clock))
    assert decision.status == "go" and decision.zone == "GB"
    assert clock.now() < start + timedelta(hours=10, minutes=1)


def record_fetches(monkeypatch, source_class, events):
    fetch = source_class.fetch

    async def recorded(self, *args, **kwargs):
        forecast = await fetch(self, *args, **kwargs)
        events.append("fetch")
        return forecast

    monkeypatch.setattr(source_class, "fetch", recorded)


def test_every_decision_and_every_wake_takes_its_turn_from_the_pacer(tmp_path, monkeypatch):
    """Gates wake together at a refresh: each decision, each wake and each fetch asks the loop pacer for a turn."""
    from carbon_sensors import gate as gate_module
    from carbon_sensors.pacing import LoopPacer

    path = write_forecast_csv(tmp_path / "f.csv", T0, [400, 400, 400, 100, 400, 400, 400, 400, 400])
    events = []

    class Recording(LoopPacer):
        __slots__ = ()

        async def turn(self):
            events.append("turn")

    class Sleeps(FrozenClock):
        async def sleep(self, seconds):
            events.append("sleep")
            await super().sleep(seconds)

    monkeypatch.setattr(gate_module, "default_pacer", lambda: Recording())
    record_fetches(monkeypatch, FileSource, events)

    def listen(decision):
        events.append(decision.status)

    add_decision_listener(listen)
    try:
        asyncio.run(wait_for_window(gate_for(path, check_interval=timedelta(minutes=30)),
                                    deadline=T0 + timedelta(hours=8), submitted_at=T0, clock=Sleeps(T0)))
    finally:
        remove_decision_listener(listen)
    decisions = [e for e in events if e in ("wait", "go")]
    assert decisions == ["wait", "wait", "wait", "go"]
    # a turn before each decision, and after each sleep (30-min steps of the hourly waits)
    assert all(events[i - 1] == "turn" for i, e in enumerate(events) if e in ("wait", "go"))
    assert all(events[i + 1] == "turn" for i, e in enumerate(events) if e == "sleep")
    # and one after each fetch: the gates sharing a refresh all resume when it lands
    assert events.count("fetch") == 4
    assert all(events[i + 1] == "turn" for i, e in enumerate(events) if e == "fetch")
    assert events.count("sleep") == 6


def test_a_fallback_fetch_takes_its_turn_from_the_pacer_too(tmp_path, monkeypatch):
    """When a source fails for every gate at once, their fallback plans arrive together as well."""
    from carbon_sensors import gate as gate_module
    from carbon_sensors.pacing import LoopPacer

    events = []

    class Recording(LoopPacer):
        __slots__ = ()

        async def turn(self):
            events.append("turn")

    monkeypatch.setattr(gate_module, "default_pacer", lambda: Recording())
    record_fetches(monkeypatch, EmbeddedProfileSource, events)
    path = write_forecast_csv(tmp_path / "f.csv", T0, [400] * 9)
    gate = gate_for(path, on_source_error="embedded")
    path.unlink()  # the file source now fails; the embedded profile serves
    decision = asyncio.run(decide(gate, now=T0, deadline=T0 + timedelta(hours=8), submitted_at=T0))
    assert decision.fallback == EMBEDDED_SOURCE_NAME
    assert "fetch" in events
    assert all(events[i + 1] == "turn" for i, e in enumerate(events) if e == "fetch")
