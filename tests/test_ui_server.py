"""The Carbon page in a real Airflow API server, signed in as a user and anonymously, seen by headless Chromium."""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from pathlib import Path

import httpx
import pytest

from carbon_sensors.ledger import DecisionEntry, Ledger
from carbon_sensors.plugins.plugin import ENTRY_POINT
from carbon_sensors.records import RunKey, RunRecord

pytestmark = pytest.mark.integration

SCRIPT_DAG = "<script>alert(1)</script>"
FORMULA_TEAM = '=HYPERLINK("x")'
CHROMIUM = [shutil.which(name) for name in ("chromium", "chromium-browser")]


def _entry_point_registered() -> bool:
    return any(ep.value == ENTRY_POINT for ep in entry_points(group="airflow.plugins"))


def _plugin_path(root: Path) -> str:
    """A directory that registers the plugin's entry point, for an environment installed before the entry point existed.

    Where the installed distribution already declares it, nothing is added (Airflow would load it twice).
    """
    if _entry_point_registered():
        return ""
    info = root / "carbon_sensors_plugin_entry_point-0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: carbon-sensors-plugin-entry-point\nVersion: 0\n")
    (info / "entry_points.txt").write_text(f"[airflow.plugins]\ncarbon_sensors = {ENTRY_POINT}\n")
    return str(root)


@pytest.fixture(scope="module")
def airflow_env(airflow_db, tmp_path_factory):
    """The environment of the Airflow processes: simple auth manager with admin:admin, the ledger, the plugin."""
    root = tmp_path_factory.mktemp("carbon-ui")
    env = os.environ.copy()
    env.update(
        AIRFLOW__CORE__AUTH_MANAGER="airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(32),
        AIRFLOW__CARBON_SENSORS__LEDGER_URL=f"sqlite:///{root / 'ledger.db'}",
        AIRFLOW__CARBON_SENSORS__UI_ZONES="DE",
    )
    if extra := _plugin_path(root / "entry-point"):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (extra, env.get("PYTHONPATH", "")) if p)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    """Stop a process this module started, by its PID (and its own process group if it does not go)."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the group is the process's own session (start_new_session)
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(airflow_env, tmp_path_factory):
    """A real `airflow api-server` on a free port of 127.0.0.1, as its own process, stopped by its PID afterwards."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("api-server") / "api-server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "-H", "127.0.0.1", "-p", str(port), "-w", "1"],
            env=airflow_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                pytest.fail(f"the API server exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the API server did not answer within 180 s:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        yield base
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def seeded(airflow_env):
    """The ledger the server reads: four waiting gates (one DAG id is markup), a re-planned one, and two runs."""
    now = datetime.now(UTC)

    def wait(dag_id, task_id, planned_h, hours=1, map_index=-1, decided_min=-30, **changes):
        values = dict(
            reason=f"Waiting {planned_h} h for the cleanest {hours} h", zone="DE",
            planned_start=now + timedelta(hours=planned_h), latest_start=now + timedelta(hours=planned_h + 3),
            deadline=now + timedelta(hours=planned_h + hours + 4), next_check=now + timedelta(hours=planned_h),
            submitted_at=now - timedelta(hours=1), expected_duration_s=hours * 3600.0, intensity=210.0,
            intensity_at_submission=320.0, saving_pct=34.4, signal="average", source="embedded-profile",
            source_spec={"kind": "embedded"}, origin="triggerer",
        )
        values.update(changes)
        key = RunKey("airflow", dag_id, task_id, "scheduled__ui", 1, map_index)
        return DecisionEntry(key, now + timedelta(minutes=decided_min), "wait", **values)

    with Ledger(airflow_env["AIRFLOW__CARBON_SENSORS__LEDGER_URL"]) as ledger:
        ledger.add_decisions([
            wait("catalog_enrichment", "wait_for_clean_power", 4, decided_min=-50, reason="first plan"),
            wait("catalog_enrichment", "wait_for_clean_power", 5, reason="Re-planned: a cleaner hour at +5 h"),
            wait(SCRIPT_DAG, "embed", 8, hours=2),
            wait("search_index_rebuild", "rebuild", 6),
            wait("catalog_enrichment", "enrich", 10, map_index=2),
        ])
        for dag_id, team in (("nightly", FORMULA_TEAM), (SCRIPT_DAG, "search")):
            ledger.finish(RunRecord(
                RunKey("airflow", dag_id, "enrich", "scheduled__ran"), status="success", team=team, zone="DE",
                started_at=now - timedelta(hours=3), ended_at=now - timedelta(hours=2), energy_kwh=1.5, carbon_g=300.0,
                saved_carbon_g=100.0, carbon_signal="average", cost_usd=0.12, forced=dag_id == "nightly",
                forced_reason="latest_start" if dag_id == "nightly" else None,
            ))
    return now


@pytest.fixture(scope="module")
def token(server, airflow_env):
    """An access token for admin, from POST /auth/token with the password the simple auth manager generated."""
    passwords = Path(airflow_env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    password = json.loads(passwords.read_text())["admin"]
    response = httpx.post(f"{server}/auth/token", json={"username": "admin", "password": password}, timeout=30)
    assert response.status_code in (200, 201), response.text
    return response.json()["access_token"]


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium driven by Playwright (no browser download)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download needed)")
    executable = next((path for path in CHROMIUM if path), None)
    if executable is None:
        pytest.skip("Chromium is not installed: apt-get install -y chromium")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable)
        yield chromium
        chromium.close()


def test_airflow_lists_the_plugin(airflow_env):
    """`airflow plugins` lists carbon_sensors with its app under /carbon-sensors and its two views."""
    out = subprocess.run([sys.executable, "-m", "airflow", "plugins", "-o", "json"], env=airflow_env, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    plugins = json.loads(out[out.index("["):])
    (plugin,) = [p for p in plugins if p["name"] == "carbon_sensors"]
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/carbon-sensors"
    views = {v["url_route"]: v for v in plugin["external_views"]}
    assert views["carbon"]["destination"] == "nav"
    assert views["carbon-plan"]["destination"] == "task_instance"
    assert "{DAG_ID}" in views["carbon-plan"]["href"] and "{RUN_ID}" in views["carbon-plan"]["href"]
    assert ENTRY_POINT in plugin["source"]


@pytest.mark.parametrize("path", ["/carbon-sensors/", "/carbon-sensors/task?dag_id=d&task_id=t&run_id=r",
                                  "/carbon-sensors/runs.csv", "/carbon-sensors/totals.csv?by=team"])
def test_anonymous_requests_are_refused(server, seeded, path):
    """Without a token every route answers 401, and a forged token 403; neither shows any data."""
    anonymous = httpx.get(server + path, timeout=30)
    forged = httpx.get(server + path, headers={"Authorization": "Bearer not-a-jwt"}, timeout=30)
    assert anonymous.status_code == 401
    assert forged.status_code == 403
    assert "enrich" not in anonymous.text + forged.text


def test_a_bearer_token_opens_the_page(server, seeded, token):
    """The API's bearer token is accepted, as by Airflow's own API."""
    response = httpx.get(f"{server}/carbon-sensors/", headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert response.status_code == 200
    assert "wait_for_clean_power" in response.text


def test_the_browser_sees_the_page_only_when_signed_in(server, seeded, token, browser, tmp_path, capsys):
    """Anonymous Chromium gets 401 and no data; with the UI's session cookie it sees the chart, the tables and no alert."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    response = page.goto(f"{server}/carbon-sensors/")
    assert response.status == 401
    assert page.locator("svg.chart").count() == 0 and "wait_for_clean_power" not in page.content()

    context.add_cookies([{"name": "_token", "value": token, "url": server}])
    response = page.goto(f"{server}/carbon-sensors/")
    assert response.status == 200
    chart = page.locator('svg.chart[data-zone="DE"]')
    windows = chart.locator("g.planned-window")
    assert windows.evaluate_all("gs => gs.map(g => g.dataset.task)") == [
        "wait_for_clean_power", "rebuild", "embed", "enrich [2]"]
    assert chart.locator('g.planned-window[data-task="embed"] text').text_content() == "embed"
    assert chart.locator("g.latest-start").count() == 4 and chart.locator("g.now-line").count() == 1
    assert "gCO2e/kWh" in chart.locator("text.axis-title").all_text_contents()

    rows = page.locator("table.waiting tbody tr")
    assert rows.count() == 4
    assert rows.nth(0).locator("td").nth(1).inner_text() == "wait_for_clean_power"
    assert "Re-planned: a cleaner hour at +5 h" in rows.nth(0).inner_text()
    script_row = page.locator("table.waiting tbody tr", has_text="embed")
    assert script_row.locator("td").nth(0).inner_text() == SCRIPT_DAG  # shown as text, not run
    assert page.locator("body script").count() == 0
    runs = page.locator("table.runs tbody tr")
    assert runs.count() == 2
    assert FORMULA_TEAM in page.locator("table.runs").inner_text()
    assert page.locator("table.totals-team").inner_text().count("search") == 1

    screenshot = tmp_path / "carbon-overview.png"
    page.screenshot(path=str(screenshot), full_page=True)
    with capsys.disabled():
        print(f"\nscreenshot of the Carbon page: {screenshot}")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="runs", exact=True).click()
    rows_csv = list(csv.DictReader(io.StringIO(Path(download_info.value.path()).read_text())))
    assert {r["team"] for r in rows_csv} == {"'" + FORMULA_TEAM, "search"}
    assert SCRIPT_DAG in {r["dag_id"] for r in rows_csv}

    task = page.goto(f"{server}/carbon-sensors/task?dag_id=catalog_enrichment&task_id=wait_for_clean_power"
                     "&run_id=scheduled__ui&map_index={MAP_INDEX}")
    assert task.status == 200
    assert page.locator("table.trail tbody tr").count() == 2
    assert "Re-planned" in page.locator("dl.plan").inner_text()
    assert dialogs == []
    context.close()


def test_the_airflow_ui_frames_the_page_in_its_navigation(server, seeded, token, browser, tmp_path, capsys):
    """Airflow's own UI shows the page at /plugin/carbon, in a frame that the session cookie signs in."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_cookies([{"name": "_token", "value": token, "url": server}])
    page = context.new_page()
    page.goto(f"{server}/plugin/carbon")
    frame = page.frame_locator('iframe[title="Carbon"]')
    frame.locator('svg.chart g.planned-window[data-task="embed"]').wait_for(timeout=90_000)
    assert frame.locator("table.waiting tbody tr").count() == 4
    screenshot = tmp_path / "carbon-in-airflow-ui.png"
    page.screenshot(path=str(screenshot))
    with capsys.disabled():
        print(f"\nscreenshot of the Carbon page framed in the Airflow UI: {screenshot}")
    context.close()
