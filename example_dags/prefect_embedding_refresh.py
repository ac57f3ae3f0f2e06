"""Prefect example: embedding refresh every 4 hours, gated with ``@carbon_aware_task`` (a short in-process wait).

Each refresh must finish within 4 hours of its submission and takes about an hour. The embedding
task waits inside the running flow for a cleaner hour in Great Britain's grid, but never more than
one hour (``max_delay``): a wait in process holds the worker, so it is kept short. For longer waits
use ``@carbon_aware_flow``, which frees the worker.

    python example_dags/prefect_embedding_refresh.py           # one run now, in this process, simulated time
    python example_dags/prefect_embedding_refresh.py serve     # serve the deployment on its schedule
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from prefect import flow, task

from carbon_sensors import After
from carbon_sensors.prefect import carbon_aware_task


@task
def changed_documents() -> list[str]:
    return [f"doc-{i}" for i in range(64)]


@carbon_aware_task(zone="GB", deadline=After(hours=4), expected_duration=timedelta(hours=1),
                   max_delay=timedelta(hours=1), retries=2)
def embed(documents: list[str]) -> int:
    # A stand-in for a batch embedding call: a deterministic 8-dimensional vector per document.
    vectors = [[(sum(map(ord, doc)) >> shift) % 97 / 97 for shift in range(8)] for doc in documents]
    return len(vectors)


@flow(name="embedding-refresh")
def embedding_refresh() -> int:
    return embed(changed_documents())


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        embedding_refresh.serve(name="every-4h", cron="0 */4 * * *", tags=["carbon-aware", "team:search"])
    else:
        from carbon_sensors.testing import FrozenClock, use_clock

        with use_clock(FrozenClock(datetime.now(UTC))):
            print(embedding_refresh())
