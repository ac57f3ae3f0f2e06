"""The DAG of tests/test_ha_triggerers.py: many mapped carbon-gated tasks that wait in the triggerers.

Its settings come from the environment of the Airflow processes the test starts: the number of mapped
tasks, the deadline (an absolute time on the test's compressed clock), the local Electricity Maps-shaped
forecast server and the Airflow Connection holding its API key.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task

from carbon_sensors import After
from carbon_sensors.decorators import carbon_aware

TASKS = int(os.environ.get("CS_HA_TASKS", "200"))
DEADLINE = datetime.fromisoformat(os.environ["CS_HA_DEADLINE"]) if os.environ.get("CS_HA_DEADLINE") else After(hours=14)
SOURCE = {"kind": "electricitymaps", "base_url": os.environ.get("CS_HA_FORECAST_URL", "http://127.0.0.1:9"),
          "temporal_granularity": "15_minutes"}
CONN_ID = os.environ.get("CS_HA_CONN_ID", "carbon_ha_em")


@dag(dag_id="carbon_ha", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC), catchup=False,
     max_active_tasks=1024, tags=["team:ha"])
def carbon_ha():
    @carbon_aware(zone="GB", deadline=DEADLINE, expected_duration=timedelta(minutes=30), source=SOURCE,
                  conn_id=CONN_ID, check_interval=timedelta(minutes=5))
    @task
    def shard(i: int) -> int:
        return i * i

    shard.expand(i=list(range(TASKS)))


carbon_ha()
