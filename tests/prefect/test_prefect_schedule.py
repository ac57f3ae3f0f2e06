"""schedule_in_window: the run is created for its planned start and re-checks with the settings it was planned with."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

pytest.importorskip("prefect", minversion="3.6")  # a bare name could be this folder, as a namespace package

from prefect_helpers import deploy, start_run, unique, write_csv

from carbon_sensors import After, ConfigurationError
from carbon_sensors.prefect import ScheduledRun, carbon_aware_flow, current_decision, schedule_in_window
from carbon_sensors.testing import FrozenClock, use_clock

JUNE_15 = datetime(2026, 6, 15, 0, 0, tzinfo=UTC)
VALUES = [400, 400, 400, 100, 400, 400, 400, 400] + [50] * 16


@pytest.fixture
def csv(tmp_path):
    return write_csv(tmp_path / "de.csv", JUNE_15, VALUES)


@pytest.fixture
def target(prefect_api):
    """A deployed flow gated on other settings (GB, embedded, 4 h) than the runs scheduled for it; records decisions."""
    seen = []

    @carbon_aware_flow(zone="GB", deadline=After(hours=4), expected_duration=timedelta(hours=1), name=unique("target"))
    def target_flow(label: str = "none") -> str:
        seen.append(current_decision())
        return f"ran {label}"

    _, full_name = deploy(target_flow)
    return target_flow, full_name, seen


def schedule(full_name, csv, **kwargs):
    return schedule_in_window(full_name, zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1),
                              source={"kind": "file", "path": str(csv)}, **kwargs)


def test_the_run_is_created_scheduled_at_the_planned_start(client, csv, target):
    """Planned at 00:00, the run's expected start is the clean 03:00 hour and it carries its deadline and settings."""
    _, full_name, _ = target
    with use_clock(FrozenClock(JUNE_15)):
        scheduled = schedule(full_name, csv, parameters={"label": "nightly"})
    assert isinstance(scheduled, ScheduledRun) and scheduled.waits
    assert scheduled.scheduled_time == JUNE_15 + timedelta(hours=3)
    assert scheduled.deadline == JUNE_15 + timedelta(hours=8)
    assert scheduled.latest_start == JUNE_15 + timedelta(hours=6, minutes=54)
    assert scheduled.decision["saving_pct"] == 75.0 and "Waiting until 2026-06-15 03:00 UTC" in scheduled.reason
    stored = client.read_flow_run(scheduled.flow_run_id)
    assert stored.state.is_scheduled() and stored.state.state_details.scheduled_time == scheduled.scheduled_time
    assert stored.expected_start_time == scheduled.scheduled_time
    assert stored.parameters == {"label": "nightly"}
    assert stored.labels["carbon-sensors.deadline"] == "2026-06-15T08:00:00+00:00"
    assert json.loads(stored.labels["carbon-sensors.gate"])["zones"] == ["DE"]


def test_the_same_idempotency_key_returns_the_same_run(csv, target):
    """Scheduling twice with one idempotency key creates one run."""
    _, full_name, _ = target
    key = unique("nightly-2026-06-15")
    with use_clock(FrozenClock(JUNE_15)):
        first = schedule(full_name, csv, idempotency_key=key)
    with use_clock(FrozenClock(JUNE_15 + timedelta(minutes=30))):
        second = schedule(full_name, csv, idempotency_key=key)
    assert second.flow_run_id == first.flow_run_id
    assert second.scheduled_time == first.scheduled_time


def test_the_run_rechecks_with_the_settings_it_was_planned_with(client, csv, target):
    """At 03:00 the run decides on the DE file and the 08:00 deadline it was scheduled with, not the flow's own GB gate."""
    flow, full_name, seen = target
    with use_clock(FrozenClock(JUNE_15)):
        scheduled = schedule(full_name, csv, parameters={"label": "nightly"})
    with use_clock(FrozenClock(scheduled.scheduled_time)):
        assert start_run(client, flow, scheduled.flow_run_id) == ("done", "ran nightly")
    assert seen[0]["status"] == "go" and seen[0]["zone"] == "DE"
    assert seen[0]["deadline"] == "2026-06-15T08:00:00+00:00"
    assert seen[0]["source"].startswith("file:")


def test_a_scheduled_run_started_before_its_window_moves_itself_back_to_it(client, csv, target):
    """Started an hour early (someone pressed run), the run reschedules itself to its planned 03:00."""
    flow, full_name, seen = target
    with use_clock(FrozenClock(JUNE_15)):
        scheduled = schedule(full_name, csv)
    with use_clock(FrozenClock(JUNE_15 + timedelta(hours=2))):
        outcome, state = start_run(client, flow, scheduled.flow_run_id)
    assert outcome == "paused" and seen == []
    assert state.state_details.scheduled_time == JUNE_15 + timedelta(hours=3)


def test_a_run_planned_for_now_is_due_now(client, tmp_path, target):
    """When now is already the cleanest window, the run is created due at once."""
    _, full_name, _ = target
    csv = write_csv(tmp_path / "clean-now.csv", JUNE_15, [100] + [400] * 23)
    with use_clock(FrozenClock(JUNE_15)):
        scheduled = schedule(full_name, csv)
    assert not scheduled.waits and scheduled.decision["status"] == "go"
    assert scheduled.scheduled_time == JUNE_15


def test_an_unknown_deployment_is_a_configuration_error(csv, prefect_api):
    """A deployment name that does not exist says how to name one."""
    with use_clock(FrozenClock(JUNE_15)), pytest.raises(ConfigurationError, match="flow-name/deployment-name"):
        schedule("no-such-flow/no-such-deployment", csv)
