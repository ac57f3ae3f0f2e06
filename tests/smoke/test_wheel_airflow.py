"""The installed wheel inside Airflow: provider, connection type and plugin registered; a gate defers and resumes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from smoke_env import require_wheel_cell

require_wheel_cell()

# Before Airflow is imported: an isolated home with one example DAG (scripts/matrix.py names the file).
HOME = Path(tempfile.mkdtemp(prefix="carbon-sensors-smoke-airflow-"))
DAGS = HOME / "dags"
DAGS.mkdir()
shutil.copy(os.environ["CARBON_SENSORS_SMOKE_DAG"], DAGS / "catalog_enrichment.py")
os.environ.update(
    AIRFLOW_HOME=str(HOME),
    AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
)

import carbon_sensors  # noqa: E402

AIRFLOW = Path(sys.executable).parent / "airflow"


def airflow(*args: str) -> str:
    return subprocess.run([str(AIRFLOW), *args], check=True, capture_output=True, text=True, timeout=300).stdout


@pytest.fixture(scope="module")
def airflow_db() -> Path:
    airflow("db", "migrate")
    return HOME


def test_airflow_lists_the_provider(airflow_db):
    """`airflow providers list` shows carbon-sensors at the installed version."""
    providers = {p["package_name"]: p["version"] for p in json.loads(airflow("providers", "list", "-o", "json"))}
    assert providers.get("carbon-sensors") == carbon_sensors.__version__, providers


def test_airflow_lists_the_connection_type(airflow_db):
    """`airflow providers hooks` lists the carbon_intensity connection type and its hook."""
    out = airflow("providers", "hooks", "-o", "json")
    hooks = {h["connection_type"]: h["class"] for h in json.loads(out)}
    assert hooks.get("carbon_intensity") == "carbon_sensors.hooks.carbon.CarbonIntensityHook", out[-2000:]


def test_airflow_lists_the_plugin(airflow_db):
    """`airflow plugins` lists the carbon_sensors plugin, with its UI app."""
    plugins = json.loads(airflow("plugins", "-o", "json"))
    ours = [p for p in plugins if p["name"] == "carbon_sensors"]
    assert len(ours) == 1, plugins
    assert "carbon-sensors" in json.dumps(ours[0])


def test_a_gated_dag_defers_and_resumes_under_dag_test(airflow_db):
    """catalog_enrichment's sensor defers to its trigger, which waits and force-starts it at 06:54."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1 keeps it in airflow.models
        from airflow.models.dagbag import DagBag

    from carbon_sensors.gate import add_decision_listener, remove_decision_listener
    from carbon_sensors.testing import FrozenClock, use_clock

    bag = DagBag(str(DAGS))
    assert not bag.import_errors, bag.import_errors
    when = datetime(2026, 6, 15, tzinfo=UTC)
    trail: list = []
    add_decision_listener(trail.append)
    try:
        with use_clock(FrozenClock(when)):
            dag_run = bag.get_dag("catalog_enrichment").test(logical_date=when)
    finally:
        remove_decision_listener(trail.append)
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", states
    assert trail[0].status == "wait" and trail[-1].status == "forced", [d.status for d in trail]
    assert trail[-1].decided_at == datetime(2026, 6, 15, 6, 54, tzinfo=UTC)
