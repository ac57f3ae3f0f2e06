"""@carbon_aware_flow: a deployed run reschedules itself for its window, and always runs by its latest start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

pytest.importorskip("prefect", minversion="3.6")  # a bare name could be this folder, as a namespace package

from prefect_helpers import create_run, deploy, run_logs, start_run, unique, write_csv

from carbon_sensors import After
from carbon_sensors.prefect import carbon_aware_flow, current_decision
from carbon_sensors.testing import FrozenClock, use_clock

JUNE_15 = datetime(2026, 6, 15, 0, 0, tzinfo=UTC)
# Hourly from 00:00: dirty, then one clean hour at 03:00, then dirty until a cleaner tail after the deadline.
VALUES = [400, 400, 400, 100, 400, 400, 400, 400] + [50] * 16
DEADLINE = JUNE_15 + timedelta(hours=8)
LATEST = DEADLINE - timedelta(hours=1) - timedelta(minutes=6)  # 1 h job, 10 % (6 min) safety margin


def gated_flow(csv, seen, **options):
    """A flow gated on ``csv`` (zone DE, 1 h job, deadline 8 h after its expected start) that records its decision."""

    @carbon_aware_flow(zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1),
                       source={"kind": "file", "path": str(csv)}, name=unique("gated"), **options)
    def gated(x: int = 2) -> int:
        seen.append(current_decision())
        return x * 21

    return gated


@pytest.fixture
def csv(tmp_path):
    return write_csv(tmp_path / "de.csv", JUNE_15, VALUES)


def test_a_run_that_starts_early_reschedules_itself_to_its_window(client, csv):
    """At 00:00 the run moves itself to Scheduled at 03:00 (the clean hour) and its work does not run."""
    seen = []
    flow = gated_flow(csv, seen, retries=2)
    deployment_id, _ = deploy(flow)
    run = create_run(client, deployment_id, JUNE_15)
    with use_clock(FrozenClock(JUNE_15)):
        outcome, state = start_run(client, flow, run.id)
    assert outcome == "paused" and state.is_scheduled() and seen == []
    stored = client.read_flow_run(run.id)
    assert stored.state.is_scheduled()
    assert stored.state.state_details.scheduled_time == JUNE_15 + timedelta(hours=3)
    assert "Waiting until 2026-06-15 03:00 UTC" in stored.state.message
    assert stored.labels["carbon-sensors.deadline"] == DEADLINE.isoformat()
    assert stored.labels["carbon-sensors.latest_start"] == LATEST.isoformat()
    assert stored.labels["carbon-sensors.deferrals"] == 1
    assert stored.expected_start_time == JUNE_15, "Prefect keeps the first expected start: the deadline's anchor"
    assert stored.empirical_policy.retries == 3, "the deferral adds one retry to the two the flow asked for"


def test_the_deadline_stays_put_across_restarts(client, tmp_path):
    """Re-started at 03:00 after the forecast changed, the run defers again to 05:00 under the same 08:00 deadline."""
    csv = write_csv(tmp_path / "de.csv", JUNE_15, VALUES)
    seen = []
    flow = gated_flow(csv, seen)
    deployment_id, _ = deploy(flow)
    run = create_run(client, deployment_id, JUNE_15)
    with use_clock(FrozenClock(JUNE_15)):
        assert start_run(client, flow, run.id)[0] == "paused"
    # A fresher forecast: 03:00 is no longer clean, 05:00 is.
    write_csv(csv, JUNE_15, [400, 400, 400, 390, 400, 80, 400, 400] + [50] * 16)
    with use_clock(FrozenClock(JUNE_15 + timedelta(hours=3))):
        outcome, _ = start_run(client, flow, run.id)
    stored = client.read_flow_run(run.id)
    assert outcome == "paused" and seen == []
    assert stored.state.state_details.scheduled_time == JUNE_15 + timedelta(hours=5)
    assert stored.labels["carbon-sensors.deadline"] == DEADLINE.isoformat()
    assert stored.labels["carbon-sensors.latest_start"] == LATEST.isoformat()
    assert stored.labels["carbon-sensors.deferrals"] == 2
    assert stored.empirical_policy.retries == 2, "two deferrals, two extra retries on a flow that asked for none"


def test_a_source_whose_configuration_breaks_after_a_deferral_still_starts_the_run(client, csv):
    """Re-started after its first plan, a run whose source's configuration no longer works (the file lost its
    value column) starts as on_source_error says, by its latest start; it is not failed as wrong configuration."""
    seen = []
    flow = gated_flow(csv, seen)
    deployment_id, _ = deploy(flow)
    run = create_run(client, deployment_id, JUNE_15)
    with use_clock(FrozenClock(JUNE_15)):
        assert start_run(client, flow, run.id)[0] == "paused"
    csv.write_text(csv.read_text().replace("carbon_intensity", "gco2"))
    with use_clock(FrozenClock(JUNE_15 + timedelta(hours=3))):
        outcome, result = start_run(client, flow, run.id)
    assert (outcome, result) == ("done", 42)
    assert (seen[0]["status"], seen[0]["forced_reason"]) == ("forced", "source_error"), seen[0]
    assert "carbon_intensity" in seen[0]["reason"]


def test_a_run_restarted_half_a_second_early_runs(client, csv):
    """Prefect may start a run a moment before its scheduled time: within the slack it runs rather than defer again."""
    seen = []
    flow = gated_flow(csv, seen)
    deployment_id, _ = deploy(flow)
    run = create_run(client, deployment_id, JUNE_15)
    with use_clock(FrozenClock(JUNE_15)):
        start_run(client, flow, run.id)
    with use_clock(FrozenClock(JUNE_15 + timedelta(hours=3) - timedelta(seconds=0.5))):
        outcome, result = start_run(client, flow, run.id)
    assert (outcome, result) == ("done", 42)
    assert seen[0]["status"] == "go" and seen[0]["deadline"] == DEADLINE.isoformat()
    assert client.read_flow_run(run.id).state.is_completed()


def test_a_run_at_its_latest_start_executes(client, tmp_path):
    """With the cleanest hours after the deadline, a run started at its latest start is forced and runs."""
    csv = write_csv(tmp_path / "de.csv", JUNE_15, [400] * 8 + [50] * 16)
    seen = []
    flow = gated_flow(csv, seen)
    deployment_id, _ = deploy(flow)
    run = create_run(client, deployment_id, JUNE_15)
    with use_clock(FrozenClock(LATEST)):
        outcome, result = start_run(client, flow, run.id)
    assert (outcome, result) == ("done", 42)
    assert seen[0]["status"] == "forced" and seen[0]["forced_reason"] == "latest_start"
    stored = client.read_flow_run(run.id)
    assert stored.state.is_completed()
    assert stored.labels["carbon-sensors.status"] == "forced"


def test_a_run_just_before_its_latest_start_runs_rather_than_defer_for_seconds(client, tmp_path):
    """Started 0.4 s before the latest start with better hours after it, the run runs instead of deferring 0.4 s."""
    csv = write_csv(tmp_path / "de.csv", JUNE_15, [400] * 6 + [300, 300] + [50] * 16)
    seen = []
    flow = gated_flow(csv, seen)
    deployment_id, _ = deploy(flow)
    run = create_run(client, deployment_id, JUNE_15)
    with use_clock(FrozenClock(LATEST - timedelta(seconds=0.4))):
        outcome, _ = start_run(client, flow, run.id)
    assert outcome == "done" and seen[0]["status"] in ("go", "forced")


def test_a_retry_after_the_gate_passed_does_not_wait_again(client, csv):
    """The work fails once in its window; the retry runs at once even though a fresh plan would now wait."""
    seen, clock = [], FrozenClock(JUNE_15 + timedelta(hours=3))

    @carbon_aware_flow(zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1),
                       source={"kind": "file", "path": str(csv)}, name=unique("flaky"), retries=1)
    def flaky() -> str:
        seen.append(current_decision())
        if len(seen) == 1:
            clock.set(JUNE_15)  # back before the window: a fresh decision would defer the retry
            raise RuntimeError("transient")
        return "ok"

    deployment_id, _ = deploy(flaky)
    run = create_run(client, deployment_id, JUNE_15)
    with use_clock(clock):
        outcome, result = start_run(client, flaky, run.id)
    assert (outcome, result) == ("done", "ok")
    assert len(seen) == 2 and seen[1] == seen[0]
    stored = client.read_flow_run(run.id)
    assert stored.run_count == 2 and stored.labels["carbon-sensors.deferrals"] == 0


def test_the_kill_switch_starts_the_run_at_once(client, csv, monkeypatch):
    """CARBON_SENSORS_KILL_SWITCH=1 makes an early run start now, forced, without rescheduling."""
    monkeypatch.setenv("CARBON_SENSORS_KILL_SWITCH", "1")
    seen = []
    flow = gated_flow(csv, seen)
    deployment_id, _ = deploy(flow)
    run = create_run(client, deployment_id, JUNE_15)
    with use_clock(FrozenClock(JUNE_15)):
        assert start_run(client, flow, run.id) == ("done", 42)
    assert seen[0]["forced_reason"] == "kill_switch"


def test_the_force_variable_starts_a_named_deployment_at_once(client, csv):
    """The Prefect Variable carbon_sensors_force naming flow/deployment force-starts that run."""
    from prefect.variables import Variable

    seen = []
    flow = gated_flow(csv, seen)
    deployment_id, full_name = deploy(flow)
    Variable.set("carbon_sensors_force", full_name, overwrite=True)
    try:
        run = create_run(client, deployment_id, JUNE_15)
        with use_clock(FrozenClock(JUNE_15)):
            assert start_run(client, flow, run.id) == ("done", 42)
    finally:
        Variable.unset("carbon_sensors_force")
    assert seen[0]["status"] == "forced" and seen[0]["forced_reason"] == "manual"


def test_a_direct_call_waits_in_its_own_process(prefect_api, csv):
    """Called directly (no deployment to restart it), the flow sleeps until 03:00 in process, then runs."""
    seen = []
    flow = gated_flow(csv, seen)
    clock = FrozenClock(JUNE_15)
    with use_clock(clock):
        assert flow() == 42
    assert clock.now() == JUNE_15 + timedelta(hours=3) and clock.sleeps
    assert seen[0]["status"] == "go" and seen[0]["planned_start"] == (JUNE_15 + timedelta(hours=3)).isoformat()


def test_the_decision_is_logged_and_attached_as_an_artifact(client, csv):
    """A run that starts logs the decision in words and carries it as a markdown artifact."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    flow = gated_flow(csv, [])
    deployment_id, _ = deploy(flow)
    run = create_run(client, deployment_id, JUNE_15)
    with use_clock(FrozenClock(JUNE_15 + timedelta(hours=3))):  # a worker three hours late: in the window
        assert start_run(client, flow, run.id)[0] == "done"
    assert "Carbon gate go: Running now in DE" in run_logs(client, run.id)
    artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
    assert any("Carbon gate: go" in (a.data or "") for a in artifacts)


def test_stacking_on_flow_is_refused_with_advice():
    """@carbon_aware_flow over @flow says to pass the flow options to it instead."""
    from prefect import flow

    with pytest.raises(TypeError, match="takes the place of @flow"):
        carbon_aware_flow(zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1))(flow(lambda: 1))


def test_the_flow_keeps_its_own_signature_and_options():
    """The gated flow exposes the function's parameters and the @flow options it was given."""
    flow = gated_flow("unused.csv", [], retries=3, log_prints=True)
    assert list(flow.parameters.properties) == ["x"]
    assert flow.retries == 3 and flow.log_prints is True
    assert flow.carbon_gate.expected_duration == timedelta(hours=1)
