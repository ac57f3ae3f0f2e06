"""Zone names and other user strings cannot change the request URL: no path or query injection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from faulty_server import faulty_server, send_json

from carbon_sensors.errors import CarbonSensorsError, ConfigurationError
from carbon_sensors.signals import run_sync, source_from_spec
from carbon_sensors.signals.cache import DEFAULT_CACHE

NOW = datetime(2026, 6, 15, 1, 10, tzinfo=UTC)
EVIL = [
    "DE/../../admin", "DE?zone=FR", "DE&zone=FR", "DE#frag", "DE%2F..%2Fadmin", "DE\r\nHost: evil.example",
    "../v3/secret", "DE zone", "DE\x00", "http://evil.example/", "DE;rm -rf", "{zone}",
]
FAST = {"read_timeout_s": 0.5, "connect_timeout_s": 0.5, "max_retries": 0, "backoff_s": 0.0}
# kind: (extra spec, the fixed paths it may request, the query parameter the zone travels in)
SOURCES = {
    "electricitymaps": ({}, {"/v3/carbon-intensity/forecast", "/v3/carbon-intensity/latest"}, "zone"),
    "watttime": ({}, {"/login", "/v3/forecast"}, "region"),
    "carbon_aware_sdk": ({}, {"/emissions/forecasts/current"}, "location"),
}
SAFE_ZONE = {"electricitymaps": "DE", "watttime": "CAISO_NORTH", "carbon_aware_sdk": "westeurope"}


@pytest.fixture(autouse=True)
def _credentials(monkeypatch):
    monkeypatch.setenv("CARBON_SENSORS_ELECTRICITYMAPS_API_KEY", "em-key")
    monkeypatch.setenv("CARBON_SENSORS_WATTTIME_USERNAME", "user")
    monkeypatch.setenv("CARBON_SENSORS_WATTTIME_PASSWORD", "pass")
    monkeypatch.setenv("CARBON_SENSORS_CARBON_AWARE_SDK_API_KEY", "sdk-key")
    DEFAULT_CACHE.clear()
    yield
    DEFAULT_CACHE.clear()


def answer(n, handler):
    if handler.path.startswith("/login"):
        send_json(handler, {"token": "t"})
    else:
        send_json(handler, {"error": "not here"}, 404)


def fetch(source, zone):
    try:
        run_sync(source.fetch(zone, NOW, NOW + timedelta(hours=2), now=NOW))
    except CarbonSensorsError:
        pass


@pytest.mark.parametrize("kind", sorted(SOURCES))
@pytest.mark.parametrize("zone", EVIL)
def test_a_hostile_zone_never_reaches_the_server(kind, zone):
    """A zone that is not a plain zone key is refused before any request is made."""
    extra, _, _ = SOURCES[kind]
    with faulty_server(answer) as server:
        source = source_from_spec({"kind": kind, "base_url": server["url"], **FAST, **extra})
        with pytest.raises(ConfigurationError):
            source.check_zone(zone)
        fetch(source, zone)
    assert server["paths"] == []


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_a_plain_zone_travels_as_one_encoded_query_parameter(kind):
    """A valid zone goes to a fixed path as exactly one query parameter, decoded back to itself."""
    extra, paths, param = SOURCES[kind]
    with faulty_server(answer) as server:
        source = source_from_spec({"kind": kind, "base_url": server["url"], **FAST, **extra})
        fetch(source, SAFE_ZONE[kind])
    assert server["paths"], "the source made no request"
    for raw in server["paths"]:
        parts = urlsplit(raw)
        assert parts.path in paths and not parts.fragment
        if parts.path != "/login":
            assert parse_qs(parts.query)[param] == [SAFE_ZONE[kind]]


@pytest.mark.parametrize(("spec", "bad"), [
    ({"kind": "neso", "postcode": "RG10/../../x"}, "postcode"),
    ({"kind": "neso", "postcode": "SW1A?x=1"}, "postcode"),
    ({"kind": "neso", "region_id": "3/../7"}, "region_id"),
    ({"kind": "electricitymaps", "zone_key": "DE&zone=FR"}, "zone_key"),
    ({"kind": "watttime", "region": "CAISO/../../login"}, "region"),
    ({"kind": "carbon_aware_sdk", "location": "westeurope&location=eastus"}, "location"),
])
def test_hostile_source_settings_are_refused_when_the_dag_is_parsed(spec, bad):
    """Settings that end up in a URL (postcode, region, zone key, location) are validated at construction."""
    with pytest.raises(ConfigurationError):
        source_from_spec({**spec, "base_url": "http://127.0.0.1:9", **FAST})
