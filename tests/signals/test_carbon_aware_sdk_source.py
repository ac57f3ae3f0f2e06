"""The Carbon Aware SDK WebAPI source: a recorded-shape response, credentials, and faults from a real local server.

The fixture has the shape the SDK documents for ``GET /emissions/forecasts/current`` (its WebAPI docs
and ``EmissionsForecastDTO``/``EmissionsDataDTO``): a list with one forecast per location, WattTime
5-minute points. Values and times are made up; it is not a capture from a live deployment.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from faulty_server import faulty_server, send_json

from carbon_sensors import (
    ConfigurationError,
    InvalidForecastError,
    SourceAuthError,
    SourceDataError,
    SourceUnavailableError,
    UnknownZoneError,
)
from carbon_sensors.gate import CarbonGate
from carbon_sensors.signals import credentials, source_from_spec
from carbon_sensors.signals.cache import ForecastCache
from carbon_sensors.signals.carbon_aware_sdk import CarbonAwareSdkSource, parse_carbon_aware_sdk
from carbon_sensors.signals.http import HttpSettings

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
NOW = datetime(2024, 6, 3, 14, 3, 12, tzinfo=UTC)
FAST = HttpSettings(connect_timeout_s=1.0, read_timeout_s=0.5, max_retries=2, backoff_s=0.01, max_retry_after_s=1.0)
BASE = "http://casdk.internal:8080"
KEY_ENV = "CARBON_SENSORS_CARBON_AWARE_SDK_API_KEY"


def fixture():
    return json.loads((FIXTURES / "carbon_aware_sdk_forecasts_current_westus.json").read_text())


def recorded(seen: list[httpx.Request] | None = None, body=None):
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(200, json=fixture() if body is None else body)

    return httpx.MockTransport(handler)


def source(**kwargs):
    kwargs.setdefault("base_url", BASE)
    kwargs.setdefault("cache", ForecastCache())
    return CarbonAwareSdkSource(**kwargs)


def fetch(src, zone="westus", now=NOW):
    return asyncio.run(src.fetch(zone, now, now + timedelta(hours=1), now=now))


@pytest.fixture(autouse=True)
def _no_key(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)


def test_recorded_forecast_parses_and_only_location_is_sent():
    """One GET of /emissions/forecasts/current?location=westus; raw 5-minute points, marginal by default."""
    seen: list[httpx.Request] = []
    forecast = fetch(source(transport=recorded(seen)))
    assert [r.url.path for r in seen] == ["/emissions/forecasts/current"]
    assert dict(seen[0].url.params) == {"location": "westus"}
    assert "x-api-key" not in seen[0].headers
    assert forecast.zone == "westus" and forecast.source == "carbon_aware_sdk" and forecast.signal == "marginal"
    assert len(forecast.values) == 12 and forecast.values[0] == 512.9634 and min(forecast.values) == 448.4451043375
    assert forecast.start == datetime(2024, 6, 3, 14, 5, tzinfo=UTC)
    assert forecast.end - forecast.start == timedelta(minutes=60)  # the last point holds its 5-minute duration
    assert forecast.issued_at == datetime(2024, 6, 3, 14, 0, tzinfo=UTC)  # generatedAt


def test_signal_is_the_deployments_choice():
    """A deployment on Electricity Maps (or WattTime co2_aoer) says signal='average'."""
    forecast = fetch(source(signal="average", transport=recorded()))
    assert forecast.signal == "average"


def test_pinned_location_and_a_path_prefix():
    """location= pins the SDK location for any zone label; a base_url path prefix (WebApiRoutePrefix) is kept."""
    seen: list[httpx.Request] = []
    src = source(base_url="https://gateway.example/casdk/", location="westus", transport=recorded(seen))
    src.check_zone("California, my label")
    forecast = fetch(src, zone="California, my label")
    assert seen[0].url.path == "/casdk/emissions/forecasts/current" and dict(seen[0].url.params) == {"location": "westus"}
    assert forecast.zone == "California, my label"


def test_api_key_from_the_environment_goes_in_the_header_only(monkeypatch):
    """The key is read at fetch time and sent in the configured header; never in the spec or repr."""
    monkeypatch.setenv(KEY_ENV, "s3cret-key")
    seen: list[httpx.Request] = []
    src = source(api_key_header="Ocp-Apim-Subscription-Key", transport=recorded(seen))
    fetch(src)
    assert seen[0].headers["Ocp-Apim-Subscription-Key"] == "s3cret-key"
    assert "s3cret" not in json.dumps(src.to_spec()) + repr(src) + str(seen[0].url)


def test_api_key_from_a_connection(monkeypatch):
    """With conn_id the registered resolver (the Airflow connection reader in production) supplies the key."""
    asked = []

    async def resolver(conn_id, provider):
        asked.append((conn_id, provider))
        return credentials.Credentials(api_key="from-connection")

    monkeypatch.setattr(credentials, "_resolvers", [resolver])
    seen: list[httpx.Request] = []
    src = source(conn_id="casdk_gateway", transport=recorded(seen))
    fetch(src)
    assert asked == [("casdk_gateway", "carbon_aware_sdk")]
    assert seen[0].headers["X-API-Key"] == "from-connection"
    assert src.to_spec()["conn_id"] == "casdk_gateway" and "from-connection" not in json.dumps(src.to_spec())


@pytest.mark.parametrize("location", ["west/us", "westus?x=1", "../../admin", "a&location=b", "west us", "%2F", "", "x#y"])
def test_location_with_path_or_query_characters_is_refused_at_construction(location):
    """No user string can change the request path or add query parameters."""
    with pytest.raises(ConfigurationError, match="location name"):
        CarbonAwareSdkSource(base_url=BASE, location=location)


@pytest.mark.parametrize("zone", ["west/us", "westus?x=1", "a&b=c"])
def test_zone_names_are_checked_like_locations(zone):
    """Without a pinned location, the zone is the location name and is checked (at DAG parse, by the gate)."""
    with pytest.raises(UnknownZoneError, match="location name"):
        CarbonAwareSdkSource(base_url=BASE).check_zone(zone)
    with pytest.raises(UnknownZoneError):
        CarbonGate(zones=zone, deadline=NOW + timedelta(hours=6), expected_duration=timedelta(hours=1),
                   source={"kind": "carbon_aware_sdk", "base_url": BASE})


@pytest.mark.parametrize("bad", [
    {"base_url": "file:///etc/passwd"}, {"base_url": "ftp://casdk"}, {"base_url": "http://"},
    {"base_url": "http://user:pw@casdk"}, {"base_url": "http://casdk/?location=x"}, {"base_url": "http://casdk/#x"},
    {"base_url": ""}, {"base_url": None}, {"signal": "lifecycle"}, {"api_key_header": "X-Key\r\nHost: evil"},
    {"api_key_header": ""}, {"conn_id": ""}, {"refresh_interval": timedelta(seconds=5)},
])
def test_bad_arguments_are_refused(bad):
    """base_url must be a plain http(s) URL without credentials; signal, header and interval are checked."""
    with pytest.raises(ConfigurationError):
        CarbonAwareSdkSource(**{"base_url": BASE, **bad})


def test_base_url_is_required_in_a_spec():
    """The SDK is self-hosted: a spec without base_url says so."""
    with pytest.raises(ConfigurationError, match="base_url is required"):
        source_from_spec({"kind": "carbon_aware_sdk"})


def test_spec_round_trip_has_no_secret(monkeypatch):
    """The source travels in trigger kwargs as a plain spec and comes back equal (and hashes equal)."""
    monkeypatch.setenv(KEY_ENV, "never-in-spec")
    src = CarbonAwareSdkSource(base_url=BASE + "/", location="CAISO_NORTH", signal="average", conn_id="casdk",
                               api_key_header="X-Gateway-Key", refresh_interval=timedelta(minutes=5),
                               settings=HttpSettings(connect_timeout_s=2.0, read_timeout_s=7.0))
    spec = json.loads(json.dumps(src.to_spec()))
    back = source_from_spec(spec)
    assert back == src and hash(back) == hash(src) and isinstance(back, CarbonAwareSdkSource)
    assert spec["base_url"] == BASE and spec["refresh_interval_s"] == 300.0 and spec["read_timeout_s"] == 7.0
    assert "never-in-spec" not in json.dumps(spec)
    assert source_from_spec({"kind": "carbon_aware_sdk", "base_url": BASE}) == CarbonAwareSdkSource(base_url=BASE)


def test_one_request_per_location_for_many_concurrent_waiters():
    """Five hundred concurrent fetches of two locations make two upstream requests (single flight)."""
    cache = ForecastCache()
    calls: list[str] = []

    async def slow(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.params["location"])
        await asyncio.sleep(0.02)
        body = fixture()
        body[0]["location"] = request.url.params["location"]
        return httpx.Response(200, json=body)

    src = CarbonAwareSdkSource(base_url=BASE, transport=httpx.MockTransport(slow), cache=cache)

    async def many():
        zones = ["westus", "eastus"] * 250
        return await asyncio.gather(*(src.fetch(z, NOW, NOW, now=NOW) for z in zones))

    forecasts = asyncio.run(many())
    assert sorted(calls) == ["eastus", "westus"] and cache.fetches == 2
    assert {f.zone for f in forecasts} == {"westus", "eastus"}


def test_500_burst_is_retried_then_succeeds():
    """Two 500s, then the forecast: retried within the bounds, the request is the same each time."""
    def behaviour(n, handler):
        send_json(handler, {"title": "busy"} if n <= 2 else fixture(), 500 if n <= 2 else 200)

    with faulty_server(behaviour) as server:
        forecast = fetch(source(base_url=server["url"], settings=FAST))
    assert forecast.values[0] == 512.9634 and server["requests"] == 3
    assert server["paths"] == ["/emissions/forecasts/current?location=westus"] * 3


def test_a_500_that_persists_is_unavailable():
    """A 5xx past the retries becomes SourceUnavailableError (the gate then falls back)."""
    with faulty_server(lambda n, h: send_json(h, {"title": "down"}, 503)) as server:
        with pytest.raises(SourceUnavailableError, match="HTTP 503 after 3 attempt"):
            fetch(source(base_url=server["url"], settings=FAST))
        assert server["requests"] == 3


def test_401_names_the_key_to_fix():
    """A gateway refusing the key is an auth error at once, saying where the key comes from."""
    with faulty_server(lambda n, h: send_json(h, {"title": "Unauthorized"}, 401)) as server:
        with pytest.raises(SourceAuthError, match=KEY_ENV):
            fetch(source(base_url=server["url"], settings=FAST))
        assert server["requests"] == 1


def test_unknown_location_400_is_a_data_error():
    """The SDK answers 400 (ValidationProblemDetails) for a location it does not know."""
    problem = {"type": "https://tools.ietf.org/html/rfc7231#section-6.5.1", "title": "ArgumentException", "status": 400,
               "errors": {"location": ["Unknown location: 'nowhere'"]}}
    with faulty_server(lambda n, h: send_json(h, problem, 400)) as server:
        with pytest.raises(SourceDataError, match="HTTP 400"):
            fetch(source(base_url=server["url"], settings=FAST), zone="nowhere")


def _stale():
    body = fixture()
    for point in body[0]["forecastData"]:
        point["timestamp"] = point["timestamp"].replace("2024-06-03", "2024-06-01")
    return body


def _single_without_duration():
    body = fixture()
    body[0]["forecastData"] = [{"timestamp": "2024-06-03T14:05:00Z", "value": 300}]
    return body


@pytest.mark.parametrize(
    ("body", "error", "phrase"),
    [
        (b'[{"location": "westus", "forecastData": [{"timestamp": "2024-06-03T14:05', SourceDataError, "malformed or truncated"),
        ([{**fixture()[0], "forecastData": []}], SourceDataError, "empty forecast"),
        ([], SourceDataError, "no forecast for location 'westus'"),
        ({"title": "oops"}, SourceDataError, "not a list of forecasts"),
        ([{**fixture()[0], "forecastData": None}], SourceDataError, "no 'forecastData' list"),
        ([{"location": "westus", "forecastData": [{"value": 3}]}], SourceDataError, "lacks timestamp/value"),
        ([{"location": "westus", "forecastData": [{"timestamp": "2024-06-03T14:05:00Z", "duration": 5, "value": "NaN"}]}],
         SourceDataError, "non-numeric"),
        ([{"location": "westus", "forecastData": [{"timestamp": "2024-06-03T14:05:00Z", "duration": 5, "value": -4}]}],
         InvalidForecastError, "-4"),
        (_stale(), SourceDataError, "stale"),
        (_single_without_duration(), SourceDataError, "single point"),
    ],
)
def test_bad_payloads_raise_specific_errors(body, error, phrase):
    """Malformed, truncated, empty, implausible and stale responses each raise our error, saying why."""
    with faulty_server(lambda n, h: send_json(h, body)) as server:
        with pytest.raises(error, match=phrase):
            fetch(source(base_url=server["url"], settings=FAST))


def test_parse_picks_the_requested_location_from_several():
    """A multi-location response: the entry for the requested location is used, whatever its points' regions."""
    east = {**fixture()[0], "location": "eastus", "forecastData": [
        {"location": "PJM_ROANOKE", "timestamp": "2024-06-03T14:05:00+00:00", "duration": 5, "value": 111.0}]}
    forecast = parse_carbon_aware_sdk([fixture()[0], east], zone="e", location="EastUS", signal="marginal", now=NOW)
    assert forecast.values == (111.0,) and forecast.zone == "e"
