"""``simulate --flow``: a Prefect flow file's static gate, backtested as written (or its flag asked for)."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytest.importorskip("prefect", minversion="3.6")  # a bare name could be this folder, as a namespace package

from carbon_sensors.cli import main
from carbon_sensors.gated_files import load_gated_tasks
from carbon_sensors.prefect.flow_gates import served_schedules
from carbon_sensors.simulate_dag import build_workload

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data" / "carbon"
SPAN = (datetime(2021, 1, 1, tzinfo=UTC), datetime(2021, 2, 1, tzinfo=UTC))


def test_the_example_flow_is_read_with_its_served_cron():
    """@carbon_aware_flow's zone, After(hours=8) from the scheduled start, 1 h, and serve(cron='0 0 * * *')."""
    [task] = load_gated_tasks(ROOT / "example_dags" / "prefect_catalog_enrichment.py", "flow")
    assert (task.name, task.kind, task.gate.zones) == ("catalog-enrichment", "@carbon_aware_flow", ("DE",))
    workload, info = build_workload(task, *SPAN)
    assert info["runs"] == 32 and info["slack"] == "8h" and workload.duration_h == 1.0
    assert "cron '0 0 * * *'" in info["schedule"]


def test_a_flow_file_given_to_dag_is_read_as_a_flow():
    [task] = load_gated_tasks(ROOT / "example_dags" / "prefect_weekly_retrain.py", "dag")
    assert task.kind == "@carbon_aware_flow"


def test_only_literal_schedules_are_read():
    text = "f.serve(cron='0 18 * * *')\ng.deploy(interval=timedelta(hours=6))\nh.serve(cron=CRON)\n"
    assert served_schedules(text) == {"f": ("cron", "0 18 * * *"), "g": ("interval", 21600.0)}


def test_a_flow_without_a_schedule_asks_for_every(tmp_path, capsys):
    path = tmp_path / "flow.py"
    path.write_text(textwrap.dedent("""
        from datetime import timedelta
        from carbon_sensors import After
        from carbon_sensors.prefect import carbon_aware_flow

        @carbon_aware_flow(zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1))
        def nightly():
            return 1
    """))
    if not (SHARED / "DE_2021-2023_hourly.csv").exists():
        pytest.skip(f"real grid data not found at {SHARED}")
    rows = (SHARED / "DE_2021-2023_hourly.csv").read_text().splitlines()
    trace = tmp_path / "DE_sample.csv"
    trace.write_text("\n".join(rows[: 1 + 24 * 20]) + "\n")
    argv = ["simulate", "--flow", str(path), "--trace", str(trace), "--seeds", "1", "--workers", "1"]
    assert main(argv) == 2
    assert "--every" in capsys.readouterr().err
    assert main([*argv, "--every", "24h", "--json"]) == 0
    [info] = json.loads(capsys.readouterr().out)["gated"]
    assert info["equivalent_workload"] == "nightly:every=24h,duration=1h,slack=8h"


def test_a_flow_file_that_does_not_import_says_why(tmp_path, capsys):
    path = tmp_path / "broken.py"
    path.write_text("import prefect\nraise RuntimeError('no config')\n")
    assert main(["simulate", "--flow", str(path), "--trace", "x.csv"]) == 2
    assert "does not import: RuntimeError: no config" in capsys.readouterr().err
