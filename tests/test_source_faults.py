"""The fault matrix at the gate: a waiting trigger whose live source misbehaves never crashes, never
starts after its latest start, and says which fallback served."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from faulty_server import faulty_server, hang, send_json

from carbon_sensors import After, ConfigurationError
from carbon_sensors.gate import add_decision_listener, remove_decision_listener
from carbon_sensors.signals.cache import DEFAULT_CACHE
from carbon_sensors.testing import FrozenClock
from carbon_sensors.triggers.carbon import CarbonWindowTrigger

NOW = datetime(2023, 3, 15, 1, 10, tzinfo=UTC)
NATIONAL = json.loads((Path(__file__).parent / "fixtures" / "neso_national_fw48h.json").read_text())
FAULTS = {
    "hang": hang(1.0),
    "500 always": lambda n, h: send_json(h, {"error": "down"}, 500),
    "429 for an hour": lambda n, h: send_json(h, {}, 429, {"Retry-After": "3600"}),
    "401": lambda n, h: send_json(h, {"error": "unauthorised"}, 401),
    "truncated": lambda n, h: send_json(h, b'{"data": [{"from": "2023-03-15T01:00Z"'),
    "empty": lambda n, h: send_json(h, {"data": []}),
    "negative": lambda n, h: send_json(h, {"data": [{"from": "2023-03-15T01:00Z", "intensity": {"forecast": -40}}]}),
    "wrong unit (lbs/MWh)": lambda n, h: send_json(h, {"data": [{"from": "2023-03-15T01:00Z",
                                                                  "intensity": {"forecast": 4100}}]}),
    "stale": lambda n, h: send_json(h, {"data": [{"from": "2023-03-01T01:00Z", "intensity": {"forecast": 150}}]}),
    "ends before the deadline": lambda n, h: send_json(h, {"data": NATIONAL["data"][:2]}),
    "slow drip": lambda n, h: drip(h, json.dumps(NATIONAL).encode(), every_s=0.05),
}


def drip(handler, body: bytes, every_s: float) -> None:
    """A whole, valid answer, one byte at a time: each read is quick, the answer takes minutes."""
    import time

    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    try:
        for i in range(len(body)):
            handler.wfile.write(body[i:i + 1])
            handler.wfile.flush()
            time.sleep(every_s)
    except OSError:
        pass  # the client gave up: what it should do


def trigger(url, *, on_source_error="run_now", fallbacks=None, hours=3):
    return CarbonWindowTrigger(
        zones=["GB"], deadline=NOW + timedelta(hours=hours), expected_duration_s=3600, submitted_at=NOW,
        source={"kind": "neso", "base_url": url, "read_timeout_s": 0.2, "connect_timeout_s": 0.5,
                "max_retries": 1, "backoff_s": 0.01},
        on_source_error=on_source_error, fallbacks=fallbacks,
    )


def run(trig):
    trig.clock = FrozenClock(NOW)

    async def first():
        return [e.payload async for e in trig.run()]

    events = asyncio.run(first())
    assert len(events) == 1
    return events[0], trig.clock.now()


@pytest.fixture(autouse=True)
def _fresh_cache():
    DEFAULT_CACHE.clear()
    yield
    DEFAULT_CACHE.clear()


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("policy", ["run_now", "embedded"])
def test_every_fault_ends_in_a_start_by_the_latest_start(fault, policy, caplog):
    """Whatever the source does, the trigger yields one start decision no later than its latest start,
    and every decision the fault degraded comes with a warning naming the error and the fallback."""
    decisions = []
    add_decision_listener(decisions.append)
    try:
        with caplog.at_level(logging.WARNING, logger="carbon_sensors.gate"), faulty_server(FAULTS[fault]) as server:
            event, decided = run(trigger(server["url"], on_source_error=policy))
    finally:
        remove_decision_listener(decisions.append)
    degraded = [d for d in decisions if d.fallback is not None]
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "carbon_sensors.gate" and r.levelno == logging.WARNING
                and r.getMessage().startswith("carbon source failed")]
    assert bool(degraded) == (fault != "ends before the deadline"), decisions
    assert len(warnings) == len(degraded), (warnings, degraded)
    served_by = {"run_now": "starting now as on_source_error='run_now' says",
                 "embedded-profile": "planning on the embedded profile instead"}
    for message, decision in zip(warnings, degraded, strict=True):
        assert "Error" in message.split(";")[0], message  # the exception's type: what went wrong
        assert served_by[decision.fallback] in message, message
    latest = NOW + timedelta(hours=3) - timedelta(hours=1) - timedelta(minutes=6)
    assert event["status"] in ("go", "forced"), event
    assert decided <= latest
    if fault == "ends before the deadline":
        assert event["source"] == "neso"  # a short forecast is planned within what it covers
    elif policy == "run_now":
        assert event["forced_reason"] == "source_error" and decided == NOW
    else:
        assert event["fallback"] == "embedded-profile" and event["source"] == "embedded-profile"


@pytest.mark.parametrize("policy", ["run_now", "embedded"])
def test_a_source_gone_for_longer_than_the_slack_never_holds_the_gate(policy):
    """A server that has gone away (connections refused) for the whole wait: a start by the latest start."""
    with faulty_server(FAULTS["500 always"]) as server:
        url = server["url"]
    trig = trigger(url, on_source_error=policy)  # the port is closed now, and stays closed
    event, decided = run(trig)
    assert event["status"] in ("go", "forced") and decided <= NOW + timedelta(hours=3) - timedelta(hours=1, minutes=6)
    assert event["fallback"] == ("run_now" if policy == "run_now" else "embedded-profile")


def test_fail_policy_reports_the_fault_as_an_error_event():
    """With on_source_error='fail' the fault comes back as an error event the task raises."""
    with faulty_server(FAULTS["401"]) as server:
        event, _ = run(trigger(server["url"], on_source_error="fail"))
    assert event["status"] == "error" and "HTTP 401" in event["reason"]


def test_fallback_chain_is_tried_in_order(tmp_path):
    """When the primary fails, the fallbacks are tried in order and the record names the one that served."""
    from forecast_csv import write_forecast_csv

    path = write_forecast_csv(tmp_path / "gb.csv", datetime(2023, 3, 15, 0, 0, tzinfo=UTC), [300, 300, 250, 100, 300, 300])
    with faulty_server(FAULTS["500 always"]) as down, faulty_server(FAULTS["401"]) as refused:
        chain = [{"kind": "neso", "base_url": refused["url"]}, {"kind": "file", "path": str(path)}]
        event, decided = run(trigger(down["url"], fallbacks=chain))
    assert event["fallback"] == "file" and event["source"] == "file:gb.csv"
    assert event["status"] == "go" and decided == datetime(2023, 3, 15, 3, 0, tzinfo=UTC)


def test_conn_id_travels_in_the_spec_and_only_where_a_source_takes_credentials():
    """conn_id goes into a keyed source's spec; sources without credentials refuse it."""
    from carbon_sensors.operators.carbon import build_gate

    with pytest.raises(ConfigurationError, match="takes no connection"):
        build_gate(zone="GB", deadline=After(hours=4), expected_duration=timedelta(hours=1), source="neso",
                   conn_id="my_conn")



def test_one_source_serves_callers_on_successive_event_loops():
    """Sync callers (CLI, the run recorder, Prefect) run each fetch in a new event loop; the client follows."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from carbon_sensors.signals.http import HttpClient

    class KeepAlive(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # connections stay open in the client's pool between requests

        def do_GET(self) -> None:
            send_json(self, {"path": self.path})

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), KeepAlive)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        client = HttpClient(f"http://127.0.0.1:{server.server_address[1]}", what="test source")
        first = asyncio.run(client.get_json("/a"))
        second = asyncio.run(client.get_json("/b"))  # the first loop, and the connection it opened, are gone
    finally:
        server.shutdown()
        server.server_close()
    assert (first, second) == ({"path": "/a"}, {"path": "/b"})
