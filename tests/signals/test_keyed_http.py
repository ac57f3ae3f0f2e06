"""A keyed source built on KeyedHttpSource is its vendor's request and parsing; the rest is shared."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from carbon_sensors import ConfigurationError, SourceAuthError, SourceDataError
from carbon_sensors.forecast import Forecast
from carbon_sensors.signals.cache import ForecastCache
from carbon_sensors.signals.credentials import Credentials
from carbon_sensors.signals.http import HttpSettings
from carbon_sensors.signals.keyed_http import KeyedHttpSource, check_horizon_hours, coordinate_pair

NOW = datetime(2026, 6, 15, 10, 20, tzinfo=UTC)
SECRET = "toy-SENTINEL-key-41c2"
FAST = HttpSettings(connect_timeout_s=1.0, read_timeout_s=0.3, max_retries=0, backoff_s=0.0)


class ToySource(KeyedHttpSource):
    """The least a keyed source says: where its key is, how a request is signed, and how a payload parses."""

    kind = "toy"
    signal = "average"
    provider = "toy"
    what = "the Toy API"
    default_base_url = "https://toy.example"
    hint_given = "ToySource(credentials=...)"
    hint_conn = "the connection {conn_id!r}"
    hint_env = "{prefix}API_KEY"

    def __init__(self, *, conn_id=None, credentials=None, base_url="https://toy.example", settings=FAST,
                 transport=None, cache=None) -> None:
        super().__init__(conn_id=conn_id, credentials=credentials, base_url=base_url, settings=settings,
                         transport=transport, cache=cache or ForecastCache(), max_stale=timedelta(hours=1))
        self.refresh_interval = timedelta(hours=1)

    def check_zone(self, zone: str) -> None:
        pass

    def _headers(self, creds: Credentials) -> dict[str, str]:
        return {"x-key": creds.api_key or ""}

    def _cache_where(self, zone: str) -> Any:
        return zone

    def _cache_options(self) -> tuple[Any, ...]:
        return ()

    async def _download(self, zone: str, now: datetime, creds: Credentials, base_url: str) -> Forecast:
        payload = await self._get(base_url, creds, "/forecast", {"zone": zone})
        return self._parsed(base_url, creds, _parse, payload, zone, now)

    def to_spec(self) -> dict[str, Any]:
        return self._spec()


def _parse(payload: Any, zone: str, now: datetime) -> Forecast:
    if not isinstance(payload, dict) or "value" not in payload:
        raise SourceDataError(f"the Toy API returned no value: {str(payload)[:80]}")
    start = now.replace(minute=0)
    return Forecast.from_points([(start, float(payload["value"]))], zone=zone, source="toy", signal="average",
                                issued_at=now, resolution=timedelta(hours=1))


def _answering(body: Any, seen: list | None = None, status: int = 200) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, json=body)

    return httpx.MockTransport(handler)


def _fetch(source: ToySource, zone: str = "Z1") -> Forecast:
    return asyncio.run(source.fetch(zone, NOW, NOW + timedelta(hours=1), now=NOW))


def test_a_request_is_signed_and_cached_per_slot():
    """The key goes in the source's header; a second fetch in the same slot is served from the cache."""
    seen: list = []
    source = ToySource(credentials=Credentials(api_key=SECRET), transport=_answering({"value": 120}, seen))
    assert _fetch(source).values == (120.0,) and _fetch(source).values == (120.0,)
    assert len(seen) == 1 and seen[0].headers["x-key"] == SECRET and seen[0].url.params["zone"] == "Z1"


def test_a_missing_key_names_where_to_put_it(monkeypatch):
    """Without a key the error says which environment variable (or connection) to set."""
    monkeypatch.delenv("CARBON_SENSORS_TOY_API_KEY", raising=False)
    expected = "the Toy API needs an API key and none was found; check CARBON_SENSORS_TOY_API_KEY"
    with pytest.raises(SourceAuthError, match=expected):
        _fetch(ToySource(transport=_answering({"value": 1})))


def test_an_echoed_secret_never_reaches_the_message():
    """A payload that quotes the key back is scrubbed from the parse error, and a refusal names the hint."""
    source = ToySource(credentials=Credentials(api_key=SECRET), transport=_answering({"echo": SECRET}))
    with pytest.raises(SourceDataError) as caught:
        _fetch(source)
    assert SECRET not in str(caught.value) and "***" in str(caught.value)
    refused = ToySource(credentials=Credentials(api_key=SECRET), transport=_answering({}, status=401))
    with pytest.raises(SourceAuthError, match=r"check ToySource\(credentials=...\)"):
        _fetch(refused)


def test_equal_specs_are_equal_sources():
    """Two sources with the same spec are equal and hash alike; another connection makes another source."""
    a, b = ToySource(conn_id="toy_prod"), ToySource(conn_id="toy_prod")
    assert a == b and hash(a) == hash(b) and a != ToySource(conn_id="toy_test")
    assert a.to_spec()["conn_id"] == "toy_prod" and "api_key" not in a.to_spec()


def test_the_shared_checks_refuse_bad_settings():
    """conn_id, credentials, base URL, horizon and coordinates are checked the same way for every vendor."""
    with pytest.raises(ConfigurationError, match="conn_id must be"):
        ToySource(conn_id=" ")
    with pytest.raises(ConfigurationError, match="credentials must be"):
        ToySource(credentials={"api_key": SECRET})
    with pytest.raises(ConfigurationError, match="base_url must be"):
        ToySource(base_url="https://toy.example/?key=1")
    with pytest.raises(ConfigurationError, match="horizon_hours must be"):
        check_horizon_hours(73)
    with pytest.raises(ConfigurationError, match="give both lat and lon, or neither"):
        coordinate_pair(("lat", "lon"), 52.0, None)
    assert coordinate_pair(("lat", "lon"), 52, 13) == (52.0, 13.0)
