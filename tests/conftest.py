"""Shared test set-up: an isolated Airflow home (set before Airflow is imported) and data paths."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

# Airflow reads these when first imported, so they must be set before any test module imports it.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="carbon-sensors-airflow-"))
_DAGS = _AIRFLOW_HOME / "dags"
_DAGS.mkdir()
for source in [*sorted((ROOT / "example_dags").glob("*.py")), *sorted((ROOT / "tests" / "dags").glob("*.py"))]:
    shutil.copy(source, _DAGS / source.name)
os.environ.update(
    AIRFLOW_HOME=str(_AIRFLOW_HOME),
    AIRFLOW__CORE__DAGS_FOLDER=str(_DAGS),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
)
for name in [k for k in os.environ if k.startswith(("CARBON_SENSORS_", "AIRFLOW_VAR_CARBON", "AIRFLOW__CARBON_SENSORS__"))]:
    del os.environ[name]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real grid data next to the repository; tests that need it skip where it is absent."""
    if not (SHARED_DATA / "carbon").is_dir():
        pytest.skip(f"real grid data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata database in the isolated Airflow home (for dag.test())."""
    if not (_AIRFLOW_HOME / "airflow.db").exists():
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def dag_bag(airflow_db):
    """Every example and test DAG, parsed the way Airflow parses them."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(_DAGS))
    assert not bag.import_errors, bag.import_errors
    return bag


@pytest.fixture(autouse=True)
def _no_overrides_leak(monkeypatch):
    """Each test starts with no kill switch, no force Variable and a fresh override cache."""
    for name in ("CARBON_SENSORS_KILL_SWITCH", "AIRFLOW_VAR_CARBON_SENSORS_FORCE", "AIRFLOW__CARBON_SENSORS__KILL_SWITCH"):
        monkeypatch.delenv(name, raising=False)
    if "carbon_sensors.triggers.carbon" in sys.modules:
        sys.modules["carbon_sensors.triggers.carbon"]._overrides.clear()
    yield
    if "carbon_sensors.triggers.carbon" in sys.modules:
        sys.modules["carbon_sensors.triggers.carbon"]._overrides.clear()


def pytest_configure(config):
    """Register the marker of the tests that need a PostgreSQL server (they skip where none answers)."""
    config.addinivalue_line(
        "markers",
        "postgres: needs the PostgreSQL server at CS_TEST_POSTGRES_URL (default postgres@127.0.0.1:5432/test); "
        "skipped when it does not answer",
    )
