"""Keys come from a real Airflow Connection (through Airflow's own secrets backends) or the environment,
and never reach trigger kwargs, events or specs."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

import carbon_sensors.hooks.carbon  # noqa: F401 - registers the Airflow Connection resolver
from carbon_sensors import ConfigurationError
from carbon_sensors.signals.cache import ForecastCache
from carbon_sensors.signals.credentials import resolve_credentials
from carbon_sensors.signals.electricitymaps import ElectricityMapsSource

SENTINEL = "sentinel-key-7f3a9c"
NOW = datetime(2026, 6, 15, 10, 0, tzinfo=UTC)


@pytest.fixture
def em_connection(monkeypatch):
    """A carbon_intensity Connection defined the way deployments often do: an AIRFLOW_CONN_ variable."""
    monkeypatch.setenv("AIRFLOW_CONN_CARBON_EM", json.dumps(
        {"conn_type": "carbon_intensity", "password": SENTINEL, "extra": {"provider": "electricitymaps"}}))


def test_a_real_connection_is_read_through_airflows_secrets_backend(em_connection):
    """resolve_credentials with a conn_id reads the Connection's password as the key."""
    creds = asyncio.run(resolve_credentials("electricitymaps", "carbon_em"))
    assert creds.api_key == SENTINEL and SENTINEL not in repr(creds)


def test_a_missing_connection_is_a_clear_error():
    """An unknown conn_id names the connection and says how to create it."""
    with pytest.raises(ConfigurationError, match="'no_such_conn' does not exist; create it"):
        asyncio.run(resolve_credentials("electricitymaps", "no_such_conn"))


def test_the_key_reaches_the_request_but_never_the_spec(em_connection):
    """The source sends the Connection's key upstream, while its spec carries only the conn_id."""
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("auth-token"))
        if request.url.path.endswith("/forecast"):
            points = [{"datetime": (NOW + timedelta(hours=h)).isoformat(), "carbonIntensity": 300 - 10 * h}
                      for h in range(12)]
            return httpx.Response(200, json={"zone": "DE", "forecast": points, "updatedAt": NOW.isoformat()})
        return httpx.Response(404, json={"error": "no latest"})

    source = ElectricityMapsSource(conn_id="carbon_em", transport=httpx.MockTransport(answer), cache=ForecastCache())
    asyncio.run(source.fetch("DE", NOW, NOW + timedelta(hours=8), now=NOW))
    assert SENTINEL in seen
    assert SENTINEL not in json.dumps(source.to_spec()) and source.to_spec()["conn_id"] == "carbon_em"


def test_trigger_kwargs_and_events_never_hold_the_key(em_connection):
    """A gate on a keyed source serializes its trigger with the conn_id only, and its event has no key."""
    from carbon_sensors.testing import FrozenClock
    from carbon_sensors.triggers.carbon import CarbonWindowTrigger

    trigger = CarbonWindowTrigger(
        zones=["DE"], deadline=NOW + timedelta(hours=8), expected_duration_s=3600, submitted_at=NOW,
        source={"kind": "electricitymaps", "conn_id": "carbon_em", "base_url": "http://127.0.0.1:9", "max_retries": 0},
        on_source_error="embedded",
    )
    _, kwargs = trigger.serialize()
    assert SENTINEL not in json.dumps(kwargs)
    trigger.clock = FrozenClock(NOW)

    async def first():
        async for event in trigger.run():
            return event.payload

    event = asyncio.run(first())  # nothing listens on port 9: the embedded profile serves
    assert event["fallback"] == "embedded-profile" and SENTINEL not in json.dumps(event)
