"""The DAG of tests/test_celery_deployment.py: mapped carbon-gated tasks over ten zones, run by Celery workers.

Its settings come from the environment of the Airflow processes the test starts: tasks per zone, the
zones, the deadline (an absolute time on the test's compressed clock), the local Electricity
Maps-shaped forecast server and the Airflow Connection holding its API key.

Where ``CS_CELERY_MARKERS`` names a directory, each try's first act is to append a line (its PID and
the time) to the file ``<task_id>.<map_index>.<try_number>`` there, synced to disk: the test tells a
try SIGKILLed before its work began (no file) from one killed while its work ran.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow.sdk import dag, get_current_context

from carbon_sensors import After
from carbon_sensors.decorators import carbon_aware

PER_ZONE = int(os.environ.get("CS_CELERY_PER_ZONE", "30"))
ZONES = os.environ.get("CS_CELERY_ZONES", "DE,FR,GB,ES,IT,NL,PL,SE,BE,AT").split(",")
DEADLINE = datetime.fromisoformat(os.environ["CS_HA_DEADLINE"]) if os.environ.get("CS_HA_DEADLINE") else After(hours=14)
SOURCE = {"kind": "electricitymaps", "base_url": os.environ.get("CS_HA_FORECAST_URL", "http://127.0.0.1:9"),
          "temporal_granularity": "15_minutes"}
CONN_ID = os.environ.get("CS_HA_CONN_ID", "carbon_celery_em")
WORK_S = float(os.environ.get("CS_CELERY_WORK_S", "2"))


def mark_try() -> None:
    """Append this try's line to its marker file (see the module docstring); nothing without CS_CELERY_MARKERS."""
    markers = os.environ.get("CS_CELERY_MARKERS")
    if not markers:
        return
    ti = get_current_context()["ti"]
    path = Path(markers) / f"{ti.task_id}.{ti.map_index}.{ti.try_number}"
    with open(path, "a", encoding="ascii") as marker:
        marker.write(f"{os.getpid()} {time.time():.3f}\n")
        marker.flush()
        os.fsync(marker.fileno())


@dag(dag_id="carbon_celery", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC), catchup=False,
     max_active_tasks=1024, tags=["team:scale"])
def carbon_celery():
    for zone in ZONES:
        @carbon_aware(zone=zone, deadline=DEADLINE, expected_duration=timedelta(minutes=30), source=SOURCE,
                      conn_id=CONN_ID, check_interval=timedelta(minutes=5), task_id=f"shard_{zone}",
                      retries=3, retry_delay=timedelta(seconds=2))
        def shard(i: int) -> int:
            mark_try()  # first: the work has begun
            time.sleep(WORK_S)  # real seconds: the worker SIGKILL must find tasks running
            return i * i

        shard.expand(i=list(range(PER_ZONE)))


carbon_celery()
