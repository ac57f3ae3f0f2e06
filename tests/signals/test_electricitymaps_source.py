"""The Electricity Maps source: recorded-shape responses through MockTransport, and faults from a real local server."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from faulty_server import faulty_server, send_json

from carbon_sensors import ConfigurationError, InvalidForecastError, SourceAuthError, SourceDataError, UnknownZoneError
from carbon_sensors.errors import SourceError
from carbon_sensors.signals import credentials as credentials_module
from carbon_sensors.signals import source_from_spec
from carbon_sensors.signals.cache import ForecastCache
from carbon_sensors.signals.credentials import Credentials
from carbon_sensors.signals.electricitymaps import ElectricityMapsSource, parse_electricitymaps
from carbon_sensors.signals.http import HttpSettings

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
NOW = datetime(2023, 3, 15, 1, 10, tzinfo=UTC)
FAST = HttpSettings(connect_timeout_s=1.0, read_timeout_s=0.3, max_retries=2, backoff_s=0.01, max_retry_after_s=1.0)
SENTINEL = "em-SENTINEL-key-7f3a9c"  # must never show up in an error, a repr or a spec
KEY = Credentials(api_key=SENTINEL)
FORECAST, LATEST, HISTORY = "/v3/carbon-intensity/forecast", "/v3/carbon-intensity/latest", "/v3/carbon-intensity/history"


def fixture(name):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def recorded(seen=None, overrides=None):
    """A MockTransport answering each endpoint with its recorded fixture (or an override), noting requests."""
    bodies = {FORECAST: fixture("electricitymaps_forecast_DE"), LATEST: fixture("electricitymaps_latest_DE"),
              HISTORY: fixture("electricitymaps_history_DE"), **(overrides or {})}

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        body = bodies.get(request.url.path)
        return httpx.Response(404, json={"error": "no such path"}) if body is None else httpx.Response(200, json=body)

    return httpx.MockTransport(handler)


def source(**kwargs):
    kwargs.setdefault("credentials", KEY)
    kwargs.setdefault("cache", ForecastCache())
    kwargs.setdefault("settings", FAST)
    return ElectricityMapsSource(**kwargs)


def fetch(src, zone="DE", now=NOW):
    return asyncio.run(src.fetch(zone, now, now + timedelta(hours=3), now=now))


def test_forecast_and_latest_parse_with_the_current_error():
    """Forecast and latest are requested as documented; the measured current value gives recent_error."""
    seen = []
    forecast = fetch(source(transport=recorded(seen)))
    assert [r.url.path for r in seen] == [FORECAST, LATEST]
    assert dict(seen[0].url.params) == {"zone": "DE", "horizonHours": "24", "emissionFactorType": "lifecycle"}
    assert dict(seen[1].url.params) == {"zone": "DE", "emissionFactorType": "lifecycle"}
    for request in seen:
        assert request.headers["auth-token"] == SENTINEL and SENTINEL not in str(request.url)
        assert request.url.host == "api.electricitymap.org"
    assert forecast.values[:3] == (448.0, 438.0, 430.0) and len(forecast.values) == 25
    assert forecast.start == datetime(2023, 3, 15, 1, tzinfo=UTC) and forecast.end - forecast.start == timedelta(hours=25)
    assert forecast.signal == "average" and forecast.source == "electricitymaps" and forecast.zone == "DE"
    assert forecast.issued_at == datetime(2023, 3, 15, 0, 52, 13, 251000, tzinfo=UTC)
    assert forecast.recent_error == pytest.approx(448 / 431 - 1) and forecast.recent_error_lead_h == 1.0
    assert forecast.error_24h == 0.10 and forecast.measured_until is None


def test_location_emission_factor_granularity_and_horizon_parameters():
    """lat/lon replace the zone; direct factors, 15-minute granularity and the horizon are passed on."""
    seen = []
    direct = {FORECAST: {**fixture("electricitymaps_forecast_DE"), "zone": "DE"},
              LATEST: {**fixture("electricitymaps_latest_DE"), "emissionFactorType": "direct"}}
    src = source(lat=52.52, lon=13.405, emission_factor_type="direct", temporal_granularity="15_minutes",
                 horizon_hours=48, transport=recorded(seen, direct))
    forecast = fetch(src, zone="berlin-dc")
    assert dict(seen[0].url.params) == {"lat": "52.52", "lon": "13.405", "horizonHours": "48",
                                        "emissionFactorType": "direct", "temporalGranularity": "15_minutes"}
    assert dict(seen[1].url.params) == {"lat": "52.52", "lon": "13.405", "emissionFactorType": "direct",
                                        "temporalGranularity": "15_minutes"}
    assert forecast.zone == "berlin-dc" and src.refresh_interval == timedelta(minutes=15)


def test_zone_key_setting_versus_the_zone_label():
    """zone_key= is what is asked for; the zone name stays the user's label on the forecast."""
    seen = []
    body = json.loads(json.dumps(fixture("electricitymaps_forecast_DE")).replace('"DE"', '"US-CAL-CISO"'))
    latest = {**fixture("electricitymaps_latest_DE"), "zone": "US-CAL-CISO"}
    forecast = fetch(source(zone_key="US-CAL-CISO", transport=recorded(seen, {FORECAST: body, LATEST: latest})),
                     zone="california")
    assert seen[0].url.params["zone"] == "US-CAL-CISO" and forecast.zone == "california"


def test_zone_name_must_be_a_zone_key_without_settings():
    """Without zone_key or lat/lon the zone name is sent, so it must look like an Electricity Maps key."""
    source().check_zone("DK-DK2")
    for bad in ("my-dc", "DE&zone=FR", "DE/../zones", "", "de"):
        with pytest.raises(UnknownZoneError):
            source().check_zone(bad)
    source(zone_key="DE").check_zone("any label at all")


@pytest.mark.parametrize("bad", [
    {"zone_key": "DE/../zones"}, {"zone_key": "DE?x=1"}, {"zone_key": "de"}, {"zone_key": "DE", "lat": 1.0, "lon": 2.0},
    {"lat": 91.0, "lon": 0.0}, {"lat": "52.5", "lon": "13.4"}, {"lat": True, "lon": 1.0}, {"lat": 52.5},
    {"lat": float("nan"), "lon": 1.0}, {"horizon_hours": 0}, {"horizon_hours": 73}, {"horizon_hours": "24"},
    {"temporal_granularity": "daily"}, {"emission_factor_type": "operational"}, {"base_url": "file:///etc"},
    {"base_url": "https://api.electricitymap.org/?zone=FR"}, {"conn_id": ""},
])
def test_user_strings_cannot_change_the_request_url(bad):
    """Zone keys, coordinates and options are validated, so nothing can be injected into the request."""
    with pytest.raises(ConfigurationError):
        ElectricityMapsSource(**bad)


def test_forecast_starting_after_now_is_filled_by_the_latest_value():
    """A forecast that starts with the next hour gets the current hour from /latest (a measurement)."""
    body = copy.deepcopy(fixture("electricitymaps_forecast_DE"))
    body["forecast"] = body["forecast"][1:]
    forecast = fetch(source(transport=recorded(overrides={FORECAST: body})))
    assert forecast.start == datetime(2023, 3, 15, 1, tzinfo=UTC) and forecast.values[:2] == (431.0, 438.0)
    assert forecast.measured_until == datetime(2023, 3, 15, 2, tzinfo=UTC) and forecast.recent_error is None


def test_forecast_starting_before_now_is_cut_to_the_current_slot():
    """Points that ended before now are dropped; the forecast starts with the slot that holds now."""
    body = copy.deepcopy(fixture("electricitymaps_forecast_DE"))
    body["forecast"] = [{"carbonIntensity": 470, "datetime": "2023-03-14T23:00:00.000Z"},
                        {"carbonIntensity": 455, "datetime": "2023-03-15T00:00:00.000Z"}] + body["forecast"]
    forecast = fetch(source(transport=recorded(overrides={FORECAST: body})))
    assert forecast.start == datetime(2023, 3, 15, 1, tzinfo=UTC) and forecast.values[0] == 448.0


def test_an_estimated_current_value_gives_no_current_error():
    """An estimated (not measured) latest value is no ground truth: recent_error stays None."""
    latest = {**fixture("electricitymaps_latest_DE"), "isEstimated": True, "estimationMethod": "TIME_SLICER_AVERAGE"}
    assert fetch(source(transport=recorded(overrides={LATEST: latest}))).recent_error is None


def test_history_is_a_measured_forecast():
    """/history becomes a measured series: no forecast error, measured until its end."""
    seen = []
    src = source(zone_key="DE", transport=recorded(seen))
    history = asyncio.run(src.fetch_history("home", now=NOW))
    assert [r.url.path for r in seen] == [HISTORY]
    assert dict(seen[0].url.params) == {"zone": "DE", "emissionFactorType": "lifecycle"}
    assert len(history.values) == 24 and history.error_24h == 0 and history.zone == "home"
    assert history.measured_until == history.end == datetime(2023, 3, 15, 1, tzinfo=UTC)


def test_one_request_per_zone_and_slot_for_many_concurrent_waiters():
    """Many concurrent fetches of one zone make one forecast and one latest request (single flight)."""
    seen = []
    src = source(transport=recorded(seen))

    async def many():
        return await asyncio.gather(*(src.fetch("DE", NOW, NOW, now=NOW) for _ in range(200)))

    assert len({id(f) for f in asyncio.run(many())}) == 1 and len(seen) == 2


def test_spec_round_trip_has_no_secret():
    """The spec holds the conn_id, never the key; it comes back equal through source_from_spec."""
    src = source(zone_key="US-CAL-CISO", conn_id="carbon_em", emission_factor_type="direct", horizon_hours=48)
    spec = json.loads(json.dumps(src.to_spec()))
    assert spec["kind"] == "electricitymaps" and spec["conn_id"] == "carbon_em"
    assert SENTINEL not in json.dumps(spec) and SENTINEL not in repr(src)
    again = source_from_spec(spec)
    assert again == src and isinstance(again, ElectricityMapsSource) and hash(again) == hash(src)
    assert source_from_spec({"kind": "electricitymaps"}) == ElectricityMapsSource()


def test_key_from_the_environment(monkeypatch):
    """Without conn_id the key comes from CARBON_SENSORS_ELECTRICITYMAPS_API_KEY, read at fetch time."""
    monkeypatch.setenv("CARBON_SENSORS_ELECTRICITYMAPS_API_KEY", SENTINEL)
    seen = []
    fetch(source(credentials=None, transport=recorded(seen)))
    assert all(r.headers["auth-token"] == SENTINEL for r in seen)


def test_no_key_anywhere_is_an_auth_error_naming_the_variable(monkeypatch):
    """A missing key fails before any request, naming the variable (or connection) to set."""
    monkeypatch.delenv("CARBON_SENSORS_ELECTRICITYMAPS_API_KEY", raising=False)
    seen = []
    with pytest.raises(SourceAuthError, match="CARBON_SENSORS_ELECTRICITYMAPS_API_KEY"):
        fetch(source(credentials=None, transport=recorded(seen)))
    assert seen == []


def test_key_from_an_airflow_connection(monkeypatch):
    """With conn_id the key comes from the registered connection resolver; a refusal names that connection."""
    async def resolver(conn_id, provider):
        return Credentials(api_key=SENTINEL) if (conn_id, provider) == ("carbon_em", "electricitymaps") else None

    monkeypatch.setattr(credentials_module, "_resolvers", [resolver])
    seen = []
    fetch(source(credentials=None, conn_id="carbon_em", transport=recorded(seen)))
    assert seen[0].headers["auth-token"] == SENTINEL
    refused = httpx.MockTransport(lambda r: httpx.Response(401, json={"error": "Token is invalid"}))
    with pytest.raises(SourceAuthError, match="'carbon_em'") as info:
        fetch(source(credentials=None, conn_id="carbon_em", transport=refused))
    assert SENTINEL not in str(info.value)


# -- faults from a real local server ---------------------------------------------------------------


def served(url, **kwargs):
    return source(base_url=url, **kwargs)


@pytest.fixture(scope="module")
def switchable():
    """One real local server for many fault cases: it behaves as ``state["behaviour"]`` says."""
    state = {"behaviour": lambda n, h: send_json(h, {}, 500)}
    with faulty_server(lambda n, h: state["behaviour"](n, h)) as server:
        state["url"] = server["url"]
        yield state


def test_401_is_an_auth_error_naming_what_to_fix_without_the_key(monkeypatch):
    """A refused key raises SourceAuthError at once, naming the variable to fix and never the key."""
    monkeypatch.setenv("CARBON_SENSORS_ELECTRICITYMAPS_API_KEY", SENTINEL)
    with faulty_server(lambda n, h: send_json(h, {"error": "Token is invalid"}, 401)) as server:
        with pytest.raises(SourceAuthError, match=r"HTTP 401.*CARBON_SENSORS_ELECTRICITYMAPS_API_KEY") as info:
            fetch(served(server["url"], credentials=None))
        assert server["requests"] == 1
    assert SENTINEL not in str(info.value) and SENTINEL not in repr(info.value)


def test_5xx_burst_is_retried_then_succeeds():
    """Two 500s on the forecast, then a good answer: the source retries and returns the forecast."""
    def behaviour(n, handler):
        if handler.path.startswith(LATEST):
            send_json(handler, fixture("electricitymaps_latest_DE"))
        else:
            send_json(handler, {"error": "busy"} if n <= 2 else fixture("electricitymaps_forecast_DE"), 500 if n <= 2 else 200)

    with faulty_server(behaviour) as server:
        forecast = fetch(served(server["url"]))
    assert forecast.values[0] == 448.0 and server["requests"] == 4 and forecast.recent_error is not None


def test_a_failing_latest_endpoint_does_not_fail_the_forecast():
    """/latest is a refinement: when it keeps failing the forecast still serves, without a current error."""
    def behaviour(n, handler):
        if handler.path.startswith(LATEST):
            send_json(handler, {"error": "down"}, 503)
        else:
            send_json(handler, fixture("electricitymaps_forecast_DE"))

    with faulty_server(behaviour) as server:
        forecast = fetch(served(server["url"]))
    assert forecast.values[0] == 448.0 and forecast.recent_error is None


def point(ci=412, at="2023-03-15T01:00:00.000Z"):
    return {"carbonIntensity": ci, "datetime": at}


@pytest.mark.parametrize(
    ("body", "error", "phrase"),
    [
        (b'{"zone": "DE", "forecast": [{"carbonIntensity": 41', SourceDataError, "malformed or truncated JSON"),
        ({"zone": "DE"}, SourceDataError, "no 'forecast' list"),
        ({"zone": "DE", "forecast": []}, SourceDataError, "empty forecast"),
        ({"zone": "DE", "forecast": [{"datetime": "2023-03-15T01:00:00Z"}]}, SourceDataError, "lacks datetime/carbonIntensity"),
        ({"zone": "DE", "forecast": [{"carbonIntensity": 412}]}, SourceDataError, "lacks datetime/carbonIntensity"),
        ({"zone": "DE", "forecast": [point(None)]}, SourceDataError, "non-numeric"),
        ({"zone": "DE", "forecast": [point(at="yesterday")]}, SourceDataError, "bad timestamp"),
        ({"zone": "DE", "forecast": [point(at="2023-03-01T01:00:00.000Z")]}, SourceDataError, "stale"),
        ({"zone": "DE", "forecast": [point(at="2023-03-15T05:00:00.000Z")]}, SourceDataError, "misdated"),
        ({"zone": "DE", "forecast": [point(), point(at="2023-03-15T00:00:00.000Z")]}, SourceDataError, "out of time order"),
        ({"zone": "FR", "forecast": [point()]}, SourceDataError, "zone 'FR'"),
        ({"zone": "DE", "emissionFactorType": "direct", "forecast": [point()]}, SourceDataError, "'direct' data"),
        ({"zone": "DE", "forecast": [point(-5), point(at="2023-03-15T02:00:00.000Z")]}, InvalidForecastError, "-5"),
        ({"zone": "DE", "forecast": [point(4100), point(at="2023-03-15T02:00:00.000Z")]}, InvalidForecastError, "unit"),
    ],
)
def test_bad_payloads_raise_specific_errors(switchable, body, error, phrase):
    """Malformed, truncated, empty, incomplete, implausible, stale and mismatched responses each say why."""
    switchable["behaviour"] = lambda n, h: send_json(h, body)
    with pytest.raises(error, match=phrase):
        fetch(served(switchable["url"]))


def test_the_key_never_appears_in_errors_or_reprs(switchable):
    """Whatever fails, including a server that echoes the key back, no message or repr holds the key."""
    echo = {"error": f"token {SENTINEL} has no access to zone DE"}
    faults = [
        lambda n, h: send_json(h, echo, 400),
        lambda n, h: send_json(h, echo, 403),
        lambda n, h: send_json(h, echo, 500),
        lambda n, h: send_json(h, {"zone": "DE", "forecast": [{"carbonIntensity": SENTINEL, "datetime": "x"}]}),
    ]
    for behaviour in faults:
        switchable["behaviour"] = behaviour
        src = served(switchable["url"])
        with pytest.raises(SourceError) as info:
            fetch(src)
        for text in (str(info.value), repr(info.value), repr(src), json.dumps(src.to_spec())):
            assert SENTINEL not in text, text
    assert "***" in str(info.value) or "non-numeric" in str(info.value)


def test_parse_is_pure_and_needs_no_latest():
    """parse_electricitymaps works on the recorded payload alone, without /latest."""
    forecast = parse_electricitymaps(fixture("electricitymaps_forecast_DE"), None, zone="DE", now=NOW, zone_key="DE")
    assert forecast.values[0] == 448.0 and forecast.recent_error is None
