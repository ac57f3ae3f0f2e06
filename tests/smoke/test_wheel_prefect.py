"""The installed wheel inside Prefect: the collection entry point loads and an example flow waits and runs."""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from datetime import UTC, datetime

import pytest
from smoke_env import require_wheel_cell

require_wheel_cell()

os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="carbon-sensors-smoke-prefect-")
os.environ["PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"] = "ignore"
os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(scope="module")
def prefect_api():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_the_collection_entry_point_loads():
    """Prefect loads carbon_sensors through its prefect.collections entry point."""
    from prefect.plugins import load_prefect_collections

    loaded = load_prefect_collections()
    assert "carbon_sensors" in loaded and not isinstance(loaded["carbon_sensors"], Exception), loaded


def test_an_example_flow_waits_and_is_forced_at_its_latest_start(prefect_api):
    """The catalog_enrichment flow waits on the embedded profile and starts at 06:54, as its Airflow twin."""
    from carbon_sensors.gate import add_decision_listener, remove_decision_listener
    from carbon_sensors.testing import FrozenClock, use_clock

    spec = importlib.util.spec_from_file_location("prefect_catalog_enrichment", os.environ["CARBON_SENSORS_SMOKE_FLOW"])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    when = datetime(2026, 6, 15, tzinfo=UTC)
    trail: list = []
    add_decision_listener(trail.append)
    try:
        with use_clock(FrozenClock(when)):
            result = module.catalog_enrichment()
    finally:
        remove_decision_listener(trail.append)
    assert trail[0].status == "wait" and trail[-1].forced_reason == "latest_start"
    assert result == "published 2000 products (started: forced, zone DE)"
