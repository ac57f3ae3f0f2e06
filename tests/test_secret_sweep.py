"""A sentinel API key used by a real gated run is found nowhere: not on disk, in logs, XCom, trigger rows,
records, the UI's pages or the CLI's output, although the upstream API did receive it."""

from __future__ import annotations

import json
import os
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from faulty_server import faulty_server, send_json

pytestmark = pytest.mark.integration

SENTINEL = "sentinel-key-4c1d9e2b7f"
NOW = datetime(2023, 3, 15, 1, 10, tzinfo=UTC)  # the recorded Electricity Maps fixtures' hour
FIXTURES = Path(__file__).parent / "fixtures"

DAG = '''
"""A gated task whose Electricity Maps key comes from the Connection carbon_em_sweep."""
from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task

from carbon_sensors import After
from carbon_sensors.decorators import carbon_aware


@dag(schedule=None, start_date=datetime(2023, 1, 1, tzinfo=UTC), catchup=False, tags=["team:security"])
def carbon_secret_sweep():
    @carbon_aware(zone="DE", deadline=After(hours=6), expected_duration=timedelta(hours=1), conn_id="carbon_em_sweep",
                  source={{"kind": "electricitymaps", "base_url": "{url}", "max_retries": 0}})
    @task
    def enrich() -> str:
        return "done"

    enrich()


carbon_secret_sweep()
'''


def upstream(seen):
    forecast = json.loads((FIXTURES / "electricitymaps_forecast_DE.json").read_text())
    latest = json.loads((FIXTURES / "electricitymaps_latest_DE.json").read_text())

    def answer(n, handler):
        seen.append(handler.headers.get("auth-token"))
        send_json(handler, latest if "/latest" in handler.path else forecast)

    return answer


def files_containing(root: Path, needle: bytes) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            try:
                if needle in path.read_bytes():
                    hits.append(str(path))
            except OSError:
                continue
    return hits


def test_the_key_reaches_the_api_and_nothing_else(airflow_db, monkeypatch, tmp_path, caplog, capsys):
    """A deferring gated run keyed by a Connection: the key goes upstream and is found in no file, log or output."""
    from airflow.dag_processing.dagbag import DagBag

    from carbon_sensors.cli import main
    from carbon_sensors.plugins import app as app_module
    from carbon_sensors.plugins.trail import DecisionWriter, set_decision_writer
    from carbon_sensors.testing import FrozenClock, use_clock

    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    writer = DecisionWriter(ledger_url)  # this test's own trail writer, whatever earlier tests installed
    previous = set_decision_writer(writer)
    monkeypatch.setenv("AIRFLOW__CARBON_SENSORS__LEDGER_URL", ledger_url)
    monkeypatch.setenv("AIRFLOW_CONN_CARBON_EM_SWEEP", json.dumps(
        {"conn_type": "carbon_intensity", "password": SENTINEL, "extra": {"provider": "electricitymaps"}}))
    seen: list[str | None] = []
    dags_folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    dag_file = dags_folder / "carbon_secret_sweep.py"
    caplog.set_level("DEBUG")
    with faulty_server(upstream(seen)) as server:
        dag_file.write_text(textwrap.dedent(DAG.format(url=server["url"])))
        try:
            dag = DagBag(str(dag_file)).get_dag("carbon_secret_sweep")
            with use_clock(FrozenClock(NOW)):
                dag_run = dag.test(logical_date=NOW)
        finally:
            dag_file.unlink()
            writer.flush()  # the triggerer's decisions are written by a background thread
            set_decision_writer(previous)
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states == {"enrich": "success"}
    assert seen and set(seen) == {SENTINEL}  # the API got the key, from the Connection

    from carbon_sensors.ledger import Ledger

    ledger = Ledger(ledger_url)
    records, decisions = ledger.records(), ledger.decisions(dag_id="carbon_secret_sweep")
    assert len(records) == 1 and records[0].source_spec["conn_id"] == "carbon_em_sweep"
    assert decisions[0].status == "wait" and {d.origin for d in decisions} == {"worker", "triggerer"}

    # the UI's pages and downloads, for this run
    client_app = app_module.create_app(ledger_url, clock=FrozenClock(NOW), zones=["DE"])
    client_app.dependency_overrides[app_module.authenticated] = lambda: None
    from fastapi.testclient import TestClient

    client = TestClient(client_app)
    pages = [client.get(path, params=params).text for path, params in [
        ("/", {"since": "30d"}), ("/runs.csv", {"since": "30d"}), ("/totals.csv", {"since": "30d", "by": "team"}),
        ("/task", {"dag_id": "carbon_secret_sweep", "task_id": "enrich", "run_id": dag_run.run_id, "map_index": "-1"}),
    ]]
    assert "carbon_secret_sweep" in pages[0] + pages[1]

    # the CLI's output
    capsys.readouterr()
    assert main(["report", "--ledger", ledger_url, "--since", "3650d", "--by", "dag", "--format", "json"]) == 0
    assert main(["reconcile", "--ledger", ledger_url, "--no-reprice", "--json"]) == 0
    cli_output = capsys.readouterr().out
    assert "carbon_secret_sweep" in cli_output

    airflow_home = Path(os.environ["AIRFLOW_HOME"])
    assert files_containing(airflow_home, SENTINEL.encode()) == []  # metadata DB (XCom, trigger rows, logs), log files
    assert files_containing(tmp_path, SENTINEL.encode()) == []      # the ledger, its spool
    assert SENTINEL not in caplog.text
    assert not any(SENTINEL in page for page in pages)
    assert SENTINEL not in cli_output
    assert all(SENTINEL not in json.dumps(r.summary()) + repr(r) for r in records)
