"""End to end in real processes: Prefect's engine runs the gated flow, and ``serve`` starts it again at its window.

Marked integration (slow: each process imports Prefect): CI runs them, ``pytest -m integration`` here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytest.importorskip("prefect", minversion="3.6")  # a bare name could be this folder, as a namespace package

from prefect_helpers import write_csv

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
STEP = timedelta(seconds=10)


def forecast_around_now(path: Path, clean_after: timedelta) -> datetime:
    """Ten-second slots from a minute ago, dirty until one clean slot ``clean_after`` from now; returns its start."""
    start = datetime.fromtimestamp(int(time.time()) // 10 * 10, UTC) - timedelta(minutes=1)
    clean = start + timedelta(minutes=1) + (clean_after // STEP + 1) * STEP
    values = [50 if start + STEP * i == clean else 400 for i in range(60)]
    write_csv(path, start, values, step=STEP)
    return clean


def environment(api_url: str, csv: Path) -> dict[str, str]:
    return {**os.environ, "PREFECT_API_URL": api_url, "CARBON_SENSORS_E2E_CSV": str(csv),
            "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PYTHONPATH": str(HERE)}


def test_prefects_engine_process_reschedules_the_run_and_exits_cleanly(client, prefect_api, tmp_path, monkeypatch):
    """`python -m prefect.engine` on an early run exits 0 and leaves it Scheduled at the clean slot."""
    from prefect.states import Scheduled

    csv = tmp_path / "e2e.csv"
    clean = forecast_around_now(csv, timedelta(seconds=60))
    monkeypatch.setenv("CARBON_SENSORS_E2E_CSV", str(csv))
    sys.modules.pop("e2e_flows", None)
    import e2e_flows

    deployment_id = e2e_flows.carbon_e2e.to_deployment(name="engine").apply()
    run = client.create_flow_run_from_deployment(deployment_id, state=Scheduled(scheduled_time=datetime.now(UTC)))
    done = subprocess.run([sys.executable, "-m", "prefect.engine", str(run.id)], cwd=ROOT,
                          env=environment(prefect_api, csv), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    stored = client.read_flow_run(run.id)
    assert stored.state.is_scheduled() and stored.state.state_details.scheduled_time == clean
    assert stored.labels["carbon-sensors.deferrals"] == 1


def test_serve_starts_the_self_deferred_run_again_and_it_completes(client, prefect_api, tmp_path):
    """Under `serve`, a run due now reschedules itself to the clean slot, is started again then, and completes."""
    from prefect.states import Scheduled

    csv = tmp_path / "e2e.csv"
    clean = forecast_around_now(csv, timedelta(seconds=45))
    serve = subprocess.Popen([sys.executable, str(HERE / "e2e_flows.py"), "serve"], cwd=ROOT,
                             env=environment(prefect_api, csv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deployment = None
        for _ in range(120):
            try:
                deployment = client.read_deployment_by_name("carbon-e2e/e2e")
                break
            except Exception:  # noqa: BLE001 - not registered yet
                time.sleep(1)
        assert deployment is not None, "serve never registered its deployment"
        run = client.create_flow_run_from_deployment(deployment.id, state=Scheduled(scheduled_time=datetime.now(UTC)))
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            stored = client.read_flow_run(run.id)
            if stored.state.is_final():
                break
            time.sleep(1)
    finally:
        serve.terminate()
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
    assert stored.state.is_completed(), (stored.state, serve.stderr.read()[-3000:] if serve.stderr else "")
    assert stored.labels["carbon-sensors.deferrals"] == 1
    assert stored.labels["carbon-sensors.planned_start"] == clean.isoformat()
    running = [s.timestamp for s in client.read_flow_run_states(run.id) if s.is_running()]
    assert len(running) == 2 and running[-1] >= clean - timedelta(seconds=1), (running, clean)
    assert stored.labels["carbon-sensors.status"] == "go"
