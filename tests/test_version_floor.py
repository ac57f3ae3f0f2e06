"""An Airflow or Prefect older than the floor gets one clear error where the adapter is imported."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from carbon_sensors.compat import FLOORS, check_version, installed_version
from carbon_sensors.errors import CarbonSensorsError, VersionError


@pytest.mark.parametrize("version", ["2.10.5", "3.0.6", "3.0.0rc1"])
def test_an_airflow_older_than_the_floor_is_refused_with_the_version_needed(version):
    """The message names the installed version, the floor and the pip command."""
    with pytest.raises(VersionError, match=rf"Apache Airflow 3\.1 or newer.*has {version}.*apache-airflow>=3\.1") as info:
        check_version("airflow", version)
    assert isinstance(info.value, CarbonSensorsError) and isinstance(info.value, ImportError)


@pytest.mark.parametrize("version", ["3.1.0", "3.1.8", "3.3.2", "3.10.0"])
def test_supported_airflow_versions_pass(version):
    check_version("airflow", version)


def test_a_prefect_older_than_the_floor_is_refused():
    with pytest.raises(VersionError, match=r"Prefect 3\.7 or newer.*has 3\.4\.25"):
        check_version("prefect", "3.4.25")
    check_version("prefect", "3.9.1")


def test_the_installed_airflow_is_read_from_its_metadata():
    """In the test venv the installed Airflow is found, and it satisfies the floor."""
    version = installed_version("airflow")
    assert version is not None
    check_version("airflow", version)
    assert FLOORS["airflow"][2] == (3, 1)


def _fake_airflow_core(tmp_path, version: str) -> dict[str, str]:
    """An environment whose first apache-airflow-core metadata on the path says ``version``."""
    dist = tmp_path / f"apache_airflow_core-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: apache-airflow-core\nVersion: {version}\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.parametrize("module", ["carbon_sensors.sensors", "carbon_sensors.triggers", "carbon_sensors.operators",
                                    "carbon_sensors.hooks", "carbon_sensors.decorators", "carbon_sensors.plugins.plugin"])
def test_importing_an_adapter_under_an_old_airflow_fails_with_the_floor(tmp_path, module):
    """With Airflow 3.0.6's metadata first on the path, importing the adapter raises VersionError, before any Airflow import."""
    code = (
        "import sys\n"
        "import carbon_sensors\n"
        "try:\n"
        f"    import {module}\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
        "    print('airflow imported:', 'airflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=_fake_airflow_core(tmp_path, "3.0.6"), capture_output=True,
                         text=True, check=True).stdout
    assert "VersionError carbon-sensors needs Apache Airflow 3.1 or newer, and this environment has 3.0.6" in out, out
    assert "airflow imported: False" in out


def test_the_provider_entry_point_under_an_old_airflow_names_the_floor(tmp_path):
    """Airflow's providers manager calls get_provider_info first: under Airflow 3.0.6 it raises VersionError."""
    code = (
        "from carbon_sensors.provider_info import get_provider_info\n"
        "try:\n"
        "    get_provider_info()\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=_fake_airflow_core(tmp_path, "3.0.6"), capture_output=True,
                         text=True, check=True).stdout
    assert "VersionError carbon-sensors needs Apache Airflow 3.1 or newer, and this environment has 3.0.6" in out, out
    from carbon_sensors.provider_info import get_provider_info

    assert get_provider_info()["package-name"] == "carbon-sensors"  # the installed Airflow passes
