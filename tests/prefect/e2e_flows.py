"""A gated flow for the end-to-end tests: run by Prefect's own engine and ``serve`` in separate processes.

Its forecast is the CSV named by ``CARBON_SENSORS_E2E_CSV`` (ten-second slots written by the test
around the real time), so the gate runs on the system clock, exactly as in production.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta

from carbon_sensors import After
from carbon_sensors.prefect import carbon_aware_flow, current_decision


@carbon_aware_flow(
    zone="DE",
    deadline=After(minutes=5),
    expected_duration=timedelta(seconds=10),
    safety_margin=timedelta(seconds=5),
    source={"kind": "file", "path": os.environ.get("CARBON_SENSORS_E2E_CSV", "e2e.csv"), "refresh_interval_s": None},
    name="carbon-e2e",
)
def carbon_e2e() -> str:
    return current_decision()["status"]


if __name__ == "__main__" and sys.argv[1:] == ["serve"]:
    carbon_e2e.serve(name="e2e", pause_on_shutdown=False)
