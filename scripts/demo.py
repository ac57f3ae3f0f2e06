"""The quick-start demo: real Airflow DAGs whose carbon gates really defer and resume, offline, no key.

    make demo            # or: .venv/bin/python scripts/demo.py

Runs three example DAGs with ``dag.test()`` on the embedded default profile (no network, no API key):
``catalog_enrichment`` waits in the triggerer and is force-started at its latest start,
``weekly_retrain`` waits for the cleanest six hours across two zones and goes, and
``embedding_refresh``'s ``@carbon_aware`` task gates itself, then meters and records its run. It ends
with the run ledger's report (``carbon-sensors report``). Time is compressed
with :class:`carbon_sensors.testing.CompressedClock` (a testing facility: one hour per second), so
hours of waiting take seconds; production gates use the system clock.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = Path(os.environ.get("DEMO_HOME") or ROOT / ".demo" / "airflow")
os.environ.update(
    AIRFLOW_HOME=str(HOME),
    AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "example_dags"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__LOGGING__LOGGING_LEVEL=os.environ.get("DEMO_AIRFLOW_LOG_LEVEL", "ERROR"),
)

SPEED = 3600.0  # demo seconds per real second
RUNS = [
    ("catalog_enrichment", datetime(2026, 6, 15, 0, 0, tzinfo=UTC)),
    ("weekly_retrain", datetime(2026, 6, 15, 0, 0, tzinfo=UTC)),
    ("embedding_refresh", datetime(2026, 6, 15, 8, 0, tzinfo=UTC)),
]


def main() -> int:
    HOME.mkdir(parents=True, exist_ok=True)
    if not (HOME / "airflow.db").exists():
        print("Preparing a local Airflow metadata database (SQLite) ...", flush=True)
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)

    from airflow.dag_processing.dagbag import DagBag

    from carbon_sensors.testing import CompressedClock, use_clock

    bag = DagBag(str(ROOT / "example_dags"))
    if bag.import_errors:
        print(f"example DAGs failed to import: {bag.import_errors}", file=sys.stderr)
        return 1
    from carbon_sensors.gate import add_decision_listener

    trail: list = []  # every decision the waiting trigger makes (each re-plan)
    add_decision_listener(trail.append)

    for dag_id, submitted in RUNS:
        dag = bag.get_dag(dag_id)
        print(f"\n=== {dag_id}: submitted {submitted:%Y-%m-%d %H:%M} UTC, embedded profile, clock x{SPEED:g}")
        trail.clear()
        started = time.monotonic()
        with use_clock(CompressedClock(submitted, SPEED)):
            run = dag.test(logical_date=submitted)
        elapsed = time.monotonic() - started
        sensor = next((ti for ti in run.get_task_instances() if ti.task_id.startswith("wait_for")), None)
        if sensor is not None:  # a sensor returns its decision; a gated task keeps it under carbon_decision
            decision = _xcom(run, sensor.task_id)
        else:
            decision = next(d for ti in run.get_task_instances() if (d := _xcom(run, ti.task_id, "carbon_decision")))
        waits = [d for d in trail if d.status == "wait"]
        if waits:
            print(f"Plan at submission: {waits[0].reason}")
            print(f"Deferred: the task handed its wait to the trigger and held no worker slot; the trigger "
                  f"re-planned {len(trail)} time(s), the last at {trail[-1].decided_at:%H:%M} UTC.")
        else:
            print("Plan at submission: start at once (no wait).")
        print(f"Decision: {decision['status'].upper()} at {decision['decided_at'][11:16]} UTC"
              f"{' (' + decision['forced_reason'] + ')' if decision.get('forced_reason') else ''}: {decision['reason']}")
        print(f"Run {run.state}: {', '.join(f'{ti.task_id}={ti.state}' for ti in run.get_task_instances())}"
              f" in {elapsed:.1f} s real time")
        if run.state != "success":
            return 1
    from carbon_sensors.ledger import Ledger
    from carbon_sensors.report import build_report, write_report
    from carbon_sensors.units import format_carbon, format_energy

    records = Ledger().records()
    print("\nRecorded runs (energy is estimated here: no RAPL counters):")
    for r in records:
        if r.energy_kwh is None or r.carbon_g is None:
            continue
        saved = f", {format_carbon(r.saved_carbon_g)} saved by waiting" if r.saved_carbon_g is not None else ""
        print(f"  {r.key.dag_id}.{r.key.task_id}: {format_energy(r.energy_kwh)}, {format_carbon(r.carbon_g)} CO2e "
              f"({r.carbon_signal} signal){saved}, {r.total_tokens} tokens")
    print("\nThe run ledger (carbon-sensors report --by dag):")
    write_report(build_report(records, by="dag"), "table")
    print("\nDone: the gates deferred, re-planned in the triggerer and resumed; one was force-started by its "
          "deadline; the gated task recorded its energy, tokens and carbon.")
    return 0


def _xcom(run, task_id: str, key: str = "return_value") -> dict | None:
    import json

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id, key=key).first()
        value = None if row is None else row.value
    return json.loads(value) if isinstance(value, str) else value


if __name__ == "__main__":
    sys.exit(main())
