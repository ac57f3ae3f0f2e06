"""Gated Prefect runs meter and record themselves: the same ledger records as Airflow, keyed by flow-run id."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

pytest.importorskip("prefect", minversion="3.6")  # a bare name could be this folder, as a namespace package

from prefect_helpers import create_run, deploy, start_run, unique, write_csv

from carbon_sensors import After
from carbon_sensors.ledger import Ledger
from carbon_sensors.prefect import carbon_aware_flow, carbon_aware_task
from carbon_sensors.records import RunKey
from carbon_sensors.testing import FrozenClock, use_clock

JUNE_15 = datetime(2026, 6, 15, 0, 0, tzinfo=UTC)
VALUES = [400, 400, 400, 100, 400, 400, 400, 400] + [50] * 16


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("CARBON_SENSORS_LEDGER_URL", url)
    return Ledger(url)


def test_a_deployed_run_writes_its_record_and_a_table_artifact(client, tmp_path, ledger):
    """The run's record carries the flow-run id, tokens, carbon and tags; a table artifact shows the figures."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from carbon_sensors.metering import record_tokens

    csv = write_csv(tmp_path / "de.csv", JUNE_15, VALUES)
    name = unique("recorded")

    @carbon_aware_flow(zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1),
                       source={"kind": "file", "path": str(csv)}, name=name)
    def recorded() -> int:
        record_tokens(prompt=800, completion=200, model="gpt-4o-mini")
        return sum(i * i for i in range(100_000)) % 5

    deployment_id, _ = deploy(recorded)
    run = create_run(client, deployment_id, JUNE_15)
    client.update_flow_run(run.id, tags=["team:search", "project:catalog"])
    with use_clock(FrozenClock(JUNE_15 + timedelta(hours=3))):  # in the window: runs at once
        assert start_run(client, recorded, run.id)[0] == "done"
    record = ledger.get(RunKey("prefect", name, name, str(run.id), 1, -1))
    assert record is not None and record.status == "success"
    assert record.total_tokens == 1000 and record.energy_kwh > 0 and record.zone == "DE"
    assert (record.team, record.project) == ("search", "catalog")
    assert record.intensity_g_per_kwh == 100.0 and record.carbon_g == pytest.approx(record.energy_kwh * 100.0)
    artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
    tables = [a for a in artifacts if a.type == "table"]
    assert tables and "energy_kwh" in str(tables[0].data) and "carbon_g" in str(tables[0].data)
    assert "Wh" in str(tables[0].data) and not re.search(r"\d[eE][+-]?\d", str(tables[0].data))


def test_a_failing_gated_task_is_recorded_as_failed(prefect_api, tmp_path, ledger):
    """A gated task whose body raises leaves a failed record with the error, and the flow sees the error."""
    from prefect import flow

    csv = write_csv(tmp_path / "de.csv", JUNE_15, VALUES)

    @carbon_aware_task(zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1),
                       source={"kind": "file", "path": str(csv)}, min_saving_pct=99.0, name="breaks")
    def breaks() -> None:
        raise ValueError("the shard is empty")

    @flow(name=unique("host"))
    def host() -> None:
        breaks()

    with use_clock(FrozenClock(JUNE_15)), pytest.raises(ValueError, match="the shard is empty"):
        host()
    failed = [r for r in ledger.records() if r.key.task_id == "breaks"]
    assert len(failed) == 1 and failed[0].status == "failed" and "the shard is empty" in failed[0].error
    assert failed[0].key.orchestrator == "prefect"
