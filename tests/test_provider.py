"""The package registers itself with Airflow as a provider and is listed by Airflow's own CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from carbon_sensors.provider_info import get_provider_info


def test_provider_info_names_the_distribution():
    """package-name equals the distribution name, as Airflow requires."""
    info = get_provider_info()
    assert info["package-name"] == "carbon-sensors"
    assert info["name"] and info["description"]


def test_provider_info_modules_import():
    """Every module and class the provider info names exists."""
    import importlib

    info = get_provider_info()
    for group in ("sensors", "triggers", "operators"):
        for entry in info[group]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for decorator in info["task-decorators"]:
        module, _, name = decorator["class-name"].rpartition(".")
        assert callable(getattr(importlib.import_module(module), name))


def test_entry_point_is_registered():
    """The apache_airflow_provider entry point points at get_provider_info."""
    names = {ep.value for ep in entry_points(group="apache_airflow_provider")}
    assert "carbon_sensors.provider_info:get_provider_info" in names


@pytest.mark.integration
def test_airflow_lists_the_provider(airflow_db):
    """`airflow providers list` shows carbon-sensors with its version."""
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "-o", "plain"],
        check=True, capture_output=True, text=True, env=os.environ.copy(),
    ).stdout
    from carbon_sensors import __version__

    line = next((line for line in out.splitlines() if line.startswith("carbon-sensors")), "")
    assert __version__ in line, out


@pytest.mark.integration
def test_airflow_lists_the_connection_type(airflow_db):
    """`airflow providers hooks` shows the carbon_intensity connection type and its hook."""
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "hooks", "-o", "plain"],
        check=True, capture_output=True, text=True, env=os.environ.copy(),
    ).stdout
    line = next((line for line in out.splitlines() if "carbon_intensity" in line), "")
    assert "carbon_sensors.hooks.carbon.CarbonIntensityHook" in line, out[-2000:]
