"""Prefect example: nightly catalog enrichment, gated with ``@carbon_aware_flow``.

Deployed on a daily 00:00 UTC schedule; the enriched catalog must be ready by 08:00 UTC and
enrichment takes about an hour. Each run waits for the cleanest hour in the German grid that still
meets the deadline by rescheduling itself (no worker is held while it waits), and starts anyway at
its latest start (06:54 UTC).

    python example_dags/prefect_catalog_enrichment.py          # one run now, in this process, simulated time
    python example_dags/prefect_catalog_enrichment.py serve    # serve the deployment on its schedule
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from prefect import task

from carbon_sensors import After
from carbon_sensors.prefect import carbon_aware_flow, current_decision


@task
def enrich_catalog() -> int:
    products = [{"sku": f"SKU-{i:05d}", "title": f"Product {i}"} for i in range(2_000)]
    enriched = [{**p, "keywords": p["title"].lower().split()} for p in products]
    return len(enriched)


@task
def publish(count: int, decision: dict) -> str:
    return f"published {count} products (started: {decision['status']}, zone {decision['zone']})"


@carbon_aware_flow(
    zone="DE",
    deadline=After(hours=8),  # 08:00 UTC for the 00:00 run: counts from the run's scheduled start
    expected_duration=timedelta(hours=1),
    name="catalog-enrichment",
    retries=2,  # for failures; the waiting never uses these up
)
def catalog_enrichment() -> str:
    return publish(enrich_catalog(), current_decision())


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        catalog_enrichment.serve(name="nightly", cron="0 0 * * *", tags=["carbon-aware", "team:catalog"])
    else:
        # Not deployed, the run waits in this process; on this simulated clock the wait passes at once.
        from carbon_sensors.testing import FrozenClock, use_clock

        with use_clock(FrozenClock(datetime.now(UTC))):
            print(catalog_enrichment())
