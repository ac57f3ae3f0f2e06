"""A gate setting lives in one place: CarbonGate, its dict form and GATE_SETTINGS; every signature is checked against it."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import timedelta

import pytest
from gate_samples import BASE, NEEDS, SAMPLE, keyword_names, undocumented

from carbon_sensors import After, CarbonGate, Policy, TariffPrices
from carbon_sensors.airflow.runtime import GATE_KWARGS, build_gate
from carbon_sensors.gate import GATE_SETTINGS, POLICY_SETTINGS
from carbon_sensors.sensors.carbon import CarbonAwareSensor
from carbon_sensors.triggers.carbon import CarbonWindowTrigger
from carbon_sensors.wire import TRIGGER_KWARGS


def test_the_list_is_the_gates_fields_and_the_policys():
    """GATE_SETTINGS is CarbonGate's fields with the policy spelt out as its own, and zone beside zones."""
    expected = ({f.name for f in fields(CarbonGate)} - {"policy"}) | {f.name for f in fields(Policy)} | {"zone"}
    missing, extra = sorted(expected - set(GATE_SETTINGS)), sorted(set(GATE_SETTINGS) - expected)
    assert not missing, f"add {missing} to carbon_sensors.gate.GATE_SETTINGS"
    assert not extra, f"{extra} in GATE_SETTINGS are neither CarbonGate nor Policy fields"
    assert set(POLICY_SETTINGS) == {f.name for f in fields(Policy)}


def test_the_sample_covers_every_setting():
    """tests/gate_samples.py has a value for every setting, so the tests below reach them all."""
    missing = sorted(set(GATE_SETTINGS) - set(SAMPLE) - {"zone"})
    assert not missing, f"give {missing} a non-default value in tests/gate_samples.py SAMPLE"


def test_from_settings_is_the_hand_built_gate():
    """The flat settings build the gate one would write out by hand."""
    by_hand = CarbonGate(
        zones=("DE", "GB"), deadline=SAMPLE["deadline"], expected_duration=timedelta(minutes=90),
        source=SAMPLE["source"],
        policy=Policy(max_delay=timedelta(hours=3), threshold=120.0, min_saving_pct=5.0, safety_margin=timedelta(minutes=20),
                      max_cost_increase_pct=10.0, objective="cost", max_intensity=300.0, carbon_price_per_tonne=80.0,
                      currency="EUR", persistence_prior=False),
        on_source_error="embedded", check_interval=timedelta(minutes=2), fallbacks=tuple(SAMPLE["fallbacks"]),
        price_source=TariffPrices(95.0, currency="EUR"),
    )
    assert CarbonGate.from_settings(**SAMPLE) == by_hand
    assert CarbonGate.from_settings(**{**BASE, "zones": None, "zone": "DE"}) == CarbonGate.from_settings(**BASE)


def test_every_setting_survives_the_dict_form():
    """to_dict, through JSON, and from_dict give back an equal gate, with every setting changed from its default."""
    gate = CarbonGate.from_settings(**SAMPLE)
    again = CarbonGate.from_dict(json.loads(json.dumps(gate.to_dict())), deadline=gate.deadline)
    assert again == gate


@pytest.mark.parametrize("name", sorted(set(SAMPLE) - {"deadline", "zones"}))
def test_each_setting_reaches_the_dict_form(name):
    """Changing one setting changes to_dict, and from_dict reads it back (the deadline travels apart)."""
    base = CarbonGate.from_settings(**{**BASE, **NEEDS.get(name, {})})
    changed = CarbonGate.from_settings(**{**BASE, **NEEDS.get(name, {}), name: SAMPLE[name]})
    assert changed.to_dict() != base.to_dict(), f"CarbonGate.to_dict() leaves out {name}"
    assert CarbonGate.from_dict(changed.to_dict(), deadline=changed.deadline) == changed, f"from_dict loses {name}"


def test_an_unknown_setting_is_named():
    """A misspelt setting is a TypeError that names it and lists the settings."""
    with pytest.raises(TypeError, match=r"unknown gate setting\(s\) treshold; the settings are zone, zones"):
        CarbonGate.from_settings(**BASE, treshold=100)


def test_the_airflow_keywords_are_the_list_with_conn_id():
    """build_gate takes exactly the settings and conn_id; the sensor takes them all and documents them."""
    assert GATE_KWARGS == set(GATE_SETTINGS) | {"conn_id"}
    missing = sorted(GATE_KWARGS - keyword_names(build_gate))
    assert not missing, f"carbon_sensors.airflow.runtime.build_gate lacks the keyword(s) {missing}"
    assert not (extra := sorted(keyword_names(build_gate) - GATE_KWARGS)), f"build_gate takes {extra}, not in GATE_KWARGS"
    missing = sorted(GATE_KWARGS - keyword_names(CarbonAwareSensor.__init__))
    assert not missing, f"CarbonAwareSensor.__init__ lacks the keyword(s) {missing}"
    assert not (gaps := undocumented(CarbonAwareSensor.__doc__, GATE_KWARGS)), f"the sensor's docstring omits {gaps}"


def test_the_sensor_and_build_gate_make_the_same_gate():
    """Every setting given to the sensor or to build_gate reaches its gate."""
    gate = CarbonGate.from_settings(**SAMPLE)
    assert build_gate(**SAMPLE) == gate
    assert CarbonAwareSensor(task_id="wait", **SAMPLE).gate == gate


def test_the_trigger_takes_every_setting_of_the_dict_form():
    """Each key of CarbonGate.to_dict() is a trigger kwarg (CarbonWindowTrigger.__init__ and the wire table)."""
    keys = set(CarbonGate.from_settings(**BASE).to_dict())
    assert not (missing := sorted(keys - set(TRIGGER_KWARGS))), f"add {missing} to carbon_sensors.wire.TRIGGER_KWARGS"
    missing = sorted(keys - keyword_names(CarbonWindowTrigger.__init__))
    assert not missing, f"CarbonWindowTrigger.__init__ lacks the kwarg(s) {missing} (with defaults)"


def test_from_gate_is_the_hand_built_trigger():
    """from_gate gives the trigger built kwarg by kwarg, and its gate is the one it was given."""
    gate = CarbonGate.from_settings(**SAMPLE)
    facts = {"dag_id": "d", "task_id": "t", "run_id": "r", "map_index": 3, "try_number": 2,
             "intensity_at_submission": 310.5, "signal_at_submission": "average",
             "waiting_until": SAMPLE["deadline"] - timedelta(hours=4)}
    submitted = SAMPLE["deadline"] - timedelta(hours=8)
    by_hand = CarbonWindowTrigger(
        zones=["DE", "GB"], deadline=SAMPLE["deadline"], expected_duration_s=5400.0, submitted_at=submitted,
        source=gate.source.to_spec(), policy=gate.policy.to_dict(), on_source_error="embedded", check_interval_s=120.0,
        fallbacks=[f.to_spec() for f in gate.fallbacks], price_source=gate.price_source.to_spec(), **facts,
    )
    trigger = CarbonWindowTrigger.from_gate(gate, submitted_at=submitted, **facts)
    assert trigger.unreadable is None and trigger.serialize() == by_hand.serialize()
    assert trigger.gate == gate
    relative = CarbonGate.from_settings(**{**SAMPLE, "deadline": After(hours=12)})
    assert CarbonWindowTrigger.from_gate(relative, deadline=SAMPLE["deadline"], submitted_at=submitted,
                                         **facts).serialize() == by_hand.serialize()
