"""Nightly catalog enrichment, gated by a CarbonAwareSensor.

Submitted every day at 00:00 UTC; the enriched catalog must be ready by 08:00 UTC. Enrichment takes
about an hour, so the sensor waits for the cleanest hour in the German grid that still meets the
deadline, and starts it anyway at the latest start.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task

from carbon_sensors import After
from carbon_sensors.sensors import CarbonAwareSensor


@dag(
    schedule="0 0 * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["carbon-aware", "team:catalog"],
)
def catalog_enrichment():
    wait_for_clean_power = CarbonAwareSensor(
        task_id="wait_for_clean_power",
        zone="DE",
        deadline=After(hours=8),  # 08:00 UTC, after the data interval ends at 00:00
        expected_duration=timedelta(hours=1),
    )

    @task
    def enrich_catalog() -> int:
        products = [{"sku": f"SKU-{i:05d}", "title": f"Product {i}"} for i in range(2_000)]
        enriched = [{**p, "keywords": p["title"].lower().split()} for p in products]
        return len(enriched)

    @task
    def publish(count: int, decision: dict) -> str:
        return f"published {count} products (started: {decision['status']}, zone {decision['zone']})"

    count = enrich_catalog()
    wait_for_clean_power >> count
    publish(count, wait_for_clean_power.output)


catalog_enrichment()
