"""The NESO source: recorded-shape responses, the shared cache, and faults from a real local server."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from faulty_server import faulty_server, hang, send_json

from carbon_sensors import ConfigurationError, InvalidForecastError, SourceAuthError, SourceDataError, UnknownZoneError
from carbon_sensors.errors import SourceUnavailableError
from carbon_sensors.signals import source_from_spec
from carbon_sensors.signals.cache import ForecastCache
from carbon_sensors.signals.http import HttpSettings
from carbon_sensors.signals.neso import NesoSource

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
NOW = datetime(2023, 3, 15, 1, 10, tzinfo=UTC)
FAST = HttpSettings(connect_timeout_s=1.0, read_timeout_s=0.3, max_retries=2, backoff_s=0.01, max_retry_after_s=1.0)


def fixture(name):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def recorded(name, seen=None):
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request.url.path)
        return httpx.Response(200, json=fixture(name))

    return httpx.MockTransport(handler)


def fetch(source, zone="GB", now=NOW):
    return asyncio.run(source.fetch(zone, now, now, now=now))


def test_national_forecast_parses_with_its_current_error():
    """The national fw48h response becomes 30-minute points; actual vs forecast gives the current error."""
    seen = []
    source = NesoSource(transport=recorded("neso_national_fw48h", seen), cache=ForecastCache())
    forecast = fetch(source)
    assert seen == ["/intensity/2023-03-15T01:00Z/fw48h"]
    assert forecast.values[:3] == (178.0, 182.0, 185.0) and len(forecast.values) == 12
    assert forecast.signal == "average" and forecast.source == "neso" and forecast.error_24h == 0.10
    assert forecast.recent_error == pytest.approx(178 / 184 - 1)
    assert (forecast.end - forecast.start).total_seconds() == 12 * 1800


def test_regional_and_postcode_forecasts():
    """Region ids and postcodes call their endpoints and parse the nested data."""
    seen = []
    region = fetch(NesoSource(region_id=13, transport=recorded("neso_regional_fw48h_regionid_13", seen),
                              cache=ForecastCache()), zone="GB-London")
    postcode = fetch(NesoSource(postcode="rg10", transport=recorded("neso_regional_fw48h_postcode_RG10", seen),
                                cache=ForecastCache()), zone="GB-RG10")
    assert seen == ["/regional/intensity/2023-03-15T01:00Z/fw48h/regionid/13",
                    "/regional/intensity/2023-03-15T01:00Z/fw48h/postcode/RG10"]
    assert region.zone == "GB-London" and region.values[0] == 121.0 and region.recent_error is None
    assert postcode.values == (205.0, 211.0, 214.0, 209.0)


@pytest.mark.parametrize("bad", [{"region_id": 0}, {"region_id": "13/../../x"}, {"postcode": "../../admin"},
                                 {"postcode": "RG10?x=1"}, {"base_url": "file:///etc"},
                                 {"region_id": 1, "postcode": "RG10"}])
def test_user_strings_cannot_change_the_request_url(bad):
    """Region ids and postcodes are validated, so no path or query can be injected."""
    with pytest.raises(ConfigurationError):
        NesoSource(**bad)


def test_only_great_britain():
    """Zones outside GB are refused with a clear error."""
    with pytest.raises(UnknownZoneError, match="Great Britain"):
        NesoSource().check_zone("DE")


def test_spec_round_trip_has_no_secret():
    """The source travels in trigger kwargs as a plain spec and comes back equal."""
    source = NesoSource(region_id=13)
    spec = source.to_spec()
    assert source_from_spec(json.loads(json.dumps(spec))) == source


def test_one_request_per_zone_for_many_concurrent_waiters():
    """A thousand concurrent fetches of one zone make one upstream request (single flight)."""
    cache = ForecastCache()
    calls = []

    async def slow(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        await asyncio.sleep(0.05)
        return httpx.Response(200, json=fixture("neso_national_fw48h"))

    source = NesoSource(transport=httpx.MockTransport(slow), cache=cache)

    async def many():
        return await asyncio.gather(*(source.fetch("GB", NOW, NOW, now=NOW) for _ in range(1000)))

    forecasts = asyncio.run(many())
    assert len(calls) == 1 and cache.fetches == 1
    assert len({id(f) for f in forecasts}) == 1


def test_stale_while_error_serves_the_last_good_forecast_marked_stale():
    """When a refresh fails, a recent good forecast serves, and its source says [stale]."""
    cache = ForecastCache()
    answers = iter([httpx.Response(200, json=fixture("neso_national_fw48h"))] + [httpx.Response(503)] * 10)
    source = NesoSource(transport=httpx.MockTransport(lambda r: next(answers)), cache=cache, settings=FAST)
    good = fetch(source)
    # Make it due for refresh: two hours old (relative to the monotonic clock, which starts near 0 at boot).
    cache._entries[next(iter(cache._entries))] = (__import__("time").monotonic() - 7200.0, good)
    source.max_stale = __import__("datetime").timedelta(days=365 * 100)
    stale = fetch(source)
    assert stale.values == good.values and stale.source == "neso [stale]"


def test_read_timeout_is_bounded_and_mapped():
    """A server that hangs gives SourceUnavailableError after the read timeout and bounded retries."""
    with faulty_server(hang(2.0)) as server:
        source = NesoSource(base_url=server["url"], settings=FAST, cache=ForecastCache())
        with pytest.raises(SourceUnavailableError, match=r"did not answer within 0\.3 s"):
            fetch(source)
        assert server["requests"] == 3  # one try and two retries


def test_5xx_burst_is_retried_then_succeeds():
    """Two 500s, then a good answer: the source retries and returns the forecast."""
    def behaviour(n, handler):
        send_json(handler, {"error": "busy"} if n <= 2 else fixture("neso_national_fw48h"), 500 if n <= 2 else 200)

    with faulty_server(behaviour) as server:
        forecast = fetch(NesoSource(base_url=server["url"], settings=FAST, cache=ForecastCache()))
    assert forecast.values[0] == 178.0 and server["requests"] == 3


def test_429_retry_after_is_honoured():
    """A 429 with Retry-After: 0 is retried; one asking for longer than the cap fails fast."""
    def behaviour(n, handler):
        if n == 1:
            send_json(handler, {}, 429, {"Retry-After": "0"})
        else:
            send_json(handler, fixture("neso_national_fw48h"))

    with faulty_server(behaviour) as server:
        assert fetch(NesoSource(base_url=server["url"], settings=FAST, cache=ForecastCache())).values[0] == 178.0
    with faulty_server(lambda n, h: send_json(h, {}, 429, {"Retry-After": "3600"})) as server:
        with pytest.raises(SourceUnavailableError, match="rate-limiting"):
            fetch(NesoSource(base_url=server["url"], settings=FAST, cache=ForecastCache()))
        assert server["requests"] == 1


def test_401_is_an_auth_error_and_not_retried():
    """A refusal of credentials is reported at once, without retries."""
    with faulty_server(lambda n, h: send_json(h, {"error": "no"}, 401)) as server:
        with pytest.raises(SourceAuthError, match="HTTP 401"):
            fetch(NesoSource(base_url=server["url"], settings=FAST, cache=ForecastCache()))
        assert server["requests"] == 1


@pytest.mark.parametrize(
    ("body", "error", "phrase"),
    [
        (b'{"data": [{"from": "2023-03-15T01:00Z", "to"', SourceDataError, "malformed or truncated JSON"),
        ({"data": []}, SourceDataError, "empty forecast"),
        ({"error": {"code": "400"}}, SourceDataError, "no 'data' list"),
        ({"data": [{"from": "2023-03-15T01:00Z", "intensity": {}}]}, SourceDataError, "lacks from/intensity.forecast"),
        ({"data": [{"from": "2023-03-15T01:00Z", "intensity": {"forecast": -5}}]}, InvalidForecastError, "-5"),
        ({"data": [{"from": "2023-03-15T01:00Z", "intensity": {"forecast": 5000}}]}, InvalidForecastError, "unit"),
        ({"data": [{"from": "2023-03-15T01:00Z", "intensity": {"forecast": "NaN"}}]}, SourceDataError, "non-numeric"),
        ({"data": [{"from": "2023-03-01T01:00Z", "intensity": {"forecast": 150}}]}, SourceDataError, "stale"),
    ],
)
def test_bad_payloads_raise_specific_errors(body, error, phrase):
    """Malformed, truncated, empty, implausible and stale responses each raise our error, saying why."""
    with faulty_server(lambda n, h: send_json(h, body)) as server:
        with pytest.raises(error, match=phrase):
            fetch(NesoSource(base_url=server["url"], settings=FAST, cache=ForecastCache()))


def neso_range(seen):
    """A MockTransport answering fw48h with the recorded forecast and /intensity/{from}/{to} in its recorded slot shape.

    As the live API does, a range answers from the slot that ends at ``from``; the last two slots
    have no ``actual`` yet.
    """
    from datetime import timedelta

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        parts = request.url.path.split("/")
        if parts[-1] == "fw48h":
            return httpx.Response(200, json=fixture("neso_national_fw48h"))
        start, end = (datetime.strptime(p, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC) for p in parts[2:4])
        slots, at = [], start - timedelta(minutes=30)
        while at < end:
            actual = 180 + 60 * (at.hour < 6) if at < NOW.replace(minute=0) - timedelta(hours=1) else None
            slots.append({"from": f"{at:%Y-%m-%dT%H:%MZ}", "to": f"{at + timedelta(minutes=30):%Y-%m-%dT%H:%MZ}",
                          "intensity": {"forecast": 200, "actual": actual, "index": "moderate"}})
            at += timedelta(minutes=30)
        return httpx.Response(200, json={"data": slots})

    return httpx.MockTransport(handler)


def test_measured_history_comes_in_14_day_pieces_once_an_hour_and_feeds_the_prior():
    """28 days are two /intensity/{from}/{to} requests, whole hours, cached; the gate then plans on the blend."""
    from datetime import timedelta

    from carbon_sensors import CarbonGate, Policy, decide
    from carbon_sensors.planning.prior import HISTORY

    seen = []
    source = NesoSource(transport=neso_range(seen), cache=ForecastCache())
    hour = NOW.replace(minute=0)
    measured = asyncio.run(source.fetch_measured("GB", NOW - HISTORY, NOW, now=NOW))
    first, second = hour - HISTORY, hour - HISTORY + timedelta(days=14)
    assert seen == [f"/intensity/{first:%Y-%m-%dT%H:%MZ}/{second:%Y-%m-%dT%H:%MZ}",
                    f"/intensity/{second:%Y-%m-%dT%H:%MZ}/{hour:%Y-%m-%dT%H:%MZ}"]
    assert measured.starts_s[0] == first.timestamp()  # the slot ending at `from` is left out
    assert measured.measured_until == hour - timedelta(hours=1)  # the slots without an actual are too
    assert measured.error_24h == 0 and measured.source == "neso-actual" and set(measured.values) == {180.0, 240.0}
    gate = CarbonGate(zones="GB", deadline=NOW + timedelta(hours=6), expected_duration=timedelta(hours=1),
                      source=source, policy=Policy(min_saving_pct=0))
    decision = asyncio.run(decide(gate, now=NOW, deadline=NOW + timedelta(hours=6), submitted_at=NOW))
    assert decision.plan.source == "neso + persistence"
    assert len([p for p in seen if not p.endswith("fw48h")]) == 2  # the gate's history was the cached one


def test_regional_sources_and_empty_ranges_have_no_measured_history():
    from datetime import timedelta

    with pytest.raises(SourceDataError, match="regional endpoints publish no measured intensity"):
        asyncio.run(NesoSource(region_id=13).fetch_measured("GB", NOW - timedelta(days=1), NOW, now=NOW))
    empty = NesoSource(transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"data": []})),
                       cache=ForecastCache())
    with pytest.raises(SourceDataError, match="no measured intensity between"):
        asyncio.run(empty.fetch_measured("GB", NOW - timedelta(days=1), NOW, now=NOW))
