"""carbon_gated(...) and @carbon_aware: existing operators and TaskFlow tasks wait, then run unchanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, task
from airflow.sdk.exceptions import TaskDeferred
from airflow_context import context_at
from forecast_csv import write_forecast_csv

from carbon_sensors import After, CarbonGate, ConfigurationError, GateError
from carbon_sensors.decorators import carbon_aware
from carbon_sensors.operators import DECISION_XCOM_KEY, carbon_gated
from carbon_sensors.testing import FrozenClock, use_clock

T0 = datetime(2026, 6, 15, 0, 0, tzinfo=UTC)


def gate(tmp_path, values=(400, 400, 100, 400, 400, 400, 400, 400, 400, 400)):
    path = write_forecast_csv(tmp_path / "f.csv", T0, list(values))
    return CarbonGate(zones="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1),
                      source={"kind": "file", "path": str(path)})


def test_carbon_gated_makes_a_named_subclass_once():
    """carbon_gated returns one cached subclass per operator class, importable by its name."""
    gated = carbon_gated(PythonOperator)
    assert gated is carbon_gated(PythonOperator)
    assert issubclass(gated, PythonOperator) and gated.__name__ == "CarbonGatedPythonOperator"
    import carbon_sensors.operators.carbon as module

    assert module.CarbonGatedPythonOperator is gated
    assert carbon_gated(gated) is gated


def test_gated_operator_defers_then_runs_its_own_execute(tmp_path):
    """The gated operator defers first; on resume it records the decision and runs the original work."""
    calls = []
    with DAG("gated_test", schedule=None, start_date=T0):
        op = carbon_gated(PythonOperator)(
            task_id="work", python_callable=lambda: calls.append("ran") or 42, carbon=gate(tmp_path)
        )
    context = context_at(T0)
    with use_clock(FrozenClock(T0)), pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    assert deferred.value.method_name == "carbon_resume" and calls == []
    event = {"status": "go", "reason": "the window", "zone": "DE"}
    from airflow.sdk.bases.operator import ExecutorSafeguard

    token = ExecutorSafeguard.tracker.set(op)  # as the task runner does around execute
    try:
        result = op.carbon_resume(context, event=event)
    finally:
        ExecutorSafeguard.tracker.reset(token)
    assert result == 42 and calls == ["ran"]
    assert context["ti"].pushed[DECISION_XCOM_KEY] == event


def test_gated_operator_refuses_an_error_event_without_running(tmp_path):
    """If the trigger reports an error, the real work does not run and the task fails with GateError."""
    calls = []
    with DAG("gated_test_err", schedule=None, start_date=T0):
        op = carbon_gated(PythonOperator)(task_id="work", python_callable=lambda: calls.append(1), carbon=gate(tmp_path))
    with pytest.raises(GateError):
        op.carbon_resume(context_at(T0), event={"status": "error", "reason": "boom"})
    assert calls == []


def test_gated_operator_accepts_a_settings_dict_and_validates_it(tmp_path):
    """carbon= also takes the sensor's settings as a dict; bad values fail at parse time."""
    with DAG("gated_dict", schedule=None, start_date=T0):
        op = carbon_gated(PythonOperator)(
            task_id="w", python_callable=print,
            carbon={"zone": "GB", "deadline": After(hours=4), "expected_duration": timedelta(hours=1)},
        )
        assert op.carbon_gate.zones == ("GB",)
        with pytest.raises(ConfigurationError):
            carbon_gated(PythonOperator)(task_id="w2", python_callable=print, carbon="GB")


def test_gated_operator_honours_default_args(tmp_path):
    """default_args still reach the wrapped operator (Airflow's init bookkeeping is intact)."""
    with DAG("gated_defaults", schedule=None, start_date=T0, default_args={"retries": 3}):
        op = carbon_gated(PythonOperator)(task_id="w", python_callable=print, carbon=gate(tmp_path))
    assert op.retries == 3


def test_carbon_aware_stacks_on_task_and_keeps_its_options(tmp_path):
    """@carbon_aware on @task(retries=2) keeps the task's options and gates its operator."""
    with DAG("decorated", schedule=None, start_date=T0):

        @carbon_aware(gate=gate(tmp_path))
        @task(retries=2)
        def work(x: int) -> int:
            return x * 2

        out = work(21)
    op = out.operator
    assert type(op).__name__ == "CarbonGatedPythonDecoratedOperator"
    assert op.retries == 2 and op.carbon_gate.zones == ("DE",)
    with use_clock(FrozenClock(T0)), pytest.raises(TaskDeferred):
        op.execute(context_at(T0))


def test_carbon_aware_on_a_plain_function_passes_task_options(tmp_path):
    """@carbon_aware(...) alone turns a plain function into a gated task, forwarding task kwargs."""
    with DAG("decorated_plain", schedule=None, start_date=T0):

        @carbon_aware(zone="GB", deadline=After(hours=4), expected_duration=timedelta(hours=1), retries=5)
        def refresh() -> str:
            return "ok"

        op = refresh().operator
    assert op.retries == 5 and op.carbon_gate.home_zone == "GB"


def test_carbon_aware_refuses_gate_and_settings_together(tmp_path):
    """Giving both a ready gate and gate settings is ambiguous and refused."""
    with pytest.raises(TypeError, match="either gate= or the gate settings"):
        carbon_aware(gate=gate(tmp_path), zone="GB")


def test_carbon_aware_supports_dynamic_task_mapping(tmp_path):
    """A gated TaskFlow task can be mapped with .expand(); each mapped task carries the gate."""
    with DAG("decorated_mapped", schedule=None, start_date=T0):

        @carbon_aware(gate=gate(tmp_path))
        @task
        def embed(shard: int) -> int:
            return shard

        mapped = embed.expand(shard=[1, 2, 3])
    assert mapped.operator.partial_kwargs["carbon"].zones == ("DE",)


def test_a_resumed_task_can_read_its_connection(tmp_path):
    """A task resumed after deferring runs in a fresh process that never ran the gate's first decision:
    resuming alone must register the Connection lookup its recorder's keyed source needs."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from datetime import UTC, datetime, timedelta
        from airflow.providers.standard.operators.python import PythonOperator
        from airflow.sdk import DAG
        from airflow.sdk.bases.operator import ExecutorSafeguard
        from airflow_context import context_at
        from carbon_sensors import After, CarbonGate
        from carbon_sensors.operators import carbon_gated
        from carbon_sensors.signals import credentials

        T0 = datetime(2026, 6, 15, tzinfo=UTC)
        gate = CarbonGate(zones="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1))
        with DAG("resumed", schedule=None, start_date=T0):
            op = carbon_gated(PythonOperator)(task_id="work", python_callable=lambda: 1, carbon=gate,
                                              record_run=False)
        assert credentials._resolvers == [], "registered before the resume: the test proves nothing"
        token = ExecutorSafeguard.tracker.set(op)
        op.carbon_resume(context_at(T0), event={{"status": "go", "reason": "the window", "zone": "DE"}})
        ExecutorSafeguard.tracker.reset(token)
        assert credentials._resolvers, "no Connection lookup after the resume"
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "AIRFLOW_HOME": str(tmp_path)})
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_carbon_aware_takes_the_cost_settings_and_the_trigger_carries_them(tmp_path):
    """@carbon_aware with a price source and a cost ceiling: the gate has them, and the deferral's trigger carries
    the price source's spec and the price at submission (the ceiling's anchor while it waits)."""
    path = write_forecast_csv(tmp_path / "f.csv", T0, [400, 400, 100, 400, 400, 400, 400, 400, 400, 400])
    with DAG("decorated_priced", schedule=None, start_date=T0):

        @carbon_aware(zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1),
                      source={"kind": "file", "path": str(path)},
                      price_source={"kind": "tariff", "flat": 95.0, "currency": "EUR"}, max_cost_increase_pct=0,
                      currency="EUR")
        def rebuild() -> str:
            return "ok"

        op = rebuild().operator
    assert op.carbon_gate.policy.max_cost_increase_pct == 0 and op.carbon_gate.price_source.currency == "EUR"
    with use_clock(FrozenClock(T0)), pytest.raises(TaskDeferred) as deferred:
        op.execute(context_at(T0))
    _, kwargs = deferred.value.trigger.serialize()
    assert kwargs["price_source"] == {"kind": "tariff", "flat": 95.0, "currency": "EUR", "bands": None, "tz": "UTC"}
    assert kwargs["price_at_submission"] == 95.0
    assert kwargs["policy"]["max_cost_increase_pct"] == 0 and kwargs["policy"]["currency"] == "EUR"
    with pytest.raises(ConfigurationError, match="need a price forecast"):
        carbon_aware(zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1), objective="cost")(
            lambda: None)
