"""The Prefect adapter takes the Airflow sensor's settings, carries gates as JSON, and keeps the import rules."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

pytest.importorskip("prefect", minversion="3.6")  # a bare name could be this folder, as a namespace package

from carbon_sensors import After, NextLocalTime, Policy
from carbon_sensors.prefect import GATE_SETTINGS, build_gate
from carbon_sensors.prefect._flow import match_force
from carbon_sensors.prefect._settings import BlockSource, gate_from_dict, gate_to_dict


def test_the_settings_are_the_airflow_sensors_with_block_for_conn_id():
    """Every flat keyword of the Airflow side's build_gate is taken here, conn_id swapped for block."""
    from carbon_sensors.operators.carbon import GATE_KWARGS

    assert GATE_SETTINGS == (GATE_KWARGS - {"conn_id"}) | {"block"}


def test_a_gate_survives_its_json_form():
    """gate_to_dict, through JSON, rebuilds an equal gate (zones, duration, sources, policy, fallback mode)."""
    gate = build_gate(zones=["DE", "GB"], deadline=After(hours=8), expected_duration=timedelta(minutes=90),
                      source={"kind": "electricitymaps", "block": "em-prod"}, fallbacks=["embedded"],
                      max_delay=timedelta(hours=3), threshold=120, min_saving_pct=5, safety_margin=timedelta(minutes=20),
                      on_source_error="embedded", check_interval=timedelta(minutes=2))
    data = json.loads(json.dumps(gate_to_dict(gate)))
    deadline = datetime(2026, 6, 15, 8, tzinfo=UTC)
    again = gate_from_dict(data, deadline)
    assert again.zones == gate.zones and again.expected_duration == gate.expected_duration
    assert again.policy == gate.policy == Policy(max_delay=timedelta(hours=3), threshold=120, min_saving_pct=5,
                                                 safety_margin=timedelta(minutes=20))
    assert isinstance(again.source, BlockSource) and again.source.block == "em-prod"
    assert again.source == gate.source and again.fallbacks == gate.fallbacks
    assert (again.on_source_error, again.check_interval) == ("embedded", timedelta(minutes=2))
    assert data["source"]["block"] == "em-prod" and "conn_id" not in data["source"]


def test_relative_deadlines_of_both_kinds_are_accepted():
    """After(...) and NextLocalTime(...) are valid flow deadlines, as for the sensor."""
    for deadline in (After(hours=8), NextLocalTime("06:00", timezone="Europe/Berlin")):
        assert build_gate(zone="GB", deadline=deadline, expected_duration=timedelta(hours=1)).deadline == deadline


@pytest.mark.parametrize(
    ("value", "forced"),
    [("*", True), ("nightly-*", True), ("nightly-flow/prod", True), ("other", False), ('["x", "nightly-flow"]', True),
     (None, False), (True, True)],
)
def test_the_force_variable_matches_flow_and_deployment_names(value, forced):
    """carbon_sensors_force takes '*', names, flow/deployment names, fnmatch patterns or a JSON list."""
    assert (match_force(value, ["nightly-flow", "nightly-flow/prod"]) is not None) is forced


def test_the_adapter_imports_neither_airflow_nor_the_airflow_adapters():
    """Importing carbon_sensors.prefect loads Prefect but no Airflow and none of the Airflow adapter modules."""
    code = (
        "import sys, carbon_sensors.prefect\n"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'airflow' or m.startswith(('carbon_sensors.operators',"
        " 'carbon_sensors.sensors', 'carbon_sensors.triggers', 'carbon_sensors.hooks', 'carbon_sensors.decorators'))]\n"
        "print(bad, 'prefect' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip().splitlines()[-1] == "[] True"


def test_a_misspelt_setting_is_named_by_the_entry_points_that_forward_settings():
    """schedule_in_window and plan_carbon_window forward **settings: a typo gets our error, naming it and the valid ones."""
    from carbon_sensors import ConfigurationError
    from carbon_sensors.prefect import plan_carbon_window, schedule_in_window

    with pytest.raises(ConfigurationError, match=r"schedule_in_window got unknown gate setting\(s\) zonez;.*zone"):
        schedule_in_window("etl/prod", zonez="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1))
    with pytest.raises(ConfigurationError, match=r"plan_carbon_window got unknown gate setting\(s\) treshold;"):
        plan_carbon_window.fn(zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1), treshold=100)
