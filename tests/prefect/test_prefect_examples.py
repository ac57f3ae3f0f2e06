"""The Prefect example flows run offline on the embedded profile and decide as their Airflow twins do."""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytest.importorskip("prefect", minversion="3.6")  # a bare name could be this folder, as a namespace package

from carbon_sensors.gate import add_decision_listener, remove_decision_listener
from carbon_sensors.testing import FrozenClock, use_clock

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"
JUNE_15 = datetime(2026, 6, 15, 0, 0, tzinfo=UTC)
NAMES = ("catalog_enrichment", "embedding_refresh", "search_index_rebuild", "weekly_retrain")


def load(name: str):
    """Import ``example_dags/prefect_<name>.py`` as a module."""
    path = EXAMPLES / f"prefect_{name}.py"
    spec = importlib.util.spec_from_file_location(f"prefect_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run(flow, when: datetime):
    """Run ``flow`` once in process at ``when`` (frozen clock); returns its result and the gate's decisions."""
    trail = []
    add_decision_listener(trail.append)
    try:
        with use_clock(FrozenClock(when)):
            result = flow()
    finally:
        remove_decision_listener(trail.append)
    return result, trail


@pytest.mark.parametrize("name", NAMES)
def test_prefect_examples_stay_out_of_the_airflow_dag_bag(name):
    """Airflow parses only files naming "airflow" and "dag"; Prefect examples share its folder, so never say "airflow"."""
    text = (EXAMPLES / f"prefect_{name}.py").read_text().lower()
    assert "carbon_sensors.prefect" in text and "airflow" not in text


def test_catalog_enrichment_waits_and_is_forced_at_its_latest_start(prefect_api):
    """Run at 00:00 in June, the flow waits for the German grid and is forced to start at 06:54."""
    result, trail = run(load("catalog_enrichment").catalog_enrichment, JUNE_15)
    assert trail[0].status == "wait" and trail[-1].status == "forced"
    assert trail[-1].forced_reason == "latest_start"
    assert trail[-1].decided_at == datetime(2026, 6, 15, 6, 54, tzinfo=UTC)
    assert result == "published 2000 products (started: forced, zone DE)"


def test_embedding_refresh_waits_in_process_at_most_an_hour(prefect_api):
    """The embedding task starts within its one-hour max_delay and returns its own result."""
    when = datetime(2026, 6, 15, 4, 0, tzinfo=UTC)
    result, trail = run(load("embedding_refresh").embedding_refresh, when)
    assert result == 64
    assert trail[-1].status in ("go", "forced")
    assert when <= trail[-1].decided_at <= datetime(2026, 6, 15, 5, 0, tzinfo=UTC)


def test_search_index_rebuild_waits_for_the_night_window(prefect_api):
    """In January the rebuild waits from 18:00 for Britain's windy 03:00 window, then runs."""
    result, trail = run(load("search_index_rebuild").search_index_rebuild, datetime(2026, 1, 12, 18, 0, tzinfo=UTC))
    assert result == "rebuilt shards 0-15"
    assert trail[0].status == "wait" and trail[-1].status == "go" and trail[-1].zone == "GB"
    assert trail[-1].decided_at == datetime(2026, 1, 13, 3, 0, tzinfo=UTC)
    assert trail[-1].to_event()["saving_pct"] == pytest.approx(30, abs=1)


def test_weekly_retrain_shifts_to_the_cleaner_zone(prefect_api):
    """The retraining flow picks Great Britain's clean midday window over Germany and trains there."""
    result, trail = run(load("weekly_retrain").weekly_retrain, JUNE_15)
    assert trail[-1].status == "go" and trail[-1].zone == "GB"
    assert trail[-1].decided_at == datetime(2026, 6, 15, 10, 0, tzinfo=UTC)
    # Against the best start-now option at submission, GB's (DE's was about twice as dirty), as in Airflow.
    event = trail[-1].to_event()
    assert event["intensity_at_submission"] < 300 and event["saving_pct"] > 20
    assert result.startswith("registered model trained in GB")
