"""CarbonWindowTrigger: its serialized contract, and run() driven by an injected clock."""

from __future__ import annotations

import asyncio
import inspect
import json
from datetime import UTC, datetime, timedelta

import pytest
from clocks import ScriptedClock
from forecast_csv import write_forecast_csv

from carbon_sensors.testing import FrozenClock
from carbon_sensors.triggers.carbon import CarbonWindowTrigger

T0 = datetime(2026, 6, 15, 0, 0, tzinfo=UTC)


def make_trigger(tmp_path, values, *, hours_to_deadline=8, duration_h=1.0, **kwargs):
    path = write_forecast_csv(tmp_path / "intensity.csv", T0, values)
    defaults = dict(
        zones=["DE"],
        deadline=T0 + timedelta(hours=hours_to_deadline),
        expected_duration_s=duration_h * 3600,
        submitted_at=T0,
        source={"kind": "file", "path": str(path)},
        dag_id="dag",
        task_id="task",
    )
    defaults.update(kwargs)
    return CarbonWindowTrigger(**defaults)


def run_to_event(trigger, clock):
    trigger.clock = clock

    async def collect():
        return [event async for event in trigger.run()]

    events = asyncio.run(collect())
    assert len(events) == 1, "a trigger yields exactly one event"
    return events[0].payload


def test_serialize_classpath_is_pinned(tmp_path):
    """The classpath stored in trigger rows never changes, or old rows could not be loaded."""
    classpath, _ = make_trigger(tmp_path, [300] * 10).serialize()
    assert classpath == "carbon_sensors.triggers.carbon.CarbonWindowTrigger"


def test_serialize_round_trips_with_json_kwargs_matching_init(tmp_path):
    """Kwargs are plain JSON, match __init__ exactly, and rebuild an equal trigger."""
    trigger = make_trigger(tmp_path, [300] * 10, zones=["DE", "GB"], policy={"threshold": 120.0, "min_saving_pct": 5.0})
    classpath, kwargs = trigger.serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs
    named = {name for name, p in inspect.signature(CarbonWindowTrigger.__init__).parameters.items()
             if p.kind is p.KEYWORD_ONLY}  # not self, nor the **other that takes another release's kwargs
    # Every kwarg of __init__ but the price ones, which a gate without a price source leaves out (as earlier releases).
    assert set(kwargs) == named - {"price_source", "price_at_submission"}
    assert kwargs["deadline"] == "2026-06-15T08:00:00+00:00"
    assert CarbonWindowTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_rows_from_the_first_version_still_load():
    """A row holding only the kwargs every version has must rebuild (kwargs are only ever added)."""
    minimal = {
        "zones": ["GB"],
        "deadline": "2026-06-15T08:00:00+00:00",
        "expected_duration_s": 3600.0,
        "submitted_at": "2026-06-15T00:00:00+00:00",
    }
    trigger = CarbonWindowTrigger(**minimal)
    assert trigger.gate.source.kind == "embedded"
    assert trigger.gate.on_source_error == "run_now"


def test_kwargs_accept_datetimes_as_airflow_deserializes_them(tmp_path):
    """Airflow may hand datetimes back instead of strings; both give the same trigger."""
    a = make_trigger(tmp_path, [300] * 10)
    b = make_trigger(tmp_path, [300] * 10, deadline="2026-06-15T10:00:00+02:00", submitted_at=T0.isoformat())
    assert a.serialize() == b.serialize()


def test_waits_for_the_planned_window_then_goes(tmp_path):
    """With a dip at 03:00, the trigger sleeps until exactly 03:00 and yields go."""
    clock = FrozenClock(T0)
    event = run_to_event(make_trigger(tmp_path, [400, 400, 400, 100, 400, 400, 400, 400, 400]), clock)
    assert event["status"] == "go"
    assert clock.now() == T0 + timedelta(hours=3)
    assert event["planned_start"] == "2026-06-15T03:00:00+00:00"
    assert event["intensity"] == 100.0 and event["intensity_at_submission"] == 400.0
    assert event["saving_pct"] == 75.0
    assert event["source"] == "file:intensity.csv" and event["signal"] == "average"
    assert max(clock.sleeps) <= 60.0, "sleeps in steps of at most check_interval_s"


def test_force_starts_exactly_at_the_latest_start(tmp_path):
    """A forecast that keeps falling past the deadline makes the trigger start at the latest start, not later."""
    clock = FrozenClock(T0)
    event = run_to_event(make_trigger(tmp_path, [500 - 40 * h for h in range(12)]), clock)
    latest = T0 + timedelta(hours=8) - timedelta(hours=1) - timedelta(minutes=6)
    assert event["status"] == "forced" and event["forced_reason"] == "latest_start"
    assert clock.now() == latest
    assert event["latest_start"] == latest.isoformat()


def test_clock_jumping_past_the_latest_start_fires_at_once(tmp_path):
    """If the wall clock jumps forward past the latest start while waiting, the trigger fires on its next step."""
    jump_to = T0 + timedelta(hours=7, minutes=30)
    clock = ScriptedClock(T0, {T0 + timedelta(minutes=30): lambda c: c.set(jump_to)})
    event = run_to_event(make_trigger(tmp_path, [400] * 4 + [100] * 8), clock)
    assert event["status"] == "forced" and event["forced_reason"] == "deadline_at_risk"
    assert clock.now() <= jump_to + timedelta(minutes=1)


def test_clock_jumping_back_keeps_waiting_for_the_wall_clock_window(tmp_path):
    """If the clock jumps back an hour, the trigger still starts at 03:00 wall time, not an hour early."""
    clock = ScriptedClock(T0, {T0 + timedelta(hours=2): lambda c: c.set(T0 + timedelta(hours=1))})
    event = run_to_event(make_trigger(tmp_path, [400, 400, 400, 100, 400, 400, 400, 400, 400]), clock)
    assert event["status"] == "go"
    assert clock.now() == T0 + timedelta(hours=3)


def test_replans_when_a_fresher_forecast_arrives(tmp_path):
    """At the forecast refresh the trigger re-plans and follows the new, earlier window."""
    path = tmp_path / "intensity.csv"

    def revise(_clock):
        write_forecast_csv(path, T0, [400, 400, 90, 400, 400, 400, 400, 400, 400, 400])

    clock = ScriptedClock(T0, {T0 + timedelta(hours=1): revise})
    trigger = make_trigger(tmp_path, [400, 400, 400, 400, 400, 100, 400, 400, 400, 400], hours_to_deadline=9)
    write_forecast_csv(path, T0, [400, 400, 400, 400, 400, 100, 400, 400, 400, 400])
    event = run_to_event(trigger, clock)
    assert event["status"] == "go"
    assert clock.now() == T0 + timedelta(hours=2)
    assert event["intensity"] == 90.0


def test_source_failure_starts_now_by_default(tmp_path):
    """A source that cannot deliver never blocks work: the default is to start now, saying why."""
    trigger = make_trigger(tmp_path, [400] * 10, source={"kind": "file", "path": str(tmp_path / "missing.csv")})
    clock = FrozenClock(T0)
    event = run_to_event(trigger, clock)
    assert event["status"] == "forced" and event["forced_reason"] == "source_error"
    assert "missing.csv" in event["reason"]
    assert clock.now() == T0


def test_source_failure_can_fall_back_to_the_embedded_profile(tmp_path):
    """With on_source_error='embedded' the trigger plans on the embedded profile and says so."""
    trigger = make_trigger(
        tmp_path, [400] * 10, source={"kind": "file", "path": str(tmp_path / "missing.csv")}, on_source_error="embedded"
    )
    event = run_to_event(trigger, FrozenClock(T0))
    assert event["status"] in ("go", "forced")
    assert event["fallback"] == "embedded-profile"
    assert event["source"] == "embedded-profile"


def test_source_failure_with_fail_policy_yields_an_error_event(tmp_path):
    """With on_source_error='fail' the error is reported in the event, never swallowed."""
    trigger = make_trigger(
        tmp_path, [400] * 10, source={"kind": "file", "path": str(tmp_path / "missing.csv")}, on_source_error="fail"
    )
    event = run_to_event(trigger, FrozenClock(T0))
    assert event["status"] == "error"
    assert "SourceDataError" in event["reason"] and "missing.csv" in event["reason"]


def test_kill_switch_releases_a_waiting_trigger(tmp_path, monkeypatch):
    """Turning the kill switch on while a trigger waits makes it fire within one check interval."""
    switch_on = T0 + timedelta(minutes=30)
    clock = ScriptedClock(T0, {switch_on: lambda c: monkeypatch.setenv("CARBON_SENSORS_KILL_SWITCH", "1")})
    event = run_to_event(make_trigger(tmp_path, [400, 400, 400, 100, 400, 400, 400, 400, 400]), clock)
    assert event["status"] == "forced" and event["forced_reason"] == "kill_switch"
    assert switch_on <= clock.now() <= switch_on + timedelta(minutes=1)


def test_force_variable_releases_matching_triggers(tmp_path, monkeypatch):
    """The force-start Variable (here from Airflow's env-var backend) releases gates it matches."""
    monkeypatch.setenv("AIRFLOW_VAR_CARBON_SENSORS_FORCE", "other_dag, dag.task")
    event = run_to_event(make_trigger(tmp_path, [400, 400, 400, 100, 400, 400, 400, 400, 400]), FrozenClock(T0))
    assert event["status"] == "forced" and event["forced_reason"] == "manual"


def test_force_variable_ignores_other_dags(tmp_path, monkeypatch):
    """A Variable naming other DAGs leaves this gate waiting for its window."""
    monkeypatch.setenv("AIRFLOW_VAR_CARBON_SENSORS_FORCE", '["other_dag", "dag.other_task"]')
    clock = FrozenClock(T0)
    event = run_to_event(make_trigger(tmp_path, [400, 400, 400, 100, 400, 400, 400, 400, 400]), clock)
    assert event["status"] == "go" and clock.now() == T0 + timedelta(hours=3)


def test_a_deadline_that_passed_while_the_triggerer_was_down_starts_at_once(tmp_path):
    """A trigger resumed after its deadline (triggerer outage) starts at once, flagged at risk."""
    trigger = make_trigger(tmp_path, [400] * 30)
    clock = FrozenClock(T0 + timedelta(hours=9))
    event = run_to_event(trigger, clock)
    assert event["status"] == "forced" and event["forced_reason"] == "deadline_at_risk"


def test_waiting_triggers_share_one_event_loop(tmp_path):
    """Many triggers wait concurrently in one loop (none blocks it) and each gets its own event."""
    clock = FrozenClock(T0)
    triggers = [make_trigger(tmp_path, [400, 400, 400, 100, 400, 400, 400, 400, 400]) for _ in range(50)]
    for trigger in triggers:
        trigger.clock = clock

    async def first(trigger):
        async for event in trigger.run():
            return event.payload

    async def main():
        return await asyncio.gather(*(first(t) for t in triggers))

    events = asyncio.run(main())
    assert [e["status"] for e in events] == ["go"] * 50


@pytest.mark.parametrize("bad", [{"zones": []}, {"zones": ["DE", "DE"]}, {"on_source_error": "ignore"}])
def test_invalid_kwargs_are_refused(tmp_path, bad):
    """A hand-edited or corrupted row is refused with our error when it is built, not deep inside run().

    Refused, not crashed: the triggerer may be an older release than the worker that wrote the row
    (a rolling upgrade), so the refusal is a forced start naming the error, never a lost task.
    """
    trigger = make_trigger(tmp_path, [400] * 10, **bad)
    assert trigger.unreadable is not None and trigger.unreadable.startswith("ConfigurationError: ")
    event = run_to_event(trigger, FrozenClock(T0))
    assert event["status"] == "forced" and event["forced_reason"] == "unreadable_trigger"
    assert trigger.unreadable in event["reason"]


def _keyed_trigger(**kwargs):
    return CarbonWindowTrigger(
        zones=["DE"], deadline=T0 + timedelta(hours=8), expected_duration_s=3600, submitted_at=T0,
        source={"kind": "electricitymaps", "conn_id": "carbon_em_deleted"}, dag_id="dag", task_id="task", **kwargs)


def test_a_connection_deleted_while_the_gate_waits_still_starts_it(monkeypatch):
    """The task planned with the connection; it is gone at a re-plan: a source failure, started as
    on_source_error says (here: now), never an error that fails the task or skips the fallbacks."""
    monkeypatch.delenv("AIRFLOW_CONN_CARBON_EM_DELETED", raising=False)
    event = run_to_event(_keyed_trigger(), FrozenClock(T0 + timedelta(hours=1)))
    assert event["status"] == "forced" and event["forced_reason"] == "source_error", event
    assert "carbon_em_deleted" in event["reason"] and "does not exist" in event["reason"]
    assert event["latest_start"] is not None


def test_a_connection_deleted_while_waiting_falls_back_to_the_embedded_profile(monkeypatch):
    """With on_source_error="embedded" the gate keeps planning on the profile, by its latest start."""
    monkeypatch.delenv("AIRFLOW_CONN_CARBON_EM_DELETED", raising=False)
    event = run_to_event(_keyed_trigger(on_source_error="embedded"), ScriptedClock(T0 + timedelta(hours=1)))
    assert event["status"] in ("go", "forced") and event["source"] == "embedded-profile", event
    assert datetime.fromisoformat(event["decided_at"]) <= datetime.fromisoformat(event["latest_start"]) + timedelta(minutes=1)


def test_a_missing_connection_fails_the_task_s_first_plan(monkeypatch):
    """Before the gate waits (the task's own plan), a missing connection is a configuration error."""
    from carbon_sensors.errors import ConfigurationError
    from carbon_sensors.gate import decide

    monkeypatch.delenv("AIRFLOW_CONN_CARBON_EM_DELETED", raising=False)
    gate = _keyed_trigger().gate
    with pytest.raises(ConfigurationError, match="carbon_em_deleted"):
        asyncio.run(decide(gate, now=T0, deadline=T0 + timedelta(hours=8), submitted_at=T0))
