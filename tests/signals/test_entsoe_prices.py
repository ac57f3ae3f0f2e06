"""ENTSO-E day-ahead prices: recorded-shape A44 documents through MockTransport, faults from a local server."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from faulty_server import faulty_server, send_json

from carbon_sensors import ConfigurationError, ForecastCoverageError, SourceAuthError, SourceDataError, UnknownZoneError
from carbon_sensors.errors import SourceError, SourceUnavailableError
from carbon_sensors.signals import price_source_from_spec
from carbon_sensors.signals.cache import ForecastCache
from carbon_sensors.signals.credentials import Credentials
from carbon_sensors.signals.http import HttpSettings
from carbon_sensors.signals.prices.entsoe import EntsoePrices, parse_entsoe_prices

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
DE_DAY = (FIXTURES / "entsoe_a44_DE-LU_2025-10-06_PT15M.xml").read_text()
FR_DST = (FIXTURES / "entsoe_a44_FR_2024-03-31_PT60M.xml").read_text()
NO_DATA = (FIXTURES / "entsoe_ack_no_data.xml").read_text()
BAD_DOMAIN = (FIXTURES / "entsoe_ack_bad_domain.xml").read_text()
NOW = datetime(2025, 10, 6, 8, 20, tzinfo=UTC)
FAST = HttpSettings(connect_timeout_s=1.0, read_timeout_s=0.3, max_retries=1, backoff_s=0.01, max_retry_after_s=1.0)
SENTINEL = "entsoe-SENTINEL-token-51c0"


def answering(body, status=200, seen=None):
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, text=body, headers={"Content-Type": "text/xml"})

    return httpx.MockTransport(handler)


def source(transport, **kwargs):
    kwargs.setdefault("credentials", Credentials(api_key=SENTINEL))
    return EntsoePrices(transport=transport, cache=ForecastCache(), settings=FAST, **kwargs)


def fetch(src, zone="DE", start=NOW, hours=4, now=NOW):
    return asyncio.run(src.fetch(zone, start, start + timedelta(hours=hours), now=now))


def test_a_quarter_hour_a03_day_is_filled_and_requested_as_documented():
    """The request carries A44, the DE-LU EIC both ways, UTC yyyyMMddHHmm bounds and the token; A03 gaps are filled."""
    seen = []
    prices = fetch(source(answering(DE_DAY, seen=seen)))
    params = seen[0].url.params
    assert seen[0].url.path == "/api"
    assert params["documentType"] == "A44"
    assert params["in_Domain"] == params["out_Domain"] == "10Y1001A1001A82H"
    assert params["periodStart"] == "202510050000" and params["periodEnd"] == "202510080000"
    assert params["securityToken"] == SENTINEL
    assert prices.currency == "EUR" and prices.unit == "EUR/MWh" and prices.source == "entsoe" and prices.zone == "DE"
    assert len(prices.values) == 96 and prices.start == datetime(2025, 10, 5, 22, tzinfo=UTC)
    assert prices.end == datetime(2025, 10, 6, 22, tzinfo=UTC)
    assert prices.values[:8] == (88.5,) * 4 + (87.5,) * 4  # omitted positions repeat the one before
    assert min(prices.values) == -4.35  # negative prices are kept
    assert prices.issued_at == datetime(2025, 10, 5, 11, 2, 17, tzinfo=UTC) and prices.error_24h == 0.0


def test_an_hourly_document_on_the_spring_dst_day_has_23_hours():
    """France's 2024-03-31 delivery day is 23 hourly points from 23:00 UTC, in order."""
    prices = parse_entsoe_prices(FR_DST, zone="FR", eic="10YFR-RTE------C", now=datetime(2024, 3, 31, tzinfo=UTC))
    assert len(prices.values) == 23 and prices.end - prices.start == timedelta(hours=23)
    assert prices.values[12] == -0.5


def series(resolution, start, end, prices):
    points = "".join(f"<Point><position>{i}</position><price.amount>{p}</price.amount></Point>"
                     for i, p in enumerate(prices, 1))
    return ("<TimeSeries><currency_Unit.name>EUR</currency_Unit.name><price_Measure_Unit.name>MWH"
            "</price_Measure_Unit.name><curveType>A01</curveType><Period><timeInterval>"
            f"<start>{start}</start><end>{end}</end></timeInterval><resolution>{resolution}</resolution>"
            f"{points}</Period></TimeSeries>")


def test_finer_resolution_wins_where_both_are_published():
    """A PT60M and a PT15M series over the same hour: the quarter hours serve, the rest holds hourly."""
    doc = ('<Publication_MarketDocument xmlns="urn:iec62325.351:tc57wg16:451-3:publicationdocument:7:3"><type>A44</type>'
           + series("PT60M", "2025-10-05T22:00Z", "2025-10-06T00:00Z", [50, 60])
           + series("PT15M", "2025-10-05T22:00Z", "2025-10-05T23:00Z", [1, 2, 3, 4])
           + "</Publication_MarketDocument>")
    prices = parse_entsoe_prices(doc, zone="DE", eic="10Y1001A1001A82H", now=NOW)
    assert prices.values == (1.0, 2.0, 3.0, 4.0, 60.0, 60.0, 60.0, 60.0)
    assert prices.end == datetime(2025, 10, 6, tzinfo=UTC)


@pytest.mark.parametrize(("body", "status", "match"), [
    (NO_DATA, 200, r"no day-ahead prices for DE .*999: No matching data found.*not published yet"),
    (BAD_DOMAIN, 400, r"refused the request for DE .*HTTP 400: 999: Input parameter in_Domain"),
    (DE_DAY.replace(">EUR<", ">PLN<"), 200, r"quotes DE in PLN, not EUR.*currency='PLN'"),
    (DE_DAY.replace(">MWH<", ">KWH<"), 200, "per 'KWH'"),
    (DE_DAY.replace(">88.5<", ">NaN<"), 200, r"price 'NaN' at 2025-10-05T22:00Z"),
    (DE_DAY.replace("<position>5</position>", "<position>97</position>"), 200, "outside 1..96"),
    (DE_DAY.replace("PT15M", "PT7M"), 200, "not one a price curve uses"),
    (DE_DAY.replace(">A03<", ">A01<"), 200, r"no price at 2025-10-05T22:15Z"),
    (DE_DAY[: len(DE_DAY) // 2], 200, "malformed or truncated XML"),
    ('<!DOCTYPE x [<!ENTITY a "b">]>' + DE_DAY, 200, "DOCTYPE"),
    ("<GL_MarketDocument/>", 200, "not a Publication_MarketDocument"),
])
def test_bad_documents_are_source_errors_saying_what_happened(body, status, match):
    """Acknowledgements, other currencies or units, NaN, misplaced points, bad XML: SourceDataError, with the reason."""
    with pytest.raises(SourceDataError, match=match):
        fetch(source(answering(body, status)))


def test_a_refused_token_says_where_it_came_from_and_is_never_shown(caplog, monkeypatch):
    """HTTP 401 is a SourceAuthError naming where the token came from; the token is in no message or log line."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")
    monkeypatch.setattr(logging.getLogger("httpx"), "disabled", False)  # whatever earlier tests configured
    monkeypatch.setattr(logging.getLogger("httpx"), "propagate", True)
    with pytest.raises(SourceAuthError, match=r"HTTP 401.*EntsoePrices\(credentials=") as caught:
        fetch(source(answering("Unauthorized", 401)))
    assert SENTINEL not in str(caught.value)
    prices = fetch(source(answering(DE_DAY)))  # httpx logs every request's URL, query string and all
    assert prices.values and SENTINEL not in caplog.text
    assert "securityToken=***" in caplog.text


def test_a_missing_token_says_where_to_put_it(monkeypatch):
    """Without a token (no connection, no environment variable) the error names the variable."""
    monkeypatch.delenv("CARBON_SENSORS_ENTSOE_API_KEY", raising=False)
    src = EntsoePrices(transport=answering(DE_DAY), cache=ForecastCache(), settings=FAST)
    with pytest.raises(SourceAuthError, match="CARBON_SENSORS_ENTSOE_API_KEY"):
        fetch(src)
    monkeypatch.setenv("CARBON_SENSORS_ENTSOE_API_KEY", SENTINEL)
    assert fetch(src).values


def test_server_faults_are_bounded_and_unavailable():
    """A 503 from a real local server is retried a bounded number of times, then SourceUnavailableError."""
    with faulty_server(lambda n, h: send_json(h, {"error": "down"}, 503)) as server:
        src = EntsoePrices(base_url=server["url"], credentials=Credentials(api_key=SENTINEL), cache=ForecastCache(),
                           settings=FAST)
        with pytest.raises(SourceUnavailableError) as caught:
            fetch(src)
    assert server["requests"] == 2 and SENTINEL not in str(caught.value)


def test_one_request_per_zone_per_hour_and_stale_while_error():
    """Gates of one zone share one request; when the refresh fails, the last good prices serve, marked stale."""
    calls = {"n": 0}

    def handler(request):
        calls["n"] += 1
        return httpx.Response(200 if calls["n"] == 1 else 503, text=DE_DAY)

    src = source(httpx.MockTransport(handler))
    first = fetch(src)
    assert fetch(src, start=NOW + timedelta(hours=1), now=NOW + timedelta(minutes=5)) is first and calls["n"] == 1
    src.refresh_interval = timedelta(0)  # the hour is up
    later = fetch(src, now=NOW + timedelta(minutes=70))
    assert calls["n"] == 3 and later.source == "entsoe [stale]" and later.values == first.values


def test_a_window_outside_the_published_prices_is_a_coverage_error():
    """Asking past the published day says how far day-ahead prices reach."""
    with pytest.raises(ForecastCoverageError, match="end of tomorrow"):
        fetch(source(answering(DE_DAY)), start=NOW + timedelta(days=1))


def test_zones_eic_codes_and_spec():
    """Known names map to EIC codes, raw codes pass, others are refused; the spec holds no token and round-trips."""
    assert EntsoePrices().eic_for("IT-NO") == "10Y1001A1001A73I"
    assert EntsoePrices().eic_for("10YNL----------L") == "10YNL----------L"
    with pytest.raises(UnknownZoneError, match="eic="):
        EntsoePrices().check_zone("Atlantis")
    with pytest.raises(ConfigurationError, match="16-character"):
        EntsoePrices(eic="DE&x=1")
    src = EntsoePrices(eic="10YFR-RTE------C", conn_id="entsoe_prod", credentials=Credentials(api_key=SENTINEL))
    spec = src.to_spec()
    assert spec["kind"] == "entsoe" and SENTINEL not in repr(spec) + repr(src)
    assert price_source_from_spec(spec) == src
    assert isinstance(price_source_from_spec("entsoe"), EntsoePrices)
    assert issubclass(SourceDataError, SourceError)
