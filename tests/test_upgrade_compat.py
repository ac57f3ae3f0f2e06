"""Upgrades keep waiting work alive: trigger rows and events of every release load and run in this one.

``tests/fixtures/releases/<version>/`` holds what each release wrote (``scripts/record_release_fixtures.py``).
A rolling upgrade mixes releases both ways, so rows from a newer release (unknown kwargs, unreadable
values) and events with a status this release does not know must start the task, never crash.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from carbon_sensors import __version__
from carbon_sensors.errors import GateError
from carbon_sensors.operators.carbon import finish
from carbon_sensors.testing import FrozenClock
from carbon_sensors.timeutil import parse_utc
from carbon_sensors.triggers.carbon import CarbonWindowTrigger
from carbon_sensors.wire import TRIGGER_KWARGS, UNREADABLE_EVENT, UNREADABLE_KWARGS

RELEASES = Path(__file__).parent / "fixtures" / "releases"
ROWS = [
    pytest.param(release.name, row, id=f"{release.name}-{row['name']}")
    for release in sorted(RELEASES.iterdir())
    for row in json.loads((release / "triggers.json").read_text())["triggers"]
]
EVENTS = [
    pytest.param(release.name, item["event"], id=f"{release.name}-{item['name']}")
    for release in sorted(RELEASES.iterdir())
    for item in json.loads((release / "events.json").read_text())["events"]
]


def rebuild(classpath: str, kwargs: dict):
    """What the triggerer does with a row: import the classpath and call it with the stored kwargs."""
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)(**kwargs)


def first_event(trigger, now: datetime) -> dict:
    trigger.clock = FrozenClock(now)
    return asyncio.run(trigger.run().__anext__()).payload


class FakeTask:
    dag_id, task_id = "dag", "task"
    log = logging.getLogger("fake-task")


def test_this_release_has_its_fixtures():
    """Every released version keeps its fixture folder, this one included (record it before tagging)."""
    assert (RELEASES / __version__ / "triggers.json").is_file()
    assert (RELEASES / __version__ / "events.json").is_file()


def test_the_kwargs_table_matches_the_trigger():
    """carbon_sensors.wire knows exactly the kwargs the trigger takes and writes. A gate without prices writes
    the kwargs an earlier release wrote (so a triggerer not yet upgraded reads it without a warning); one with
    a price source writes them all."""
    row = {"zones": ["DE"], "deadline": "2026-06-15T08:00:00+00:00", "expected_duration_s": 3600.0,
           "submitted_at": "2026-06-15T00:00:00+00:00"}
    carbon_only = CarbonWindowTrigger(**row)
    priced = CarbonWindowTrigger(**row, price_source={"kind": "tariff", "flat": 90.0, "currency": "EUR"},
                                 price_at_submission=90.0)
    assert tuple(priced.serialize()[1]) == TRIGGER_KWARGS
    assert tuple(carbon_only.serialize()[1]) == tuple(k for k in TRIGGER_KWARGS
                                                      if k not in ("price_source", "price_at_submission"))
    assert priced.gate.price_source.currency == "EUR" and priced.price_at_submission == 90.0


@pytest.mark.parametrize(("release", "row"), ROWS)
def test_a_recorded_row_rebuilds_and_decides_as_it_did(release, row):
    """The current trigger rebuilds from a release's row, runs, and reaches that release's decision."""
    trigger = rebuild(row["classpath"], row["kwargs"])
    assert trigger.unreadable is None
    event = first_event(trigger, parse_utc(row["kwargs"]["submitted_at"], "submitted_at"))
    recorded = row["event"]
    for key in ("status", "forced_reason", "zone", "planned_start", "latest_start", "deadline", "decided_at"):
        assert event[key] == recorded[key], key
    assert set(recorded) <= set(event), "an event only ever gains keys"


@pytest.mark.parametrize(("release", "row"), ROWS)
def test_a_row_from_a_newer_release_runs_without_its_unknown_kwargs(release, row, caplog, capsys):
    """Kwargs this release does not know are dropped with a warning, and the gate decides as before."""
    newer = {**row["kwargs"], "carbon_budget_g": 120.0, "priority": "gold"}
    with caplog.at_level(logging.WARNING):
        trigger = rebuild(row["classpath"], newer)
    logged = caplog.text + capsys.readouterr().out  # Airflow's structlog may print instead of logging
    assert "ignored 'carbon_budget_g' (written by a newer carbon-sensors)" in logged
    event = first_event(trigger, parse_utc(row["kwargs"]["submitted_at"], "submitted_at"))
    assert (event["status"], event["decided_at"]) == (row["event"]["status"], row["event"]["decided_at"])


def test_a_renamed_kwarg_is_read_under_its_new_name(monkeypatch):
    """A kwarg renamed after a release wrote it is read under the new name."""
    monkeypatch.setitem(importlib.import_module("carbon_sensors.wire").RENAMED_KWARGS, "check_every_s", "check_interval_s")
    row = ROWS[0].values[1]
    kwargs = {k: v for k, v in row["kwargs"].items() if k != "check_interval_s"} | {"check_every_s": 300.0}
    trigger = rebuild(row["classpath"], kwargs)
    assert trigger.serialize()[1]["check_interval_s"] == 300.0


def test_a_removed_kwarg_is_dropped(monkeypatch):
    """A kwarg an earlier release wrote and this one no longer reads is dropped, not a TypeError."""
    monkeypatch.setattr("carbon_sensors.wire.REMOVED_KWARGS", frozenset({"legacy_mode"}))
    row = ROWS[0].values[1]
    trigger = rebuild(row["classpath"], {**row["kwargs"], "legacy_mode": True})
    assert trigger.unreadable is None and "legacy_mode" not in trigger.serialize()[1]


@pytest.mark.parametrize("change", [
    {"source": {"kind": "grid_oracle", "region": "DE"}},      # a source kind from a newer release
    {"on_source_error": "queue"},                               # a value a newer release added
    {"deadline": "next tuesday"},                               # unparseable
    {"expected_duration_s": None},                              # a required kwarg removed
])
def test_a_row_this_release_cannot_read_starts_the_task_at_once(change):
    """An unreadable row yields one forced event naming the problem and what to upgrade, at once."""
    row = ROWS[0].values[1]
    trigger = rebuild(row["classpath"], {**row["kwargs"], **change})
    assert trigger.unreadable is not None
    now = datetime(2026, 6, 15, 1, tzinfo=UTC)
    event = first_event(trigger, now)
    assert event["status"] == "forced" and event["forced"] is True
    assert event["forced_reason"] == UNREADABLE_KWARGS
    assert event["decided_at"] == now.isoformat() and event["zone"] == "DE"
    assert "run the same carbon-sensors version on the triggerers as on the workers" in event["reason"]
    assert trigger.serialize() == (row["classpath"], {**row["kwargs"], **change}), "the row is handed back unchanged"
    assert finish(FakeTask(), event)["status"] == "forced", "the task starts"


@pytest.mark.parametrize(("release", "event"), EVENTS)
def test_a_task_resumes_with_a_recorded_event(release, event):
    """go and forced events start the task with the event as its decision; error events fail it, as they did."""
    if event["status"] == "error":
        with pytest.raises(GateError, match="the carbon gate failed"):
            finish(FakeTask(), event)
    else:
        assert finish(FakeTask(), event) == event


def test_an_event_status_from_a_newer_release_starts_the_task():
    """A status this release does not know is a forced start whose reason says so, never a lost task."""
    event = {"status": "go_elsewhere", "reason": "cleaner in GB", "zone": "GB", "forced": False}
    decision = finish(FakeTask(), event)
    assert decision["status"] == "forced" and decision["forced_reason"] == UNREADABLE_EVENT
    assert "'go_elsewhere'" in decision["reason"] and "upgrade carbon-sensors on the workers" in decision["reason"]
