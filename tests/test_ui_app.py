"""The plugin's FastAPI app in-process: its routes, its data, its headers, and that it asks Airflow who is calling."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from carbon_sensors.ledger import DecisionEntry, Ledger
from carbon_sensors.plugins import app as app_module
from carbon_sensors.records import RunKey, RunRecord
from carbon_sensors.testing import FrozenClock

NOW = datetime(2026, 6, 15, 20, 17, tzinfo=UTC)
SCRIPT = "<script>alert(1)</script>"


def wait(dag_id, task_id, zone="DE", planned_h=5, hours=1, map_index=-1, decided_h=-1.0, **changes):
    values = dict(
        reason=f"Waiting for the cleanest {hours} h in {zone}", zone=zone, planned_start=NOW + timedelta(hours=planned_h),
        latest_start=NOW + timedelta(hours=planned_h + 4), deadline=NOW + timedelta(hours=planned_h + 6),
        next_check=NOW + timedelta(hours=planned_h), submitted_at=NOW - timedelta(hours=1),
        expected_duration_s=hours * 3600.0, intensity=200.0, intensity_at_submission=300.0, saving_pct=33.3,
        signal="average", source="embedded-profile", source_spec={"kind": "embedded"}, origin="triggerer",
    )
    values.update(changes)
    return DecisionEntry(RunKey("airflow", dag_id, task_id, "scheduled__1", 1, map_index),
                         NOW + timedelta(hours=decided_h), "wait", **values)


@pytest.fixture
def ledger_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger(url) as ledger:
        ledger.add_decisions([
            wait("catalog_enrichment", "wait_for_clean_power", planned_h=5),
            wait(SCRIPT, "embed", planned_h=9, hours=2),
            wait("weekly_retrain", "train", zone="GB", planned_h=3, hours=6),
            wait("catalog_enrichment", "enrich", map_index=3, planned_h=6),
        ])
        ledger.finish(RunRecord(
            RunKey("airflow", "nightly", "enrich", "scheduled__0"), status="success", team='=HYPERLINK("x")',
            started_at=NOW - timedelta(hours=3), ended_at=NOW - timedelta(hours=2), energy_kwh=1.5, carbon_g=300.0,
            saved_carbon_g=100.0, carbon_signal="average", zone="DE", cost_usd=0.12, forced=True,
            forced_reason="latest_start",
        ))
        ledger.finish(RunRecord(RunKey("airflow", "old", "task", "scheduled__-30"), status="success",
                                started_at=NOW - timedelta(days=30), ended_at=NOW - timedelta(days=30) + timedelta(hours=1)))
    return url


@pytest.fixture
def client(ledger_url):
    app = app_module.create_app(ledger_url, clock=FrozenClock(NOW), zones=["DE"])
    app.dependency_overrides[app_module.authenticated] = lambda: None
    return TestClient(app)


def table(html, name):
    return re.search(rf'<table class="{name}[^"]*">.*?</table>', html, re.S).group(0)


def test_every_route_depends_on_airflows_authentication():
    """The app's only dependency is Airflow's requires_authenticated() check, so every route needs a user."""
    from airflow.api_fastapi.core_api.security import requires_authenticated

    app = app_module.create_app("sqlite://")
    (dependency,) = app.router.dependencies
    assert dependency.dependency is app_module.authenticated
    assert app_module.authenticated.__qualname__ == requires_authenticated().__qualname__
    assert TestClient(app).get("/").status_code == 401
    assert TestClient(app).get("/runs.csv").status_code == 401


def test_the_overview_charts_zones_and_lists_waiting_tasks(client):
    """The overview charts the configured zone and the waiting tasks' zones, and lists every waiting task."""
    html = client.get("/").text
    assert [m for m in re.findall(r'<svg class="chart"[^>]*data-zone="([^"]+)"', html)] == ["DE", "GB"]
    de = re.search(r'<svg class="chart".*?data-zone="DE".*?</svg>', html, re.S).group(0)
    assert re.findall(r'class="planned-window" data-task="([^"]+)"', de) == ["wait_for_clean_power", "enrich [3]", "embed"]
    waiting = table(html, "waiting")
    assert waiting.count("<tr>") == 5  # the header and four tasks
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in waiting and SCRIPT not in html
    assert "task?dag_id=catalog_enrichment&amp;task_id=enrich&amp;run_id=scheduled__1&amp;map_index=3" in waiting


def test_recent_runs_and_totals_follow_the_period(client):
    """Runs and totals cover ?since: the last week has one run, the last 90 days two."""
    week = client.get("/").text
    assert table(week, "runs").count("<tr>") == 2
    assert "latest_start" in table(week, "runs") and "=HYPERLINK(&#34;x&#34;)" in table(week, "runs")
    quarter = client.get("/", params={"since": "90d"}).text
    assert table(quarter, "runs").count("<tr>") == 3
    assert ">old<" in table(quarter, "totals totals-dag")


def test_a_bad_period_is_explained_on_the_page(client):
    """An unreadable ?since shows a notice and the default week instead of an error page."""
    response = client.get("/", params={"since": "fortnight"})
    assert response.status_code == 200
    assert "cannot read the period" in response.text and 'value="7d"' in response.text


def test_the_task_view_takes_the_uis_unfilled_map_index(client):
    """The task instance view reads {MAP_INDEX} (left by the UI for unmapped tasks) as no map index."""
    html = client.get("/task", params={"dag_id": SCRIPT, "task_id": "embed", "run_id": "scheduled__1",
                                       "map_index": "{MAP_INDEX}"}).text
    assert "Waiting for the cleanest 2 h in DE" in html
    assert table(html, "trail").count("<tr>") == 2
    assert 'class="planned-window" data-task="embed"' in html
    assert SCRIPT not in html


def test_the_csv_has_the_pages_rows_with_formulas_neutralised(client):
    """runs.csv is an attachment with one row per run of the period, and a team starting with = quoted."""
    response = client.get("/runs.csv", params={"since": "7d"})
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["dag_id"] for r in rows] == ["nightly"]
    assert rows[0]["team"] == "'=HYPERLINK(\"x\")"
    totals = list(csv.DictReader(io.StringIO(client.get("/totals.csv", params={"by": "team"}).text)))
    assert totals[0]["team"] == "'=HYPERLINK(\"x\")" and totals[0]["runs"] == "1"
    assert client.get("/totals.csv", params={"by": "zone"}).status_code == 400
    assert client.get("/runs.csv", params={"since": "nope"}).status_code == 400


def test_pages_forbid_scripts_and_foreign_framing(client):
    """Every page says no script may run and only the Airflow UI's own origin may frame it."""
    headers = client.get("/").headers
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "frame-ancestors 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


def test_an_unreachable_ledger_is_a_notice_not_an_error_page(tmp_path):
    """When the ledger cannot be opened, the page says so and still draws the configured zone."""
    app = app_module.create_app(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'ledger.db'}", clock=FrozenClock(NOW),
                                zones=["GB"])
    app.dependency_overrides[app_module.authenticated] = lambda: None
    response = TestClient(app).get("/")
    assert response.status_code == 200
    assert "Cannot read the ledger" in response.text and 'data-zone="GB"' in response.text
    assert TestClient(app).get("/runs.csv").status_code == 503


def test_a_failing_source_falls_back_to_the_embedded_profile(client, ledger_url, tmp_path):
    """A chart whose source fails draws the embedded profile and says why."""
    app = app_module.create_app(ledger_url, clock=FrozenClock(NOW), zones=["DE"],
                                source={"kind": "file", "path": str(tmp_path / "absent.csv")})
    app.dependency_overrides[app_module.authenticated] = lambda: None
    with Ledger(ledger_url) as ledger:  # the waiting tasks' own specs would win: use a zone none waits in
        assert not [e for e in ledger.waiting(NOW) if e.zone == "ZA"]
    html = TestClient(app).get("/", params={"zone": "ZA"}).text
    za = re.search(r'<section class="zone" id="zone-ZA">.*?</section>', html, re.S).group(0)
    assert "showing the embedded profile instead" in za and 'class="intensity"' in za


def test_loading_the_plugin_imports_no_web_framework():
    """Every Airflow process loads plugins (each task's too), so the plugin module imports neither FastAPI nor the pages."""
    code = ("import sys, carbon_sensors.plugins.plugin\n"
            "print(sorted(m for m in ('fastapi', 'carbon_sensors.plugins.app', 'carbon_sensors.plugins.render')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_the_mounted_app_builds_the_pages_on_first_request():
    """The ASGI app the plugin mounts builds the FastAPI app when a request comes, with Airflow's authentication."""
    from carbon_sensors.plugins.plugin import CarbonSensorsApp, CarbonSensorsPlugin

    (entry,) = CarbonSensorsPlugin.fastapi_apps
    assert entry["url_prefix"] == "/carbon-sensors" and isinstance(entry["app"], CarbonSensorsApp)
    assert TestClient(CarbonSensorsApp()).get("/").status_code == 401
