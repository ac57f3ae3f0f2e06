"""Prefect example: weekly model retraining, free to run in either of two grid zones.

Scheduled every Monday 00:00 UTC, the new model must be ready by Wednesday 00:00 (48 hours);
training takes about six hours. The data may be processed in Germany or Great Britain, so the gate
picks the cleanest six hours in either zone (home zone first) and the flow trains there. The run
reschedules itself to that window and holds no worker until then.

    python example_dags/prefect_weekly_retrain.py              # one run now, in this process, simulated time
    python example_dags/prefect_weekly_retrain.py serve        # serve the deployment on its schedule
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from prefect import task

from carbon_sensors import After
from carbon_sensors.prefect import carbon_aware_flow, current_decision


@task
def train(zone: str) -> dict:
    # A stand-in for the training job, run in the chosen zone's region.
    return {"zone": zone, "loss": 0.042}


@task
def register(model: dict) -> str:
    return f"registered model trained in {model['zone']} (loss {model['loss']})"


@carbon_aware_flow(
    zones=["DE", "GB"],  # home zone first; the other is allowed by the data-residency policy
    deadline=After(hours=48),
    expected_duration=timedelta(hours=6),
    name="weekly-retrain",
    retries=1,
)
def weekly_retrain() -> str:
    return register(train(current_decision()["zone"]))


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        weekly_retrain.serve(name="weekly", cron="0 0 * * 1", tags=["carbon-aware", "team:ml"])
    else:
        from carbon_sensors.testing import FrozenClock, use_clock

        with use_clock(FrozenClock(datetime.now(UTC))):
            print(weekly_retrain())
