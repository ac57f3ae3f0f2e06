"""Embedding refresh every 4 hours, gated with ``@carbon_aware`` on the TaskFlow task itself.

Each refresh must finish within 4 hours of its submission and takes about an hour. The task defers
itself until the cleanest hour in Great Britain's grid, then runs its body; no separate sensor.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task

from carbon_sensors import After
from carbon_sensors.decorators import carbon_aware


@dag(
    schedule="0 */4 * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["carbon-aware", "team:search"],
)
def embedding_refresh():
    @task
    def changed_documents() -> list[str]:
        return [f"doc-{i}" for i in range(64)]

    @carbon_aware(zone="GB", deadline=After(hours=4), expected_duration=timedelta(hours=1))
    @task(retries=2)
    def embed(documents: list[str]) -> int:
        from carbon_sensors.metering import record_tokens

        # A stand-in for a batch embedding call: a deterministic 8-dimensional vector per document.
        vectors = [[(hash(doc) >> shift) % 97 / 97 for shift in range(8)] for doc in documents]
        # Calls through an OpenAI-compatible httpx client are counted automatically; others say so by hand.
        record_tokens(prompt=sum(len(doc.split("-")) for doc in documents), model="text-embedding-3-small")
        return len(vectors)

    embed(changed_documents())


embedding_refresh()
