"""A test DAG exercising what the examples do not: a templated deadline, a mapped gated task,
a NextLocalTime deadline in a DST zone, and a poke-mode sensor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task

from carbon_sensors import NextLocalTime
from carbon_sensors.decorators import carbon_aware
from carbon_sensors.sensors import CarbonAwareSensor


@dag(schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC), catchup=False, tags=["test"])
def carbon_features():
    templated = CarbonAwareSensor(
        task_id="templated_gate",
        zone="DE",
        deadline="{{ data_interval_end.add(hours=8).isoformat() }}",
        expected_duration=timedelta(hours=1),
    )

    @carbon_aware(zone="DE", deadline=NextLocalTime("09:00", timezone="Europe/Berlin"),
                  expected_duration=timedelta(hours=1))
    @task
    def embed_shard(shard: int) -> int:
        return shard * 10

    poked = CarbonAwareSensor(
        task_id="poke_gate",
        zone="GB",
        deadline="{{ data_interval_end.add(hours=4).isoformat() }}",
        expected_duration=timedelta(hours=1),
        deferrable=False,
        min_saving_pct=99.0,  # never worth waiting: the poke returns at once
    )

    @task
    def total(values: list[int]) -> int:
        return sum(values)

    shards = embed_shard.expand(shard=[1, 2, 3])
    templated >> shards
    poked >> total(shards)


carbon_features()
