"""The WattTime source: login and token life, recorded-shape responses, unit conversion, and faults from a real server."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from faulty_server import faulty_server, send_json

from carbon_sensors import ConfigurationError, InvalidForecastError, SourceAuthError, SourceDataError, UnknownZoneError
from carbon_sensors.errors import SignalMismatchError, SourceError
from carbon_sensors.forecast import common_signal
from carbon_sensors.signals import source_from_spec
from carbon_sensors.signals import watttime as watttime_module
from carbon_sensors.signals.cache import ForecastCache
from carbon_sensors.signals.credentials import Credentials
from carbon_sensors.signals.electricitymaps import ElectricityMapsSource
from carbon_sensors.signals.http import HttpSettings
from carbon_sensors.signals.watttime import LBS_PER_MWH_TO_G_PER_KWH, WattTimeSource, clear_watttime_tokens, parse_watttime

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
NOW = datetime(2023, 3, 15, 1, 12, tzinfo=UTC)
FAST = HttpSettings(connect_timeout_s=1.0, read_timeout_s=0.3, max_retries=2, backoff_s=0.01, max_retry_after_s=1.0)
USER, SENTINEL = "carbon-sensors-ci", "wt-SENTINEL-pass-41b7e2"  # the password must never show up anywhere
CREDS = Credentials(username=USER, password=SENTINEL)
BASIC = "Basic " + base64.b64encode(f"{USER}:{SENTINEL}".encode()).decode()
LOGIN, REGION, FORECAST, HISTORICAL = "/login", "/v3/region-from-loc", "/v3/forecast", "/v3/historical"


def fixture(name):
    return json.loads((FIXTURES / f"{name}.json").read_text())


TOKEN = fixture("watttime_login")["token"]


@pytest.fixture(autouse=True)
def _fresh_tokens():
    clear_watttime_tokens()
    yield
    clear_watttime_tokens()


def recorded(seen=None, overrides=None):
    """A MockTransport acting as WattTime: /login wants Basic auth, data endpoints want the bearer token."""
    bodies = {LOGIN: fixture("watttime_login"), REGION: fixture("watttime_region_from_loc"),
              FORECAST: fixture("watttime_forecast_CAISO_NORTH_co2_moer"),
              HISTORICAL: fixture("watttime_historical_CAISO_NORTH_co2_moer"), **(overrides or {})}

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        path = request.url.path
        wanted = BASIC if path == LOGIN else f"Bearer {TOKEN}"
        if request.headers.get("Authorization") != wanted:
            return httpx.Response(401, json={"error": "unauthorized"})
        return httpx.Response(200, json=bodies[path]) if path in bodies else httpx.Response(404, json={})

    return httpx.MockTransport(handler)


def source(**kwargs):
    kwargs.setdefault("credentials", CREDS)
    kwargs.setdefault("cache", ForecastCache())
    kwargs.setdefault("settings", FAST)
    return WattTimeSource(**kwargs)


def fetch(src, zone="CAISO_NORTH", now=NOW):
    return asyncio.run(src.fetch(zone, now, now + timedelta(hours=3), now=now))


def test_login_then_forecast_converted_to_grams_per_kwh():
    """Basic-auth login, then the forecast with the bearer token; lbs/MWh become g/kWh; MOER is marginal."""
    seen = []
    forecast = fetch(source(region="CAISO_NORTH", transport=recorded(seen)), zone="sacramento")
    assert [r.url.path for r in seen] == [LOGIN, FORECAST]
    assert seen[0].headers["Authorization"] == BASIC and dict(seen[0].url.params) == {}
    assert seen[1].headers["Authorization"] == f"Bearer {TOKEN}"
    assert dict(seen[1].url.params) == {"region": "CAISO_NORTH", "signal_type": "co2_moer", "horizon_hours": "24"}
    assert all(SENTINEL not in str(r.url) and r.url.host == "api.watttime.org" for r in seen)
    assert forecast.values[0] == pytest.approx(854.0 * 0.45359237) == pytest.approx(387.368)
    assert forecast.values[1] == pytest.approx(884.0 * LBS_PER_MWH_TO_G_PER_KWH)
    assert len(forecast.values) == 288 and forecast.start == datetime(2023, 3, 15, 1, 10, tzinfo=UTC)
    assert forecast.end == forecast.start + timedelta(hours=24)
    assert forecast.signal == "marginal" and forecast.source == "watttime" and forecast.zone == "sacramento"
    assert forecast.issued_at == datetime(2023, 3, 15, 1, 10, tzinfo=UTC)
    assert forecast.error_24h == 0.20 and forecast.recent_error is None


def test_unit_conversion_is_exact():
    """1 lb/MWh = 0.45359237 g/kWh exactly; other units are refused rather than guessed."""
    body = {"data": [{"point_time": "2023-03-15T01:10:00+00:00", "value": 1000.0},
                     {"point_time": "2023-03-15T01:15:00+00:00", "value": 2204.62262}],
            "meta": {"units": "lbs_co2_per_mwh", "signal_type": "co2_moer", "region": "CAISO_NORTH"}}
    forecast = parse_watttime(body, zone="x", now=NOW, region="CAISO_NORTH")
    assert forecast.values == pytest.approx((453.59237, 1000.0))
    with pytest.raises(SourceDataError, match="only lbs_co2_per_mwh"):
        parse_watttime({**body, "meta": {"units": "kg_co2_per_mwh"}}, zone="x", now=NOW)
    no_units = {"data": body["data"]}  # the documented unit is assumed
    assert parse_watttime(no_units, zone="x", now=NOW).values[0] == pytest.approx(453.59237)


def test_aoer_is_average_and_moer_is_marginal_and_the_planner_refuses_to_mix_them():
    """co2_aoer asks for the average signal; mixing it (or Electricity Maps) with MOER is refused."""
    seen = []
    aoer = fetch(source(signal_type="co2_aoer", transport=recorded(
        seen, {FORECAST: fixture("watttime_forecast_CAISO_NORTH_co2_aoer")})))
    assert seen[-1].url.params["signal_type"] == "co2_aoer"
    assert aoer.signal == "average" and aoer.values[0] == pytest.approx(504.0 * 0.45359237) and aoer.error_24h == 0.10
    moer = fetch(source(transport=recorded()))
    assert moer.signal == "marginal" and WattTimeSource().signal == "marginal"
    with pytest.raises(SignalMismatchError, match="average with marginal"):
        common_signal([aoer, moer])
    assert ElectricityMapsSource.signal == "average"


def test_token_is_cached_per_process_and_renewed_on_expiry():
    """A second fetch reuses the token; once it has expired, the next fetch logs in again."""
    seen = []
    fetch(source(transport=recorded(seen)))
    fetch(source(transport=recorded(seen)), now=NOW + timedelta(minutes=5))
    assert [r.url.path for r in seen] == [LOGIN, FORECAST, FORECAST]
    for key, (token, _) in list(watttime_module._tokens.items()):
        watttime_module._tokens[key] = (token, 0.0)  # expired
    fetch(source(transport=recorded(seen)), now=NOW + timedelta(minutes=10))
    assert [r.url.path for r in seen] == [LOGIN, FORECAST, FORECAST, LOGIN, FORECAST]


def test_region_from_location_is_looked_up_once():
    """latitude/longitude resolve to a region through /v3/region-from-loc, once per process."""
    seen = []
    src = source(latitude=38.58, longitude=-121.49, transport=recorded(seen))
    fetch(src, zone="sacramento")
    fetch(src, zone="sacramento", now=NOW + timedelta(minutes=5))
    assert [r.url.path for r in seen] == [LOGIN, REGION, FORECAST, FORECAST]
    assert dict(seen[1].url.params) == {"latitude": "38.58", "longitude": "-121.49", "signal_type": "co2_moer"}
    assert seen[2].url.params["region"] == "CAISO_NORTH"


def test_zone_name_is_the_region_without_settings():
    """Without region or coordinates, the zone name is the region, so it must look like one."""
    source().check_zone("CAISO_NORTH")
    for bad in ("my dc", "CAISO_NORTH&region=PJM_NJ", "../login", "caiso_north", ""):
        with pytest.raises(UnknownZoneError):
            source().check_zone(bad)
    source(region="PJM_NJ").check_zone("new jersey")


@pytest.mark.parametrize("bad", [
    {"region": "CAISO_NORTH&signal_type=co2_aoer"}, {"region": "../login"}, {"region": "caiso north"},
    {"region": "CAISO_NORTH", "latitude": 1.0, "longitude": 2.0}, {"latitude": 91.0, "longitude": 0.0},
    {"latitude": 38.5}, {"latitude": "38.5", "longitude": "-121.5"}, {"signal_type": "health_damage"},
    {"signal_type": "co2"}, {"horizon_hours": 0}, {"horizon_hours": 73}, {"base_url": "ftp://api.watttime.org"},
    {"base_url": "https://api.watttime.org/#x"}, {"conn_id": " "},
])
def test_user_strings_cannot_change_the_request_url(bad):
    """Regions, coordinates and options are validated strictly."""
    with pytest.raises(ConfigurationError):
        WattTimeSource(**bad)


def test_forecast_starting_after_now_gets_the_current_value_from_historical():
    """A forecast that begins after now is completed with the latest real-time value from /v3/historical."""
    body = copy.deepcopy(fixture("watttime_forecast_CAISO_NORTH_co2_moer"))
    body["data"] = body["data"][1:]  # starts 01:15, now is 01:12
    seen = []
    forecast = fetch(source(transport=recorded(seen, {FORECAST: body})))
    assert [r.url.path for r in seen] == [LOGIN, FORECAST, HISTORICAL]
    assert dict(seen[2].url.params) == {"region": "CAISO_NORTH", "signal_type": "co2_moer",
                                        "start": "2023-03-15T00:12:00+00:00", "end": "2023-03-15T01:12:00+00:00"}
    assert forecast.start == datetime(2023, 3, 15, 1, 10, tzinfo=UTC)
    assert forecast.values[0] == pytest.approx(851.0 * LBS_PER_MWH_TO_G_PER_KWH)
    assert forecast.measured_until == datetime(2023, 3, 15, 1, 15, tzinfo=UTC)


def test_historical_is_a_measured_forecast():
    """/v3/historical becomes a measured series in g/kWh with no forecast error."""
    seen = []
    src = source(region="CAISO_NORTH", transport=recorded(seen))
    history = asyncio.run(src.fetch_historical("sacramento", NOW - timedelta(hours=1), NOW, now=NOW))
    assert seen[-1].url.path == HISTORICAL and seen[-1].url.params["start"] == "2023-03-15T00:12:00+00:00"
    assert len(history.values) == 13 and history.error_24h == 0 and history.signal == "marginal"
    assert history.values[-1] == pytest.approx(851.0 * LBS_PER_MWH_TO_G_PER_KWH)


def test_spec_round_trip_has_no_secret():
    """The spec holds conn_id, never the password or token; it comes back equal through source_from_spec."""
    src = source(latitude=38.58, longitude=-121.49, signal_type="co2_aoer", conn_id="carbon_wt", horizon_hours=72)
    fetch(source(transport=recorded()))  # a token is cached now
    spec = json.loads(json.dumps(src.to_spec()))
    assert spec["kind"] == "watttime" and spec["conn_id"] == "carbon_wt"
    for text in (json.dumps(spec), repr(src)):
        assert SENTINEL not in text and TOKEN not in text
    again = source_from_spec(spec)
    assert again == src and isinstance(again, WattTimeSource) and again.signal == "average"
    assert source_from_spec({"kind": "watttime", "region": "PJM_NJ"}) == WattTimeSource(region="PJM_NJ")


def test_credentials_from_the_environment(monkeypatch):
    """Without conn_id, username and password come from CARBON_SENSORS_WATTTIME_USERNAME/_PASSWORD."""
    monkeypatch.setenv("CARBON_SENSORS_WATTTIME_USERNAME", USER)
    monkeypatch.setenv("CARBON_SENSORS_WATTTIME_PASSWORD", SENTINEL)
    seen = []
    fetch(source(credentials=None, transport=recorded(seen)))
    assert seen[0].headers["Authorization"] == BASIC


def test_missing_credentials_name_both_variables(monkeypatch):
    """Without a password nothing is requested; the error names the variables to set."""
    monkeypatch.setenv("CARBON_SENSORS_WATTTIME_USERNAME", USER)
    monkeypatch.delenv("CARBON_SENSORS_WATTTIME_PASSWORD", raising=False)
    seen = []
    with pytest.raises(SourceAuthError, match="CARBON_SENSORS_WATTTIME_USERNAME and CARBON_SENSORS_WATTTIME_PASSWORD"):
        fetch(source(credentials=None, transport=recorded(seen)))
    assert seen == []


# -- faults from a real local server ---------------------------------------------------------------


def server_with(forecast_behaviour, tokens=None):
    """A WattTime double: /login issues token-1, token-2, ...; the forecast path is up to ``forecast_behaviour``."""
    issued = tokens if tokens is not None else []
    counts = {"forecast": 0}

    def behaviour(n, handler):
        if handler.path.startswith(LOGIN):
            if handler.headers.get("Authorization") != BASIC:
                send_json(handler, {"error": "bad credentials"}, 401)
                return
            issued.append(f"token-{len(issued) + 1}")
            send_json(handler, {"token": issued[-1]})
        else:
            counts["forecast"] += 1
            forecast_behaviour(counts["forecast"], handler, issued)

    return faulty_server(behaviour)


@pytest.fixture(scope="module")
def switchable():
    """One real WattTime double for many fault cases: the data endpoints behave as ``state["behaviour"]`` says."""
    state = {"behaviour": lambda n, h, i: send_json(h, {}, 500), "issued": []}
    with server_with(lambda n, h, i: state["behaviour"](n, h, i), state["issued"]) as server:
        state["url"] = server["url"]
        yield state


def bearer(handler):
    return handler.headers.get("Authorization", "").removeprefix("Bearer ")


def test_an_expired_token_is_refreshed_once_on_401():
    """The server has forgotten the cached token: one 401, one fresh login, then the forecast."""
    def forecast(n, handler, issued):
        if bearer(handler) != issued[-1]:
            send_json(handler, {"error": "token expired"}, 401)
        else:
            send_json(handler, fixture("watttime_forecast_CAISO_NORTH_co2_moer"))

    with server_with(forecast, ["token-0"]) as server:
        src = source(base_url=server["url"])
        watttime_module._tokens[src._token_key(server["url"], CREDS)] = ("token-old", float("inf"))
        assert fetch(src).values[0] == pytest.approx(854.0 * LBS_PER_MWH_TO_G_PER_KWH)
        assert [p.split("?")[0] for p in server["paths"]] == [FORECAST, LOGIN, FORECAST]


def test_refused_after_a_fresh_login_is_an_auth_error_without_secrets():
    """A data endpoint that keeps refusing gets one re-login, then SourceAuthError naming what to fix."""
    def forecast(n, handler, issued):
        send_json(handler, {"error": f"forbidden for {bearer(handler)}"}, 403)

    with server_with(forecast) as server:
        with pytest.raises(SourceAuthError, match="after a fresh login") as info:
            fetch(source(base_url=server["url"]))
        assert [p.split("?")[0] for p in server["paths"]] == [LOGIN, FORECAST, LOGIN, FORECAST]
    message = str(info.value)
    assert "credentials=" in message and "HTTP 403" in message and "plan" in message
    assert SENTINEL not in message and "token-1" not in message and "token-2" not in message


def test_a_refused_login_is_an_auth_error_naming_the_variables(monkeypatch):
    """Wrong username/password: /login answers 401, once, and the error names the variables, not the password."""
    monkeypatch.setenv("CARBON_SENSORS_WATTTIME_USERNAME", USER)
    monkeypatch.setenv("CARBON_SENSORS_WATTTIME_PASSWORD", "wrong-" + SENTINEL)
    with server_with(lambda n, h, i: send_json(h, {})) as server:
        with pytest.raises(SourceAuthError, match=r"HTTP 401.*CARBON_SENSORS_WATTTIME_PASSWORD") as info:
            fetch(source(credentials=None, base_url=server["url"]))
        assert server["requests"] == 1
    assert SENTINEL not in str(info.value) and SENTINEL not in repr(info.value)


def test_5xx_burst_is_retried_then_succeeds():
    """Two 500s on the forecast, then a good answer: retried within the bounds, no second login."""
    def forecast(n, handler, issued):
        if n <= 2:
            send_json(handler, {"error": "busy"}, 500)
        else:
            send_json(handler, fixture("watttime_forecast_CAISO_NORTH_co2_moer"))

    with server_with(forecast) as server:
        assert len(fetch(source(base_url=server["url"])).values) == 288
        assert [p.split("?")[0] for p in server["paths"]] == [LOGIN, FORECAST, FORECAST, FORECAST]


def pt(value=900.0, at="2023-03-15T01:10:00+00:00"):
    return {"point_time": at, "value": value}


META = {"units": "lbs_co2_per_mwh", "signal_type": "co2_moer", "region": "CAISO_NORTH"}


@pytest.mark.parametrize(
    ("body", "error", "phrase"),
    [
        (b'{"data": [{"point_time": "2023-03-15T01:10:00+00:00", "val', SourceDataError, "malformed or truncated JSON"),
        ({"meta": META}, SourceDataError, "no 'data' list"),
        ({"data": [], "meta": META}, SourceDataError, "empty forecast"),
        ({"data": [{"point_time": "2023-03-15T01:10:00+00:00"}], "meta": META}, SourceDataError, "lacks point_time/value"),
        ({"data": [{"value": 900.0}], "meta": META}, SourceDataError, "lacks point_time/value"),
        ({"data": [pt(None)], "meta": META}, SourceDataError, "non-numeric"),
        ({"data": [pt(at="soon")], "meta": META}, SourceDataError, "bad timestamp"),
        ({"data": [pt(), pt(at="2023-03-15T01:05:00+00:00")], "meta": META}, SourceDataError, "out of time order"),
        ({"data": [pt(at="2023-03-14T01:10:00+00:00")], "meta": META}, SourceDataError, "stale"),
        ({"data": [pt()], "meta": {**META, "units": "$_per_mwh"}}, SourceDataError, "only lbs_co2_per_mwh"),
        ({"data": [pt()], "meta": {**META, "signal_type": "co2_aoer"}}, SourceDataError, "'co2_aoer' data"),
        ({"data": [pt()], "meta": {**META, "region": "PJM_NJ"}}, SourceDataError, "region 'PJM_NJ'"),
        ({"data": [pt(-10.0)], "meta": META}, InvalidForecastError, "-4.5"),
        ({"data": [pt(5000.0)], "meta": META}, InvalidForecastError, "unit"),  # 2268 g/kWh: not a real grid
    ],
)
def test_bad_payloads_raise_specific_errors(switchable, body, error, phrase):
    """Malformed, truncated, empty, incomplete, implausible, stale and mismatched responses each say why."""
    switchable["behaviour"] = lambda n, h, i: send_json(h, body)
    with pytest.raises(error, match=phrase):
        fetch(source(base_url=switchable["url"]))


def test_a_misdated_forecast_without_a_current_value_is_refused():
    """A forecast starting well after now cannot be completed and is refused as misdated."""
    def forecast(n, handler, issued):
        if handler.path.startswith(HISTORICAL):
            send_json(handler, {"error": "not on your plan"}, 403)
        else:
            send_json(handler, {"data": [pt(at="2023-03-15T03:00:00+00:00")], "meta": META})

    with server_with(forecast) as server:
        with pytest.raises(SourceDataError, match="misdated"):
            fetch(source(base_url=server["url"]))


def test_the_secrets_never_appear_in_errors_or_reprs(switchable):
    """Whatever fails, including a server echoing the password or the token, no message or repr holds them."""
    def echo(status):
        return lambda n, h, i: send_json(h, {"error": f"{SENTINEL} / {bearer(h)}"}, status)

    faults = [echo(400), echo(401), echo(403), echo(500),
              lambda n, h, i: send_json(h, {"data": [pt(f"{SENTINEL} {bearer(h)}")], "meta": META})]
    for behaviour in faults:
        clear_watttime_tokens()
        switchable["behaviour"] = behaviour
        src = source(base_url=switchable["url"])
        with pytest.raises(SourceError) as info:
            fetch(src)
        for text in (str(info.value), repr(info.value), repr(src), json.dumps(src.to_spec())):
            assert SENTINEL not in text and not any(token in text for token in switchable["issued"]), text
    assert switchable["issued"]  # tokens were issued, and echoed back, and still never shown


def history_until(until, days=28):
    """``days`` of 5-minute points in the recorded /v3/historical shape, ending before ``until``."""
    body = copy.deepcopy(fixture("watttime_historical_CAISO_NORTH_co2_moer"))
    start = until - timedelta(days=days)
    body["data"] = [{"point_time": (start + timedelta(minutes=5 * k)).isoformat(),
                     "value": 700.0 + 150.0 * ((k // 12) % 24 < 6)} for k in range(days * 24 * 12)]
    return body


def test_measured_history_is_asked_once_per_hour_for_the_persistence_prior():
    """Gates of one zone in one hour share one /v3/historical request, moved to whole hours; it is measured."""
    from carbon_sensors import CarbonGate, Policy, decide
    from carbon_sensors.planning.prior import HISTORY

    seen = []
    hour = NOW.replace(minute=0)
    src = source(region="CAISO_NORTH", transport=recorded(seen, {HISTORICAL: history_until(hour)}))
    gate = CarbonGate(zones="CAISO_NORTH", deadline=NOW + timedelta(hours=20), expected_duration=timedelta(hours=1),
                      source=src, policy=Policy(min_saving_pct=0))
    for minute in (0, 20, 40):
        now = NOW + timedelta(minutes=minute)
        decision = asyncio.run(decide(gate, now=now, deadline=NOW + timedelta(hours=20), submitted_at=now))
        assert decision.plan.source.endswith(" + persistence")
    history = [r for r in seen if r.url.path == HISTORICAL]
    assert len(history) == 1
    assert history[0].url.params["start"] == (hour - HISTORY).isoformat()
    assert history[0].url.params["end"] == hour.isoformat()
    measured = asyncio.run(src.fetch_measured("CAISO_NORTH", NOW - HISTORY, NOW, now=NOW))
    assert measured.measured_until is not None and measured.error_24h == 0 and measured.signal == "marginal"
    assert len([r for r in seen if r.url.path == HISTORICAL]) == 1  # still the cached one
