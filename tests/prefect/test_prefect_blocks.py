"""Credentials blocks: secrets stay hidden, sources name blocks, and a missing block or bad key says what to do."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytest.importorskip("prefect", minversion="3.6")  # a bare name could be this folder, as a namespace package

from faulty_server import faulty_server, send_json
from prefect_helpers import deploy, run_logs, start_run, unique

from carbon_sensors import After, ConfigurationError, SourceAuthError
from carbon_sensors.prefect import (
    CarbonAwareSdkCredentials,
    ElectricityMapsCredentials,
    WattTimeCredentials,
    carbon_aware_flow,
    current_decision,
    plan_carbon_window,
    schedule_in_window,
)
from carbon_sensors.testing import FrozenClock, use_clock

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
KEY = "em-secret-key-0123456789"
FIXTURE_NOW = datetime(2023, 3, 15, 1, 0, tzinfo=UTC)  # the recorded Electricity Maps forecast starts here
FIXTURE_DEADLINE = "2023-03-15T12:00:00+00:00"


def electricitymaps(key: str):
    """An Electricity Maps stand-in serving the recorded DE forecast to ``key`` and 401 to anyone else."""
    forecast = json.loads((FIXTURES / "electricitymaps_forecast_DE.json").read_text())
    latest = json.loads((FIXTURES / "electricitymaps_latest_DE.json").read_text())

    def behaviour(_n, handler):
        if handler.headers.get("auth-token") != key:
            send_json(handler, {"error": "unauthorized"}, status=401)
        elif handler.path.startswith("/v3/carbon-intensity/forecast"):
            send_json(handler, forecast)
        else:
            send_json(handler, latest)

    return faulty_server(behaviour)


def em_block(base_url: str, key: str = KEY) -> str:
    name = unique("em")
    ElectricityMapsCredentials(api_key=key, base_url=base_url).save(name)
    return name


def plan(**kwargs):
    settings = dict(zone="DE", deadline=FIXTURE_DEADLINE, expected_duration=timedelta(hours=1))
    settings.update(kwargs)
    with use_clock(FrozenClock(FIXTURE_NOW)):
        return plan_carbon_window(**settings, now=FIXTURE_NOW)


def test_blocks_round_trip_and_hide_their_secrets(prefect_api):
    """Saved and loaded, each block keeps its values; its repr, str and JSON dump never show the secret."""
    name = unique("blk")
    ElectricityMapsCredentials(api_key=KEY, base_url="https://proxy.example").save(name)
    WattTimeCredentials(username="ana", password=KEY).save(name)
    CarbonAwareSdkCredentials(api_key=KEY).save(name)
    em, wt, sdk = (cls.load(name) for cls in (ElectricityMapsCredentials, WattTimeCredentials, CarbonAwareSdkCredentials))
    assert em.api_key.get_secret_value() == KEY and em.base_url == "https://proxy.example"
    assert wt.username == "ana" and wt.password.get_secret_value() == KEY
    assert sdk.credentials().api_key == KEY
    for block in (em, wt, sdk):
        for text in (repr(block), str(block), block.model_dump_json(), repr(block.credentials())):
            assert KEY not in text


def test_a_carbon_aware_sdk_block_may_hold_no_key(prefect_api):
    """An SDK without a gateway needs no key: an empty block gives credentials without one."""
    name = unique("sdk")
    CarbonAwareSdkCredentials().save(name)
    assert CarbonAwareSdkCredentials.load(name).credentials().api_key is None


def test_block_types_are_namespaced_and_register(prefect_api):
    """The three block types have carbon-sensors slugs and register with the server."""
    slugs = {cls.get_block_type_slug() for cls in (ElectricityMapsCredentials, WattTimeCredentials, CarbonAwareSdkCredentials)}
    assert slugs == {"carbon-sensors-electricitymaps", "carbon-sensors-watttime", "carbon-sensors-carbon-aware-sdk"}
    for cls in (ElectricityMapsCredentials, WattTimeCredentials, CarbonAwareSdkCredentials):
        cls.register_type_and_schema()
    schema = ElectricityMapsCredentials.model_json_schema()
    assert schema["properties"]["api_key"]["description"].startswith("The Electricity Maps API key")
    assert "api_key" in schema["secret_fields"]


def test_a_source_reads_its_key_from_the_block(prefect_api):
    """With the block's key the recorded forecast is fetched and planned; the key went in the auth-token header."""
    with electricitymaps(KEY) as server:
        block = em_block(server["url"])
        event = plan(source={"kind": "electricitymaps", "block": block}, on_source_error="fail")
    assert event["status"] in ("go", "wait") and event["source"].startswith("electricitymaps")
    assert server["requests"] >= 1


def test_a_missing_block_says_how_to_create_it(prefect_api):
    """A block name with no block behind it is a ConfigurationError that names the block type and how to save one."""
    with pytest.raises(ConfigurationError) as caught:
        plan(source="electricitymaps", block=unique("nope"))
    message = str(caught.value)
    assert "carbon-sensors-electricitymaps" in message
    assert "ElectricityMapsCredentials(...).save(" in message


def test_a_refused_key_names_the_block_to_fix(prefect_api):
    """An API that answers 401 gives a SourceAuthError naming the block (not an Airflow connection), without the key."""
    wrong = "wrong-key-abcdef"
    with electricitymaps(KEY) as server:
        block = em_block(server["url"], key=wrong)
        with pytest.raises(SourceAuthError) as caught:
            plan(source={"kind": "electricitymaps", "block": block}, on_source_error="fail")
    message = str(caught.value)
    assert "HTTP 401" in message and f"Prefect block {block!r}" in message and "overwrite=True" in message
    assert "Airflow" not in message and wrong not in message


def test_a_refused_key_under_run_now_starts_at_once_and_says_why(prefect_api):
    """With the default on_source_error, a refused key forces a start now and the reason names the block."""
    with electricitymaps(KEY) as server:
        block = em_block(server["url"], key="wrong-key-abcdef")
        event = plan(source={"kind": "electricitymaps", "block": block})
    assert event["status"] == "forced" and event["forced_reason"] == "source_error"
    assert block in event["reason"] and "wrong-key" not in event["reason"]


def test_keys_never_reach_parameters_labels_states_logs_or_artifacts(client, prefect_api):
    """A scheduled, block-backed run leaves the key nowhere the server keeps; only the block's name travels."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with electricitymaps(KEY) as server:
        block = em_block(server["url"])

        @carbon_aware_flow(zone="DE", deadline=After(hours=11), expected_duration=timedelta(hours=1),
                           source={"kind": "electricitymaps", "block": block}, name=unique("em-flow"))
        def em_flow(label: str = "x") -> str:
            return f"{label}: {current_decision()['status']}"

        _, full_name = deploy(em_flow)
        with use_clock(FrozenClock(FIXTURE_NOW)):
            scheduled = schedule_in_window(full_name, zone="DE", deadline=FIXTURE_DEADLINE,
                                           expected_duration=timedelta(hours=1), source="electricitymaps", block=block,
                                           parameters={"label": "enrich"}, on_source_error="fail")
        with use_clock(FrozenClock(scheduled.scheduled_time)):
            outcome, _ = start_run(client, em_flow, scheduled.flow_run_id)
    assert outcome == "done"
    stored = client.read_flow_run(scheduled.flow_run_id)
    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[stored.id])))
    kept = [json.dumps(stored.parameters), json.dumps(stored.labels), stored.state.message or "",
            run_logs(client, stored.id), *(str(a.data) for a in artifacts)]
    assert all(KEY not in text for text in kept)
    assert json.loads(stored.labels["carbon-sensors.gate"])["source"]["block"] == block
    assert artifacts, "the decision artifact exists, so the check above looked at it"


@pytest.mark.parametrize(
    ("source", "block", "match"),
    [
        ("embedded", "em-prod", "needs no credentials"),
        ({"kind": "neso", "block": "em-prod"}, None, "needs no credentials"),
        ({"kind": "electricitymaps", "conn_id": "carbon_default"}, None, "names an Airflow connection"),
        ({"kind": "electricitymaps", "block": "EM Prod"}, None, "lower-case letters, digits and dashes"),
        ({"kind": "electricitymaps", "block": "a"}, "b", "give one"),
    ],
)
def test_block_names_in_the_wrong_place_are_refused(source, block, match):
    """A block on a keyless source, an Airflow conn_id, a bad name or two names is a ConfigurationError."""
    from carbon_sensors.prefect import build_gate

    with pytest.raises(ConfigurationError, match=match):
        build_gate(zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1), source=source, block=block)


def test_the_collection_entry_point_target_registers_the_block_types(tmp_path):
    """Loaded through a prefect.collections entry point, the blocks module makes all three block types known to Prefect."""
    import subprocess
    import sys

    dist = tmp_path / "carbon_sensors_probe-0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: carbon-sensors-probe\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text("[prefect.collections]\ncarbon_sensors = carbon_sensors.prefect.blocks\n")
    code = (
        "from prefect.plugins import load_prefect_collections\n"
        "from prefect.blocks.core import Block\n"
        "from prefect.utilities.dispatch import lookup_type\n"
        "loaded = load_prefect_collections()['carbon_sensors']\n"
        "assert not isinstance(loaded, Exception), loaded\n"
        "print(sorted(lookup_type(Block, s).__name__ for s in ('carbon-sensors-electricitymaps',"
        " 'carbon-sensors-watttime', 'carbon-sensors-carbon-aware-sdk')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)}).stdout
    assert out.strip().splitlines()[-1] == "['CarbonAwareSdkCredentials', 'ElectricityMapsCredentials', 'WattTimeCredentials']"


def test_a_price_source_reads_its_token_from_an_entsoe_block(prefect_api):
    """An ENTSO-E price source naming a block is planned on with the block's token; the spec keeps only the name."""
    from urllib.parse import parse_qs, urlparse

    from carbon_sensors.prefect import EntsoeCredentials, build_gate
    from carbon_sensors.prefect._settings import gate_from_dict, gate_to_dict

    day = (FIXTURES / "entsoe_a44_DE-LU_2025-10-06_PT15M.xml").read_bytes()
    token = "entsoe-block-token-7d1e"
    seen = []

    def behaviour(_n, handler):
        seen.append(parse_qs(urlparse(handler.path).query))
        send_json(handler, day, headers={"Content-Type": "text/xml"})

    name = unique("entsoe")
    EntsoeCredentials(api_key=token).save(name)
    now = datetime(2025, 10, 6, 8, 20, tzinfo=UTC)
    with faulty_server(behaviour) as server, use_clock(FrozenClock(now)):
        gate = build_gate(zone="DE", deadline=now + timedelta(hours=10), expected_duration=timedelta(hours=1),
                          price_source={"kind": "entsoe", "block": name, "base_url": server["url"]},
                          max_cost_increase_pct=0)
        assert token not in json.dumps(gate_to_dict(gate)) and f"prefect-block:{name}" in json.dumps(gate_to_dict(gate))
        assert gate_from_dict(gate_to_dict(gate), now + timedelta(hours=10)) == gate
        from carbon_sensors import decide
        from carbon_sensors.signals import run_sync

        decision = run_sync(decide(gate, now=now, deadline=now + timedelta(hours=10), submitted_at=now))
    event = decision.to_event()
    assert seen and seen[0]["securityToken"] == [token]
    assert event["price_currency"] == "EUR" and event["price_source"].startswith("entsoe") and not event["price_degraded"]
    with pytest.raises(ConfigurationError, match="price source needs no credentials"):
        build_gate(zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1),
                   price_source={"kind": "tariff", "flat": 90.0, "currency": "EUR", "block": name})
