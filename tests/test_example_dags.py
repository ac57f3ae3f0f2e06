"""Every example DAG, and the feature test DAG, run end to end under dag.test() on the embedded profile.

The gates really defer: dag.test() runs each trigger inline (with the injected clock, so hours of
waiting take no time) and resumes the task in-process, as the triggerer and a worker would.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from carbon_sensors.gate import add_decision_listener, remove_decision_listener
from carbon_sensors.operators import DECISION_XCOM_KEY
from carbon_sensors.testing import FrozenClock, use_clock

pytestmark = pytest.mark.integration

JUNE_15 = datetime(2026, 6, 15, 0, 0, tzinfo=UTC)


def run_dag(dag_bag, dag_id, when, run_conf=None):
    trail = []
    add_decision_listener(trail.append)
    try:
        with use_clock(FrozenClock(when)):
            dag_run = dag_bag.get_dag(dag_id).test(logical_date=when, run_conf=run_conf)
    finally:
        remove_decision_listener(trail.append)
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    return dag_run, states, trail


def xcom(dag_run, task_id, key="return_value", map_index=-1):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, key=key, map_index=map_index)
            .one()
        )
        return row.value


def decoded(value):
    import json

    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def test_catalog_enrichment_waits_and_is_forced_at_its_latest_start(dag_bag):
    """The sensor defers, the trigger wakes at 06:54 (08:00 - 1 h - 6 min) and force-starts; downstream runs."""
    dag_run, states, trail = run_dag(dag_bag, "catalog_enrichment", JUNE_15)
    assert dag_run.state == "success", states
    assert trail[0].status == "wait" and trail[-1].status == "forced"
    decision = decoded(xcom(dag_run, "wait_for_clean_power"))
    assert decision["forced_reason"] == "latest_start"
    assert decision["decided_at"] == "2026-06-15T06:54:00+00:00"
    assert decoded(xcom(dag_run, "publish")) == "published 2000 products (started: forced, zone DE)"


def test_embedding_refresh_runs_its_gated_taskflow_task(dag_bag):
    """The @carbon_aware task records its decision and returns its own result."""
    when = datetime(2026, 6, 15, 4, 0, tzinfo=UTC)
    dag_run, states, _ = run_dag(dag_bag, "embedding_refresh", when)
    assert dag_run.state == "success", states
    assert decoded(xcom(dag_run, "embed")) == 64
    assert decoded(xcom(dag_run, "embed", key=DECISION_XCOM_KEY))["status"] in ("go", "forced")


def test_search_index_rebuild_waits_for_the_night_window(dag_bag):
    """In January the gated BashOperator waits from 18:00 for Britain's windy 03:00 window, then runs."""
    when = datetime(2026, 1, 12, 18, 0, tzinfo=UTC)
    dag_run, states, trail = run_dag(dag_bag, "search_index_rebuild", when)
    assert dag_run.state == "success", states
    decision = decoded(xcom(dag_run, "rebuild_index", key=DECISION_XCOM_KEY))
    assert decision["status"] == "go" and decision["zone"] == "GB"
    assert decision["decided_at"] == "2026-01-13T03:00:00+00:00"
    assert decision["saving_pct"] == pytest.approx(30, abs=1)
    assert decoded(xcom(dag_run, "rebuild_index")) == "rebuilt shards 0-15"
    assert trail[0].status == "wait"


def test_weekly_retrain_shifts_to_the_cleaner_zone(dag_bag):
    """The retraining gate picks Great Britain's clean midday window over Germany and goes there."""
    dag_run, states, _ = run_dag(dag_bag, "weekly_retrain", JUNE_15)
    assert dag_run.state == "success", states
    decision = decoded(xcom(dag_run, "wait_for_clean_window"))
    assert decision["status"] == "go" and decision["zone"] == "GB"
    assert decision["decided_at"] == "2026-06-15T10:00:00+00:00"
    # The saving is against the best start-now option at submission, GB's (DE's was about twice as dirty):
    # what waiting for GB's midday window gained over moving to GB at once.
    assert decision["intensity_at_submission"] < 300 and decision["saving_pct"] > 20
    assert decoded(xcom(dag_run, "register")).startswith("registered model trained in GB")


def test_feature_dag_templated_mapped_and_poked_gates(dag_bag):
    """A templated deadline, three mapped gated tasks and a poke-mode sensor all complete."""
    dag_run, states, _ = run_dag(dag_bag, "carbon_features", JUNE_15)
    assert dag_run.state == "success", states
    assert decoded(xcom(dag_run, "total")) == 60
    for index in range(3):
        decision = decoded(xcom(dag_run, "embed_shard", key=DECISION_XCOM_KEY, map_index=index))
        assert decision["deadline"] == "2026-06-15T07:00:00+00:00"  # 09:00 Berlin summer time
    assert decoded(xcom(dag_run, "templated_gate"))["deadline"] == "2026-06-15T08:00:00+00:00"


def test_run_conf_force_starts_every_gate_of_the_run(dag_bag):
    """Triggering with {"carbon_sensors_force": true} starts gates at once, marked as manual force-starts."""
    dag_run, states, trail = run_dag(dag_bag, "catalog_enrichment", JUNE_15, run_conf={"carbon_sensors_force": True})
    assert dag_run.state == "success", states
    assert trail == []  # never deferred
    decision = decoded(xcom(dag_run, "wait_for_clean_power"))
    assert decision["status"] == "forced" and decision["forced_reason"] == "manual"


def test_force_variable_starts_matching_gates(dag_bag, monkeypatch):
    """The carbon_sensors_force Variable force-starts the gates of the DAGs it names."""
    monkeypatch.setenv("AIRFLOW_VAR_CARBON_SENSORS_FORCE", "weekly_retrain")
    dag_run, states, _ = run_dag(dag_bag, "weekly_retrain", JUNE_15)
    assert dag_run.state == "success", states
    assert decoded(xcom(dag_run, "wait_for_clean_window"))["forced_reason"] == "manual"
