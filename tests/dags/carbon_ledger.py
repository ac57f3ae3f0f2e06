"""A test DAG for the run ledger: gated tasks that meter, record tokens, fail, or learn their duration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task

from carbon_sensors import After
from carbon_sensors.decorators import carbon_aware

NEVER_WAIT = {"zone": "DE", "deadline": After(hours=8), "min_saving_pct": 99.0}  # waiting is never worth 99 %


@dag(schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC), catchup=False,
     tags=["team:search", "project:catalog"], params={"cost_centre": "cc-42"})
def carbon_ledger():
    @carbon_aware(**NEVER_WAIT, expected_duration=timedelta(hours=1))
    @task
    def enrich() -> int:
        from carbon_sensors.metering import record_tokens

        total = sum(i * i for i in range(200_000))
        record_tokens(prompt=1200, completion=300, model="gpt-4o-mini")
        return total % 7

    @carbon_aware(**NEVER_WAIT)  # no expected_duration: learned from the ledger
    @task
    def learns() -> str:
        return "ran"

    @carbon_aware(**NEVER_WAIT, expected_duration=timedelta(minutes=30))
    @task
    def breaks() -> None:
        raise ValueError("the upstream file is empty")

    enrich()
    learns()
    breaks()


carbon_ledger()
