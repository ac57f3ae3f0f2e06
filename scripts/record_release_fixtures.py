"""Record what this release writes into trigger rows and events, as fixtures the next releases must read.

    .venv/bin/python scripts/record_release_fixtures.py     # writes tests/fixtures/releases/<version>/

Run it once per release, before tagging, and commit the result; never edit an older release's
folder. ``tests/test_upgrade_compat.py`` rebuilds every recorded trigger with the current code, runs
it, and resumes a task with every recorded event: a gate waiting in the triggerer when the package
is upgraded must be resumed by the new code.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ["AIRFLOW__CARBON_SENSORS__RECORD_DECISIONS"] = "False"  # no decision trail written while recording

JUNE_15 = datetime(2026, 6, 15, tzinfo=UTC)
JAN_12_18H = datetime(2026, 1, 12, 18, tzinfo=UTC)

#: name -> (trigger kwargs as the worker builds them, when the gate was submitted).
GATES = {
    "sensor_de_forced_at_latest_start": (dict(
        zones=["DE"], deadline="2026-06-15T08:00:00+00:00", expected_duration_s=3600.0,
        submitted_at=JUNE_15.isoformat(), dag_id="catalog_enrichment", task_id="wait_for_clean_power",
        run_id="scheduled__2026-06-15T00:00:00+00:00", map_index=-1, try_number=1,
        waiting_until="2026-06-15T06:54:00+00:00",
    ), JUNE_15),
    "gated_gb_goes_in_the_night": (dict(
        zones=["GB"], deadline="2026-01-13T06:00:00+00:00", expected_duration_s=7200.0,
        submitted_at=JAN_12_18H.isoformat(), dag_id="search_index_rebuild", task_id="rebuild_index",
        run_id="scheduled__2026-01-12T18:00:00+00:00", map_index=-1, try_number=1,
        policy={"max_delay_s": None, "threshold": None, "min_saving_pct": 3.0, "safety_margin_s": None},
        on_source_error="run_now", check_interval_s=60.0, fallbacks=[{"kind": "embedded"}],
    ), JAN_12_18H),
    "two_zones_with_policy": (dict(
        zones=["DE", "GB"], deadline="2026-06-17T00:00:00+00:00", expected_duration_s=6 * 3600.0,
        submitted_at=JUNE_15.isoformat(), dag_id="weekly_retrain", task_id="retrain", run_id="manual__1",
        map_index=3, policy={"max_delay_s": 86400.0, "threshold": None, "min_saving_pct": 5.0, "safety_margin_s": 1800.0},
        on_source_error="embedded", check_interval_s=300.0,
    ), JUNE_15),
    "priced_gb_within_budget": (dict(
        zones=["GB"], deadline="2026-01-13T06:00:00+00:00", expected_duration_s=7200.0,
        submitted_at=JAN_12_18H.isoformat(), dag_id="batch_llm_inference", task_id="infer",
        run_id="scheduled__2026-01-12T18:00:00+00:00", map_index=-1, try_number=1,
        policy={"max_delay_s": None, "threshold": None, "min_saving_pct": 3.0, "safety_margin_s": None,
                "max_cost_increase_pct": 10.0},
        price_source={"kind": "tariff", "flat": None, "currency": "GBP", "tz": "Europe/London",
                      "bands": [["00:00", "07:00", 90.0], ["07:00", "23:00", 250.0], ["23:00", "24:00", 90.0]]},
        price_at_submission=250.0,
    ), JAN_12_18H),
}


def main() -> int:
    from carbon_sensors import __version__
    from carbon_sensors.gate import Decision
    from carbon_sensors.testing import FrozenClock
    from carbon_sensors.triggers.carbon import CarbonWindowTrigger

    out = ROOT / "tests" / "fixtures" / "releases" / __version__
    if out.exists() and "--force" not in sys.argv:
        print(f"{out} exists: a released version's fixtures are never rewritten (pass --force while unreleased)")
        return 1
    out.mkdir(parents=True, exist_ok=True)
    triggers, events = [], []
    for name, (kwargs, submitted) in GATES.items():
        trigger = CarbonWindowTrigger(**kwargs)
        classpath, serialized = trigger.serialize()
        trigger.clock = FrozenClock(submitted)
        event = asyncio.run(trigger.run().__anext__()).payload
        triggers.append({"name": name, "classpath": classpath, "kwargs": serialized, "event": event})
        events.append({"name": name, "event": event})
    failed = Decision("error", "SourceUnavailableError: the source did not answer after 3 tries", JUNE_15, "DE",
                      submitted_at=JUNE_15)
    events.append({"name": "error", "event": failed.to_event()})
    (out / "triggers.json").write_text(json.dumps({"version": __version__, "triggers": triggers}, indent=1) + "\n")
    (out / "events.json").write_text(json.dumps({"version": __version__, "events": events}, indent=1) + "\n")
    print(f"wrote {len(triggers)} triggers and {len(events)} events to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
