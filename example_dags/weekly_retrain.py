"""Weekly model retraining, free to run in either of two grid zones (spatial and temporal shifting).

Submitted every Monday 00:00 UTC, the new model must be ready by Wednesday 00:00 (48 hours);
training takes about six hours. The data may be processed in Germany or Great Britain, so the sensor
picks the cleanest six hours in either zone. It waits in the triggerer, holding no worker slot.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task

from carbon_sensors import After
from carbon_sensors.sensors import CarbonAwareSensor


@dag(
    schedule="0 0 * * 1",
    start_date=datetime(2026, 1, 5, tzinfo=UTC),
    catchup=False,
    tags=["carbon-aware", "team:ml"],
)
def weekly_retrain():
    window = CarbonAwareSensor(
        task_id="wait_for_clean_window",
        zones=["DE", "GB"],  # home zone first; the other is allowed by the data-residency policy
        deadline=After(hours=48),
        expected_duration=timedelta(hours=6),
        safety_margin=timedelta(hours=1),
    )

    @task
    def train(decision: dict) -> dict:
        weights = [0.0] * 16
        for step in range(200):
            weights = [w + 0.01 * ((i + step) % 5 - 2) for i, w in enumerate(weights)]
        return {"zone": decision["zone"], "loss": round(sum(abs(w) for w in weights) / len(weights), 4)}

    @task
    def register(result: dict) -> str:
        return f"registered model trained in {result['zone']} (loss {result['loss']})"

    register(train(window.output))


weekly_retrain()
