"""Importing the core, and the sensor in a DAG file, stays cheap: no Airflow, Prefect or pandas in the core."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("airflow", "prefect", "pandas", "numpy", "sqlalchemy", "pyarrow", "httpx")


def loaded_after(imports: str, before: str = "") -> set[str]:
    """Top-level packages a fresh interpreter has loaded after ``imports`` that it had not after ``before``."""
    code = (
        "import sys, json\n"
        f"{before}\n"
        "base = {m.split('.')[0] for m in sys.modules}\n"
        f"{imports}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} - base)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_core_imports_no_framework_and_no_dataframe_library():
    """import carbon_sensors and the planner pull in neither airflow, prefect, pandas nor the other heavy ones."""
    new = loaded_after("import carbon_sensors, carbon_sensors.planning, carbon_sensors.gate, carbon_sensors.signals")
    assert not new & set(HEAVY), new & set(HEAVY)


def test_the_cli_module_stays_light():
    """The console script's module imports nothing heavy before a command needs it."""
    new = loaded_after("import carbon_sensors.cli")
    assert not new & set(HEAVY), new & set(HEAVY)


def test_sensor_adds_no_heavy_package_beyond_what_airflow_sdk_loads():
    """A DAG file importing the sensor, the decorator and the gated operator loads nothing heavy Airflow had not."""
    new = loaded_after(
        "import carbon_sensors.sensors, carbon_sensors.decorators, carbon_sensors.operators",
        before="import airflow.sdk",
    )
    assert not new & set(HEAVY), new & set(HEAVY)


def test_core_import_does_not_start_asyncio_or_read_the_profile():
    """Parsing a DAG validates zones without reading the profile file, and the core imports no asyncio."""
    new = loaded_after(
        "import carbon_sensors\n"
        "from datetime import timedelta\n"
        "carbon_sensors.CarbonGate(zones='DE', deadline=carbon_sensors.After(hours=8), expected_duration=timedelta(hours=1))\n"
        "from carbon_sensors.signals.embedded import _profiles\n"
        "assert _profiles.cache_info().currsize == 0, 'the profile file was read'"
    )
    assert "asyncio" not in new


def test_parsing_a_dag_does_not_load_runtime_only_modules():
    """Credentials, the hook, HTTP, metering, recording, the ledger and the UI load when work runs, not at DAG parse."""
    code = (
        "import sys, airflow.sdk, carbon_sensors.sensors, carbon_sensors.decorators, carbon_sensors.operators\n"
        "print(','.join(m for m in ('carbon_sensors.hooks.carbon', 'carbon_sensors.signals.credentials',\n"
        "                           'carbon_sensors.signals.http', 'carbon_sensors.simulate', 'carbon_sensors.accounting',\n"
        "                           'carbon_sensors.recording', 'carbon_sensors.records', 'carbon_sensors.metering',\n"
        "                           'carbon_sensors.ledger', 'carbon_sensors.plugins.app', 'carbon_sensors.plugins.trail',\n"
        "                           'carbon_sensors.plugins.links')\n"
        "                 if m in sys.modules))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert loaded.splitlines()[-1:] in ([], [""]), loaded
