"""The Prefect adapter builds and carries gates through the one list of settings and CarbonGate's dict form."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("prefect", minversion="3.6")  # a bare name could be this folder, as a namespace package

from gate_samples import SAMPLE, keyword_names, undocumented

from carbon_sensors.gate import GATE_SETTINGS as CORE_SETTINGS
from carbon_sensors.gate import CarbonGate
from carbon_sensors.prefect import GATE_SETTINGS, build_gate, carbon_aware_flow, schedule_in_window
from carbon_sensors.prefect._settings import BlockSource, gate_from_dict, gate_to_dict


def test_build_gate_takes_exactly_the_list_with_block():
    """Prefect's build_gate names every setting and block, and its entry points document them all."""
    assert GATE_SETTINGS == set(CORE_SETTINGS) | {"block"}
    missing = sorted(GATE_SETTINGS - keyword_names(build_gate))
    assert not missing, f"carbon_sensors.prefect.build_gate lacks the keyword(s) {missing}"
    assert not (extra := sorted(keyword_names(build_gate) - GATE_SETTINGS)), f"build_gate takes {extra}, not in the list"
    for entry in (carbon_aware_flow, schedule_in_window):
        assert not (gaps := undocumented(entry.__doc__, GATE_SETTINGS)), f"{entry.__name__}'s docstring omits {gaps}"


def test_build_gate_is_the_core_gate():
    """Every setting given to Prefect's build_gate reaches the gate CarbonGate.from_settings builds."""
    assert build_gate(**SAMPLE) == CarbonGate.from_settings(**SAMPLE)


def test_the_run_labels_carry_every_setting():
    """gate_to_dict is CarbonGate.to_dict, and gate_from_dict rebuilds every setting and the block through JSON."""
    # GB: the sample's NESO fallback serves GB only (a fallback serving none of the zones is refused)
    gate = build_gate(**{**SAMPLE, "source": {"kind": "electricitymaps", "block": "em-prod"}, "zones": ["GB"]})
    assert gate_to_dict(gate) == gate.to_dict()
    again = gate_from_dict(json.dumps(gate_to_dict(gate)), SAMPLE["deadline"])
    assert again == gate and isinstance(again.source, BlockSource) and again.source.block == "em-prod"
