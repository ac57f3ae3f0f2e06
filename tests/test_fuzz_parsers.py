"""Fuzzing the response parsers: whatever a source sends, the result is a valid Forecast or one of our errors.

The errors allowed are :class:`SourceError` and :class:`ForecastError`: the ones a gate catches to
fall back (``on_source_error``), so a malformed response can never fail a task by surprise. A
KeyError, TypeError, IndexError, OverflowError or a bare ValueError would escape that handling.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from carbon_sensors.errors import ForecastError, SourceError, UnknownZoneError
from carbon_sensors.forecast import MAX_PLAUSIBLE_G_PER_KWH, Forecast
from carbon_sensors.signals.cache import ForecastCache
from carbon_sensors.signals.carbon_aware_sdk import CarbonAwareSdkSource, parse_carbon_aware_sdk
from carbon_sensors.signals.electricitymaps import parse_electricitymaps, parse_electricitymaps_history
from carbon_sensors.signals.file import FileSource
from carbon_sensors.signals.http import HttpSettings
from carbon_sensors.signals.neso import NesoSource, parse_neso
from carbon_sensors.signals.watttime import parse_watttime

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OURS = (SourceError, ForecastError)
#: Examples per property; raise it for a deeper run, e.g. CS_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz_parsers.py
EXAMPLES = int(os.environ.get("CS_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
NEAR = datetime(2023, 3, 15, 1, 10, tzinfo=UTC)  # when the NESO, Electricity Maps and WattTime fixtures were recorded
CAS_NOW = datetime(2024, 6, 3, 14, 3, 12, tzinfo=UTC)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


# -- strategies ------------------------------------------------------------------------------------

FIELD_NAMES = (
    "data", "from", "to", "intensity", "forecast", "actual", "index", "regionid", "point_time", "value", "meta",
    "units", "signal_type", "region", "generated_at", "data_point_period_seconds", "zone", "datetime",
    "carbonIntensity", "updatedAt", "emissionFactorType", "isEstimated", "history", "location", "forecastData",
    "timestamp", "duration", "generatedAt",
)
STAMPS = (
    "2023-03-15T01:00Z", "2023-03-15T01:10:00+00:00", "2023-03-15T01:30:00", "2023-03-15T03:00:00+02:00",
    "2024-06-03T14:05:00+00:00", "2023-03-15", "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59+00:00", "1970-01-01T00:00:00Z", "not a time", "", "2023-02-30T00:00:00Z", "T",
    "2023-03-15T01:00:00.000Z", "2023-03-15T25:00:00Z",
)
UNITS = ("lbs_co2_per_mwh", "g_co2_per_kwh", "kg_co2_per_kwh", "lbs/MWh", "", "LBS_CO2_PER_MWH", "health_damage")
SPECIAL_NUMBERS = (
    0, -0.0, -1, 1, 0.5, 1e-320, 5e-324, 2000, 2000.0001, 1e308, -1e308, 10**18, 10**30, 10**400, -(10**400),
    math.nan, math.inf, -math.inf, 0.45359237, 86400, 86401, 1e-9,
)

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(SPECIAL_NUMBERS) | st.text(max_size=20) | st.sampled_from(STAMPS) | st.sampled_from(UNITS)
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), children, max_size=6),
    max_leaves=30,
)
nows = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)) | st.builds(
    lambda minutes: NEAR + timedelta(minutes=minutes), st.integers(-48 * 60, 72 * 60))
#: Mostly the moment the recordings were made (so that mutations, not staleness, decide), sometimes any time.
near_nows = st.sampled_from([NEAR, NEAR - timedelta(minutes=3), NEAR + timedelta(minutes=25)]) | st.builds(
    lambda minutes: NEAR + timedelta(minutes=minutes), st.integers(-120, 120)) | nows


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every location inside a JSON value, as a tuple of keys and indexes (the root is ``()``)."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _get(value: Any, path: tuple) -> Any:
    for step in path:
        value = value[step]
    return value


def _shift_stamp(text: str, hours: int) -> str:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return (moment + timedelta(hours=hours)).isoformat()
    except (ValueError, OverflowError):
        return text


def _is_stamp(value: Any) -> bool:
    try:
        datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return False
    return isinstance(value, str)


LABEL_KEYS = ("units", "emissionFactorType", "signal_type", "zone", "region", "location", "isEstimated")


@st.composite
def mutated(draw: st.DrawFn, original: Any) -> Any:
    """A recorded payload with a few mutations: dropped fields, wrong types, odd numbers and units, truncation."""
    payload = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["drop", "retype", "number", "scale", "stamp", "label", "truncate", "reorder",
                                   "duplicate"]))
        paths = _paths(payload)
        if op in ("number", "scale"):
            paths = [p for p in paths if isinstance(_get(payload, p), int | float) and not isinstance(_get(payload, p), bool)]
        elif op == "stamp":
            paths = [p for p in paths if _is_stamp(_get(payload, p))]
        elif op == "label":
            paths = [p for p in paths if p and p[-1] in LABEL_KEYS]
        elif op == "drop":
            paths = [p for p in paths if p]
        elif op in ("truncate", "reorder", "duplicate"):
            paths = [p for p in paths if isinstance(_get(payload, p), list)]
        if not paths:
            continue
        path = draw(st.sampled_from(paths))
        target, changed = _get(payload, path), None
        if op in ("truncate", "reorder", "duplicate"):
            if op == "truncate":
                changed = target[: draw(st.integers(0, len(target)))]
            elif op == "reorder":
                changed = draw(st.permutations(target))
            else:
                changed = list(target)
                if changed:
                    i = draw(st.integers(0, len(changed) - 1))
                    changed.insert(i, copy.deepcopy(changed[i]))
        elif op == "retype":
            changed = draw(json_values | st.sampled_from([None, True, [], {}, "", "448"]))
        elif op == "number":
            changed = draw(st.sampled_from(SPECIAL_NUMBERS))
        elif op == "scale":  # wrong units: kg instead of g, lbs/MWh read as g/kWh, a sign flipped
            factor = draw(st.sampled_from([1000, 0.001, -1, 2.20462, 1e300]))
            changed = target * factor if abs(target) < 1e300 else -target
        elif op == "stamp":
            changed = draw(st.sampled_from(STAMPS) | st.builds(_shift_stamp, st.just(target), st.integers(-10**5, 10**5)))
        elif op == "label":
            changed = draw(st.sampled_from(UNITS) | st.sampled_from(["direct", "lifecycle", "co2_moer", "co2_aoer", "FR",
                                                                      "CAISO_SOUTH", "eastus", None]))
        if not path:
            payload = changed
        elif op == "drop":
            del _get(payload, path[:-1])[path[-1]]
        else:
            _get(payload, path[:-1])[path[-1]] = changed
    return payload


def check_forecast(result: Forecast, *, zone: str, signal: str) -> None:
    """What every parser promises of a Forecast it returns."""
    assert isinstance(result, Forecast)
    assert result.zone == zone and result.signal == signal
    assert result.values and len(result.values) == len(result.starts_s)
    assert all(math.isfinite(v) and 0 <= v <= MAX_PLAUSIBLE_G_PER_KWH for v in result.values)
    assert all(b > a for a, b in zip(result.starts_s, result.starts_s[1:], strict=False))
    assert result.end_s > result.starts_s[-1]
    assert result.issued_at.tzinfo is not None
    assert result.recent_error is None or (math.isfinite(result.recent_error) and result.recent_error > -1)
    result.mean_between(result.starts_s[0], result.end_s)  # usable by the planner


def outcome(call) -> Forecast | None:
    """The parser's Forecast, or None when it raised one of our errors; anything else fails the test."""
    try:
        result = call()
    except OURS as exc:
        _event(f"refused: {type(exc).__name__}")
        return None
    _event("parsed")
    return result


def _event(name: str) -> None:
    """Count outcomes for ``--hypothesis-show-statistics`` (outside a hypothesis test, do nothing)."""
    if currently_in_test_context():
        event(name)


# -- NESO ------------------------------------------------------------------------------------------


def _neso(payload: Any, now: datetime) -> Forecast | None:
    requested = datetime.fromtimestamp(now.timestamp() // 1800 * 1800, UTC)
    result = outcome(lambda: parse_neso(payload, zone="GB", requested=requested, now=now))
    if result is not None:
        check_forecast(result, zone="GB", signal="average")
    return result


@FUZZ
@given(payload=json_values, now=nows)
def test_neso_on_arbitrary_json(payload, now):
    """parse_neso on arbitrary JSON: a valid Forecast or our error."""
    _neso(payload, now)


@FUZZ
@given(data=st.data(), name=st.sampled_from(["neso_national_fw48h", "neso_regional_fw48h_regionid_13",
                                             "neso_regional_fw48h_postcode_RG10"]))
def test_neso_on_mutated_recordings(data, name):
    """parse_neso on recorded responses with fields dropped, retyped, rescaled, reordered or cut."""
    _neso(data.draw(mutated(fixture(name))), data.draw(near_nows))


def test_neso_recordings_parse_unmutated():
    """The mutation tests start from payloads that do parse."""
    for name in ("neso_national_fw48h", "neso_regional_fw48h_regionid_13", "neso_regional_fw48h_postcode_RG10"):
        assert _neso(fixture(name), NEAR) is not None


def test_neso_freak_actual_is_ignored_not_fatal():
    """A tiny or huge 'actual' for the current slot drops the current error; the forecast still serves."""
    for actual in (1e-320, 10**400, math.inf):
        payload = fixture("neso_national_fw48h")
        payload["data"][0]["intensity"]["actual"] = actual
        forecast = _neso(payload, NEAR)
        assert forecast is not None and forecast.recent_error is None


# -- Electricity Maps ------------------------------------------------------------------------------


def _em(forecast: Any, latest: Any, now: datetime, zone_key: str | None = "DE") -> Forecast | None:
    result = outcome(lambda: parse_electricitymaps(forecast, latest, zone="home", now=now, zone_key=zone_key))
    if result is not None:
        check_forecast(result, zone="home", signal="average")
        assert result.end_s > now.timestamp()  # a stale forecast is refused
    return result


def _em_history(payload: Any, now: datetime) -> Forecast | None:
    result = outcome(lambda: parse_electricitymaps_history(payload, zone="home", now=now, zone_key="DE"))
    if result is not None:
        check_forecast(result, zone="home", signal="average")
        assert result.error_24h == 0.0 and result.measured_until is not None
    return result


@FUZZ
@given(forecast=json_values, latest=json_values, now=nows, zone_key=st.sampled_from(["DE", None]))
def test_electricitymaps_on_arbitrary_json(forecast, latest, now, zone_key):
    """parse_electricitymaps and the history parser on arbitrary JSON: a valid Forecast or our error."""
    _em(forecast, latest, now, zone_key)
    _em_history(forecast, now)


@FUZZ
@given(data=st.data())
def test_electricitymaps_on_mutated_recordings(data):
    """The recorded forecast, latest value and history, mutated; each combination parses or fails with our error."""
    now = data.draw(near_nows)
    forecast = data.draw(mutated(fixture("electricitymaps_forecast_DE")) | st.just(fixture("electricitymaps_forecast_DE")))
    latest = data.draw(mutated(fixture("electricitymaps_latest_DE")) | st.none())
    _em(forecast, latest, now)
    _em_history(data.draw(mutated(fixture("electricitymaps_history_DE"))), now)


def test_electricitymaps_recordings_parse_unmutated():
    """The mutation tests start from payloads that do parse."""
    assert _em(fixture("electricitymaps_forecast_DE"), fixture("electricitymaps_latest_DE"), NEAR) is not None
    assert _em_history(fixture("electricitymaps_history_DE"), NEAR) is not None


# -- WattTime --------------------------------------------------------------------------------------

WATTTIME = ("watttime_forecast_CAISO_NORTH_co2_moer", "watttime_forecast_CAISO_NORTH_co2_aoer",
            "watttime_historical_CAISO_NORTH_co2_moer")
currents = st.none() | st.tuples(st.builds(lambda m: NEAR + timedelta(minutes=m), st.integers(-30, 10)),
                                 st.floats(0, 2000))


def _watttime(payload: Any, now: datetime, signal_type: str, current: Any, measured: bool) -> Forecast | None:
    result = outcome(lambda: parse_watttime(payload, zone="x", now=now, signal_type=signal_type, region="CAISO_NORTH",
                                            current=current, measured=measured))
    if result is not None:
        check_forecast(result, zone="x", signal={"co2_moer": "marginal", "co2_aoer": "average"}[signal_type])
        if not measured:
            assert result.end_s > now.timestamp()
    return result


@FUZZ
@given(payload=json_values, now=nows, signal_type=st.sampled_from(["co2_moer", "co2_aoer"]), current=currents,
       measured=st.booleans())
def test_watttime_on_arbitrary_json(payload, now, signal_type, current, measured):
    """parse_watttime (forecast and historical) on arbitrary JSON: a valid Forecast or our error."""
    _watttime(payload, now, signal_type, current, measured)


@FUZZ
@given(data=st.data(), name=st.sampled_from(WATTTIME), current=currents, measured=st.booleans())
def test_watttime_on_mutated_recordings(data, name, current, measured):
    """Recorded WattTime responses with wrong units, odd periods, dropped or retyped fields."""
    payload = data.draw(mutated(fixture(name)))
    now = data.draw(near_nows)
    _watttime(payload, now, "co2_aoer" if name.endswith("aoer") else "co2_moer", current, measured)


def test_watttime_recordings_parse_unmutated():
    """The mutation tests start from payloads that do parse; a unit we do not know is refused."""
    assert _watttime(fixture(WATTTIME[0]), NEAR, "co2_moer", None, False) is not None
    assert _watttime(fixture(WATTTIME[2]), NEAR, "co2_moer", None, True) is not None
    for units in (["lbs_co2_per_mwh"], {"u": 1}, "kg_co2_per_kwh"):
        payload = fixture(WATTTIME[0])
        payload["meta"]["units"] = units
        with pytest.raises(SourceError, match=r"units|lbs_co2_per_mwh"):
            parse_watttime(payload, zone="x", now=NEAR)


# -- Carbon Aware SDK ------------------------------------------------------------------------------


def _cas(payload: Any, now: datetime, location: str = "westus") -> Forecast | None:
    result = outcome(lambda: parse_carbon_aware_sdk(payload, zone="w", location=location, signal="marginal", now=now))
    if result is not None:
        check_forecast(result, zone="w", signal="marginal")
        assert result.end_s > now.timestamp()
    return result


@FUZZ
@given(payload=json_values, now=nows, location=st.sampled_from(["westus", "eastus", ""]))
def test_carbon_aware_sdk_on_arbitrary_json(payload, now, location):
    """parse_carbon_aware_sdk on arbitrary JSON: a valid Forecast or our error."""
    _cas(payload, now, location)


@FUZZ
@given(data=st.data())
def test_carbon_aware_sdk_on_mutated_recordings(data):
    """The recorded /emissions/forecasts/current response, mutated."""
    now = data.draw(st.sampled_from([CAS_NOW, CAS_NOW - timedelta(hours=1)]) | nows)
    _cas(data.draw(mutated(fixture("carbon_aware_sdk_forecasts_current_westus"))), now)


def test_carbon_aware_sdk_recording_parses_unmutated():
    """The mutation tests start from a payload that does parse."""
    assert _cas(fixture("carbon_aware_sdk_forecasts_current_westus"), CAS_NOW) is not None


# -- the HTTP boundary: truncated and odd bodies ---------------------------------------------------


FAST = HttpSettings(connect_timeout_s=1.0, read_timeout_s=0.5, max_retries=0, backoff_s=0.0, max_retry_after_s=0.1)
NESO_TEXT = (FIXTURES / "neso_national_fw48h.json").read_bytes()
CAS_TEXT = (FIXTURES / "carbon_aware_sdk_forecasts_current_westus.json").read_bytes()


def _serve(body: bytes) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(200, content=body,
                                                              headers={"Content-Type": "application/json"}))


bodies = (
    st.builds(lambda cut: NESO_TEXT[:cut], st.integers(0, len(NESO_TEXT)))
    | st.builds(lambda cut: CAS_TEXT[:cut], st.integers(0, len(CAS_TEXT)))
    | st.binary(max_size=200)
    | st.builds(lambda depth: b"[" * depth + b"]" * depth, st.integers(1, 200_000))
    | st.builds(lambda depth: b'{"data":' * depth + b"1" + b"}" * depth, st.sampled_from([10, 5_000, 100_000]))
    | st.sampled_from([b"NaN", b"Infinity", b"[1e400]", b'{"data": [{"from": "2023-03-15T01:00Z", "intensity": '
                                                        b'{"forecast": 1' + b"0" * 400 + b"}}]}"])
)


@settings(FUZZ, max_examples=max(20, EXAMPLES * 3 // 10))
@given(body=bodies)
def test_truncated_or_hostile_bodies_give_source_errors(body):
    """Bodies cut anywhere, binary noise, absurdly deep nesting: a fetch raises our error or returns a Forecast."""
    neso = NesoSource(transport=_serve(body), cache=ForecastCache(), settings=FAST)
    cas = CarbonAwareSdkSource(base_url="http://casdk.internal:8080", transport=_serve(body), cache=ForecastCache(),
                               settings=FAST)
    for fetch, now in ((lambda now: neso.fetch("GB", now, now, now=now), NEAR),
                       (lambda now: cas.fetch("westus", now, now, now=now), CAS_NOW)):
        result = outcome(lambda fetch=fetch, now=now: asyncio.run(fetch(now)))
        if result is not None:
            assert isinstance(result, Forecast)


# -- FileSource on random CSV text -----------------------------------------------------------------

HEADERS = ("timestamp", "datetime_utc", "time", "from", "carbon_intensity", "value", "forecast", "zone", "region",
           "intensity", "notes", "", "Timestamp ", "zone_key")
cells = (
    st.sampled_from(STAMPS) | st.sampled_from(["2026-01-01T00:00:00+00:00", "2026-01-01T01:00:00+00:00",
                                               "2026-01-01T00:30:00+01:00", "2026-03-29T02:30:00", "1899-12-31T00:00"])
    | st.builds(lambda h: (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=30 * h)).isoformat(), st.integers(-5, 50))
    | st.sampled_from(["", "nan", "inf", "-1", "1e400", "300", "2001", "0", "1_000", "abc", "DE", "GB", " 12 ", '"1,5"'])
    | st.builds(str, st.floats(allow_nan=True, allow_infinity=True))
    | st.text(max_size=10)
)


@st.composite
def csv_texts(draw: st.DrawFn) -> str:
    header = draw(st.lists(st.sampled_from(HEADERS) | st.text(max_size=6), min_size=0, max_size=5))
    rows = draw(st.lists(st.lists(cells, min_size=0, max_size=len(header) + 2), max_size=12))
    sep = draw(st.sampled_from([",", ";", ",,"]))
    lines = [sep.join(header)] + [sep.join(row) for row in rows]
    return draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines) + draw(st.sampled_from(["", "\n"]))


@st.composite
def plausible_csv_texts(draw: st.DrawFn) -> str:
    """A time column, an intensity column and maybe a zone column, with a few cells spoiled."""
    columns = [draw(st.sampled_from(["timestamp", "datetime_utc", "from", "period_start"])),
               draw(st.sampled_from(["carbon_intensity", "value", "forecast", "moer"]))]
    if draw(st.booleans()):
        columns.insert(draw(st.integers(0, 2)), "zone")
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=draw(st.integers(-600, 600)))
    step = timedelta(minutes=draw(st.sampled_from([5, 30, 60, 61])))
    offset = draw(st.sampled_from(["+00:00", "Z", "", "+01:00", "-05:00"]))
    lines = [",".join(columns)]
    for i in range(draw(st.integers(0, 30))):
        cell = {"zone": draw(st.sampled_from(["DE", "GB"])),
                columns[0 if columns[0] != "zone" else 1]: (start + i * step).strftime("%Y-%m-%dT%H:%M:%S") + offset}
        row = [cell.get(c, str(draw(st.floats(0, 2000) | st.integers(0, 2000)))) for c in columns]
        if draw(st.integers(0, 9)) == 0:  # spoil a cell, drop one, or add one
            j = draw(st.integers(0, len(row) - 1))
            spoil = draw(st.sampled_from(["drop", "add", "cell"]))
            if spoil == "drop":
                del row[j]
            elif spoil == "add":
                row.append(draw(cells))
            else:
                row[j] = draw(cells)
        lines.append(",".join(row))
    return "\n".join(lines) + "\n"


@FUZZ
@given(text=plausible_csv_texts() | csv_texts() | st.text(max_size=300), raw=st.none() | st.binary(max_size=200),
       timezone=st.sampled_from([None, "UTC", "Europe/Berlin"]), zone=st.sampled_from(["DE", "GB"]),
       now=st.builds(lambda h: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=17 * h), st.integers(-10, 200)))
def test_file_source_on_random_csv_text(text, raw, timezone, zone, now):
    """FileSource on random CSV text (and bytes): a valid Forecast, our source or forecast error, or an unknown zone."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "intensity.csv"
        if raw is None:
            path.write_text(text, encoding="utf-8")
        else:
            path.write_bytes(raw)
        try:  # a CSV header without usable columns is refused when the source is built (at DAG parse time)
            source = FileSource(path, timezone=timezone)
        except OURS as exc:
            _event(f"refused at construction: {type(exc).__name__}")
            return
        for call in (lambda: source.fetch_now(zone, now, now + timedelta(hours=6), now=now), lambda: source.read_all(zone)):
            try:
                result = call()
            except (*OURS, UnknownZoneError) as exc:  # a zone column without this zone names the zone, not the data
                _event(f"refused: {type(exc).__name__}")
                continue
            _event("parsed")
            check_forecast(result, zone=zone, signal="average")
