"""CarbonAwareSensor: parse-time validation, deferral, resume, poke mode, force-starts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from airflow.sdk import DAG, PokeReturnValue
from airflow.sdk.exceptions import TaskDeferred
from airflow_context import context_at
from forecast_csv import write_forecast_csv

from carbon_sensors import After, ConfigurationError, DeadlineError, GateError, UnknownZoneError
from carbon_sensors.sensors import CarbonAwareSensor
from carbon_sensors.testing import FrozenClock, use_clock
from carbon_sensors.triggers import CarbonWindowTrigger

T0 = datetime(2026, 6, 15, 0, 0, tzinfo=UTC)
DIP_AT_3 = [400, 400, 400, 100, 400, 400, 400, 400, 400, 400]


def sensor(tmp_path, values=DIP_AT_3, **kwargs):
    path = write_forecast_csv(tmp_path / "f.csv", T0, values)
    settings = dict(task_id="wait", zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1),
                    source={"kind": "file", "path": str(path)})
    settings.update(kwargs)
    with DAG("sensor_test", schedule=None, start_date=T0):
        return CarbonAwareSensor(**settings)


def test_is_deferrable_by_default(tmp_path):
    """The sensor waits in the triggerer unless told otherwise."""
    assert sensor(tmp_path).deferrable is True


@pytest.mark.parametrize(
    ("kwargs", "error", "phrase"),
    [
        ({"zone": "Atlantis"}, UnknownZoneError, "no zone 'Atlantis'"),
        ({"zone": None}, ConfigurationError, "exactly one of zone"),
        ({"zones": ["DE"]}, ConfigurationError, "exactly one of zone"),
        ({"deadline": datetime(2030, 1, 1)}, ConfigurationError, "no time zone"),
        ({"deadline": datetime(2020, 1, 1, tzinfo=UTC)}, DeadlineError, "already past"),
        ({"deadline": After(hours=1), "expected_duration": timedelta(hours=2)}, DeadlineError, "does not fit"),
        ({"threshold": -5}, ConfigurationError, "threshold"),
        ({"on_source_error": "pray"}, ConfigurationError, "on_source_error"),
    ],
)
def test_bad_settings_fail_at_parse_time(tmp_path, kwargs, error, phrase):
    """Each bad setting raises our error, with a message that says what to do, when the DAG is parsed."""
    settings = {"source": "embedded", **kwargs}
    with pytest.raises(error, match=phrase):
        sensor(tmp_path, **settings)


def test_execute_defers_with_an_absolute_deadline(tmp_path):
    """execute() defers to a CarbonWindowTrigger carrying the run's absolute deadline and latest plan."""
    task = sensor(tmp_path)
    with use_clock(FrozenClock(T0)), pytest.raises(TaskDeferred) as deferred:
        task.execute(context_at(T0))
    trigger = deferred.value.trigger
    assert isinstance(trigger, CarbonWindowTrigger)
    assert deferred.value.method_name == "execute_complete"
    _, kwargs = trigger.serialize()
    assert kwargs["deadline"] == "2026-06-15T08:00:00+00:00"
    assert kwargs["submitted_at"] == "2026-06-15T00:00:00+00:00"
    assert kwargs["zones"] == ["DE"] and kwargs["dag_id"] == "sensor_test" and kwargs["task_id"] == "wait"
    assert kwargs["intensity_at_submission"] == 400.0


def test_execute_returns_at_once_when_now_is_already_best(tmp_path):
    """When the condition already holds, the sensor returns its decision without deferring."""
    task = sensor(tmp_path, values=[100] + [400] * 10)
    with use_clock(FrozenClock(T0)):
        decision = task.execute(context_at(T0))
    assert decision["status"] == "go" and decision["zone"] == "DE" and decision["intensity"] == 100.0


def test_run_conf_force_starts_without_waiting(tmp_path):
    """A DAG run conf {"carbon_sensors_force": true} starts the gate at once, saying why."""
    task = sensor(tmp_path)
    with use_clock(FrozenClock(T0)):
        decision = task.execute(context_at(T0, conf={"carbon_sensors_force": True}))
    assert decision["status"] == "forced" and decision["forced_reason"] == "manual"
    assert "carbon_sensors_force" in decision["reason"]


def test_run_conf_can_name_tasks(tmp_path):
    """A list in the run conf force-starts only the tasks it names."""
    task = sensor(tmp_path)
    with use_clock(FrozenClock(T0)), pytest.raises(TaskDeferred):
        task.execute(context_at(T0, conf={"carbon_sensors_force": ["other_task"]}))
    with use_clock(FrozenClock(T0)):
        assert task.execute(context_at(T0, conf={"carbon_sensors_force": ["wait"]}))["status"] == "forced"


def test_airflow_config_kill_switch_passes_every_gate(tmp_path, monkeypatch):
    """[carbon_sensors] kill_switch (here through its AIRFLOW__ env var) makes the gate pass at once."""
    monkeypatch.setenv("AIRFLOW__CARBON_SENSORS__KILL_SWITCH", "True")
    with use_clock(FrozenClock(T0)):
        decision = sensor(tmp_path).execute(context_at(T0))
    assert decision["status"] == "forced" and decision["forced_reason"] == "kill_switch"


def test_templated_deadline_is_rendered_before_planning(tmp_path):
    """A Jinja deadline is rendered with the run's context, then used as the absolute deadline."""
    task = sensor(tmp_path, deadline="{{ data_interval_end.add(hours=6).isoformat() }}")
    context = context_at(T0)
    import pendulum

    context["data_interval_end"] = pendulum.instance(T0)
    task.render_template_fields(context)
    with use_clock(FrozenClock(T0)), pytest.raises(TaskDeferred) as deferred:
        task.execute(context)
    assert deferred.value.trigger.serialize()[1]["deadline"] == "2026-06-15T06:00:00+00:00"


def test_execute_complete_returns_the_decision_and_refuses_errors(tmp_path):
    """Resuming with go returns the event for XCom; an error event raises GateError; an event of a shape this
    release cannot read (a triggerer on another version) starts the task, forced, saying what to upgrade."""
    task = sensor(tmp_path)
    event = {"status": "go", "reason": "clean", "zone": "DE"}
    assert task.execute_complete(context_at(T0), event=event) == event
    with pytest.raises(GateError, match="source down"):
        task.execute_complete(context_at(T0), event={"status": "error", "reason": "source down"})
    for junk in ("go", None, {"reason": "no status"}):
        decision = task.execute_complete(context_at(T0), event=junk)
        assert (decision["status"], decision["forced_reason"]) == ("forced", "unreadable_event"), junk
        assert "upgrade carbon-sensors on the workers" in decision["reason"]


def test_poke_mode_waits_then_is_done_at_the_window(tmp_path):
    """In poke/reschedule mode the sensor says not yet before the window and done at it."""
    task = sensor(tmp_path, deferrable=False, mode="reschedule")
    with use_clock(FrozenClock(T0)):
        assert task.poke(context_at(T0)) is False
    with use_clock(FrozenClock(T0 + timedelta(hours=3))):
        result = task.poke(context_at(T0))
    assert isinstance(result, PokeReturnValue) and result.is_done
    assert result.xcom_value["status"] == "go"


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_a_connection_deleted_between_pokes_still_starts_the_task(tmp_path, monkeypatch, mode):
    """A poke after the first plan of its try (reschedule: Airflow's count; poke: the same instance) treats a
    missing connection as a source failure and starts as on_source_error says; the first plan still fails."""
    monkeypatch.delenv("AIRFLOW_CONN_CARBON_EM_DELETED", raising=False)
    task = sensor(tmp_path, deferrable=False, mode=mode,
                  source={"kind": "electricitymaps", "conn_id": "carbon_em_deleted"})
    with use_clock(FrozenClock(T0 + timedelta(hours=1))):
        with pytest.raises(ConfigurationError, match="carbon_em_deleted"):
            task.poke(context_at(T0))  # the task's first plan: wrong configuration fails it
        later = context_at(T0) | {"task_reschedule_count": 1} if mode == "reschedule" else context_at(T0)
        fresh = sensor(tmp_path, deferrable=False, mode=mode,
                       source={"kind": "electricitymaps", "conn_id": "carbon_em_deleted"})
        if mode == "poke":
            fresh._carbon_planned = True  # as after this instance's first poke planned with the connection
        result = fresh.poke(later)
    assert isinstance(result, PokeReturnValue) and result.is_done
    assert (result.xcom_value["status"], result.xcom_value["forced_reason"]) == ("forced", "source_error")
    assert "does not exist" in result.xcom_value["reason"]


def test_poke_mode_is_forced_at_the_latest_start(tmp_path):
    """Poking at the latest start always finishes, forced by the deadline."""
    task = sensor(tmp_path, values=[500 - 40 * h for h in range(12)], deferrable=False)
    with use_clock(FrozenClock(T0 + timedelta(hours=6, minutes=54))):
        result = task.poke(context_at(T0))
    assert result.is_done and result.xcom_value["forced_reason"] == "latest_start"


def test_a_sensor_with_a_misspelt_file_column_fails_at_parse(tmp_path):
    """The README's first-hour trap: a FileSource column typo is a parse error, not a green force-start."""
    from carbon_sensors.errors import ConfigurationError

    path = tmp_path / "ci.csv"
    path.write_text("timestamp,carbon_intensity\n2026-01-01T00:00:00Z,300\n")
    with pytest.raises(ConfigurationError, match=r"did you mean 'carbon_intensity'"):
        CarbonAwareSensor(task_id="wait", zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1),
                          source={"kind": "file", "path": str(path), "value_column": "carbon_intensty"})
