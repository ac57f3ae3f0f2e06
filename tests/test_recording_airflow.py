"""Gated Airflow tasks meter and record themselves: real dag.test() runs writing a real ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from test_example_dags import decoded, run_dag, xcom

from carbon_sensors.ledger import Ledger
from carbon_sensors.records import RunKey, RunRecord

pytestmark = pytest.mark.integration

T0 = datetime(2026, 6, 15, 2, tzinfo=UTC)


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("AIRFLOW__CARBON_SENSORS__LEDGER_URL", url)
    return Ledger(url)


def test_gated_tasks_write_one_record_per_try_with_tags_and_a_summary_in_xcom(dag_bag, ledger):
    """enrich succeeds with energy, tokens and carbon; breaks fails; both are tagged from DAG tags and params."""
    dag_run, states, _ = run_dag(dag_bag, "carbon_ledger", T0)
    assert states["enrich"] == "success" and states["breaks"] == "failed"
    records = {r.key.task_id: r for r in ledger.records()}
    enrich = records["enrich"]
    assert enrich.key == RunKey("airflow", "carbon_ledger", "enrich", dag_run.run_id, 1, -1)
    assert enrich.status == "success" and enrich.energy_kwh > 0 and enrich.total_tokens == 1500
    assert (enrich.team, enrich.project, enrich.cost_centre) == ("search", "catalog", "cc-42")
    assert enrich.zone == "DE" and enrich.carbon_signal == "average" and enrich.carbon_g is not None
    assert enrich.submitted_at is not None and enrich.deadline is not None
    summary = decoded(xcom(dag_run, "enrich", key="carbon_record"))
    assert summary["tokens"] == 1500 and summary["team"] == "search" and summary["status"] == "success"
    breaks = records["breaks"]
    assert breaks.status == "failed" and "the upstream file is empty" in breaks.error
    assert len([r for r in ledger.records() if r.key.task_id == "enrich"]) == 1


def test_without_history_the_gate_starts_at_once_then_learns(dag_bag, ledger):
    """No expected_duration and no history: forced start (no_duration_history); with runs it plans on a learned one."""
    dag_run, states, _ = run_dag(dag_bag, "carbon_ledger", T0)
    first = decoded(xcom(dag_run, "learns", key="carbon_decision"))
    assert states["learns"] == "success"
    assert first["status"] == "forced" and first["forced_reason"] == "no_duration_history"
    assert first["deadline"] is not None  # a forced decision keeps its deadline (no latest start without a duration)
    for i, minutes in enumerate((40, 45, 50)):
        start = T0 - timedelta(days=i + 1)
        ledger.finish(RunRecord(key=RunKey("airflow", "carbon_ledger", "learns", f"old-{i}"), status="success",
                                started_at=start, ended_at=start + timedelta(minutes=minutes)))
    dag_run, states, _ = run_dag(dag_bag, "carbon_ledger", T0 + timedelta(days=1))
    second = decoded(xcom(dag_run, "learns", key="carbon_decision"))
    assert states["learns"] == "success" and second["forced_reason"] != "no_duration_history"
    assert second["status"] == "go"
    slack = datetime.fromisoformat(second["deadline"]) - datetime.fromisoformat(second["latest_start"])
    assert slack > timedelta(minutes=50)  # latest start = deadline - learned duration (> longest run) - margin
