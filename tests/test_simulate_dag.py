"""``simulate --dag``: a real DAG file's gated tasks, backtested with exactly their settings, and what it cannot infer."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from carbon_sensors import ConfigurationError
from carbon_sensors.cli import main
from carbon_sensors.gated_files import load_gated_tasks
from carbon_sensors.simulate_dag import Overrides, build_workload, simulate_gated

pytest.importorskip("airflow")

ROOT = Path(__file__).resolve().parent.parent
HEAD = """\
from datetime import UTC, datetime, timedelta
from airflow.sdk import dag, task
from carbon_sensors import After, CarbonGate, NextLocalTime, Policy
from carbon_sensors.decorators import carbon_aware
from carbon_sensors.operators import carbon_gated
from carbon_sensors.sensors import CarbonAwareSensor
START = datetime(2026, 1, 1, tzinfo=UTC)
"""
NIGHTLY = HEAD + """
@dag(schedule="0 0 * * *", start_date=START, catchup=False)
def nightly():
    CarbonAwareSensor(task_id="wait", zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1),
                      min_saving_pct=5, max_delay=timedelta(hours=6), threshold=120,
                      safety_margin=timedelta(minutes=20))
nightly()
"""
SPAN_2021 = (datetime(2021, 1, 1, tzinfo=UTC), datetime(2021, 3, 1, tzinfo=UTC))


def dag_file(tmp_path: Path, body: str, name: str = "my_dag.py") -> str:
    path = tmp_path / name
    path.write_text(body)
    return str(path)


def with_head(body: str) -> str:
    """A DAG file's text: the imports, then ``body`` (indented as in the test)."""
    return HEAD + textwrap.dedent(body)


def sample(shared_data: Path, tmp_path: Path, zone: str, days: int = 45) -> str:
    """The first ``days`` of a zone's real trace, as a trace file of that zone."""
    rows = (shared_data / "carbon" / f"{zone}_2021-2023_hourly.csv").read_text().splitlines()
    path = tmp_path / f"{zone}_sample.csv"
    path.write_text("\n".join(rows[: 1 + 24 * days]) + "\n")
    return str(path)


def run_json(capsys, *argv: str) -> dict:
    capsys.readouterr()
    assert main(["simulate", *argv, "--seeds", "1", "--workers", "1", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def error_of(capsys, *argv: str) -> str:
    capsys.readouterr()
    assert main(["simulate", *argv]) == 2
    return capsys.readouterr().err


def test_the_rows_are_those_of_a_direct_simulate_with_the_equivalent_workload(tmp_path, capsys, shared_data):
    """Zone, schedule, deadline, duration and the minimum saving read from the DAG give the numbers --workload gives."""
    trace = sample(shared_data, tmp_path, "DE")
    body = NIGHTLY.replace(", max_delay=timedelta(hours=6), threshold=120,\n"
                           "                      safety_margin=timedelta(minutes=20)", "")
    from_dag = run_json(capsys, "--dag", dag_file(tmp_path, body), "--trace", trace)
    [info] = from_dag["gated"]
    assert info["equivalent_workload"] == "wait:every=24h,duration=1h,slack=8h"
    assert (info["gate"], info["zones"], info["slack"], info["policy"]["min_saving_pct"]) == (
        "CarbonAwareSensor", ["DE"], "8h", 5)
    direct = run_json(capsys, "--workload", info["equivalent_workload"], "--min-saving-pct", "5", "--trace", trace)
    assert from_dag["results"] == direct["results"] and len(from_dag["results"]) == 5  # one row per strategy
    assert from_dag["summary"] == direct["summary"]


def test_the_whole_policy_reaches_the_planner(tmp_path, shared_data):
    """max_delay, threshold and safety_margin from the gate: the same rows as simulate() with that Policy."""
    from carbon_sensors.planning import Policy
    from carbon_sensors.simulate import SimulationSettings, load_trace, parse_workload, simulate

    trace = load_trace(sample(shared_data, tmp_path, "DE"))
    [task] = load_gated_tasks(dag_file(tmp_path, NIGHTLY))
    assert task.gate.policy == Policy(min_saving_pct=5, max_delay=timedelta(hours=6), threshold=120,
                                      safety_margin=timedelta(minutes=20))
    settings = SimulationSettings(workloads=(), seeds=1, strategies=("now", "carbon_sensors"))
    from_dag = simulate_gated([task], [trace], settings, workers=1)
    direct = simulate([[trace]], SimulationSettings(
        workloads=(parse_workload("wait:every=24h,duration=1h,slack=8h"),), seeds=1,
        strategies=("now", "carbon_sensors"), policy=task.gate.policy), workers=1)
    assert from_dag["results"] == direct["results"]
    assert from_dag["settings"]["policies"] == {"wait": task.gate.policy.to_dict()}


def test_every_kind_of_gate_is_found_with_its_settings(tmp_path):
    """A CarbonAwareSensor, an @carbon_aware task and a carbon_gated operator, on a timedelta schedule."""
    body = with_head("""
    from airflow.providers.standard.operators.bash import BashOperator
    @dag(schedule=timedelta(hours=6), start_date=START)
    def three():
        CarbonAwareSensor(task_id="sensor", zones=["DE", "GB"], deadline=After(hours=5),
                          expected_duration=timedelta(minutes=90))
        @carbon_aware(zone="GB", deadline=After(hours=4), expected_duration=timedelta(hours=1))
        @task
        def decorated():
            return 1
        decorated()
        carbon_gated(BashOperator)(task_id="bash", bash_command="true", carbon=CarbonGate(
            zones="GB", deadline=After(hours=6), expected_duration=timedelta(hours=2), policy=Policy(min_saving_pct=1)))
    three()
    """)
    tasks = {t.name: t for t in load_gated_tasks(dag_file(tmp_path, body))}
    assert {n: t.kind for n, t in tasks.items()} == {
        "sensor": "CarbonAwareSensor", "decorated": "@carbon_aware", "bash": "carbon_gated(BashOperator)"}
    assert tasks["sensor"].gate.zones == ("DE", "GB") and tasks["bash"].gate.policy.min_saving_pct == 1
    workload, info = build_workload(tasks["sensor"], *SPAN_2021)
    assert workload.duration_h == 1.5 and info["slack"] == "5h" and info["runs"] == 59 * 4 + 1
    assert workload.runs_s[:2] == ((SPAN_2021[0].timestamp(), SPAN_2021[0].timestamp() + 5 * 3600),
                                   (SPAN_2021[0].timestamp() + 6 * 3600, SPAN_2021[0].timestamp() + 11 * 3600))


MAPPED = with_head("""
@dag(schedule="0 0 * * *", start_date=START)
def mapped():
    @carbon_aware(zone="DE", deadline=After(hours=6), expected_duration=timedelta(hours=1))
    def shard(i: int) -> int:
        return i
    shard.expand(i=[1, 2, 3])
    CarbonAwareSensor.partial(task_id="wait", deadline=After(hours=8), expected_duration=timedelta(hours=1),
                              min_saving_pct=2).expand(zone=["DE", "GB", "DE"])
    carbon_gated(BashOperator).partial(task_id="bash", carbon=CarbonGate(
        zones="GB", deadline=After(hours=5), expected_duration=timedelta(hours=2))).expand(bash_command=["true", ":"])
mapped()
""").replace("from carbon_sensors import",
             "from airflow.providers.standard.operators.bash import BashOperator\nfrom carbon_sensors import")


def test_mapped_gated_tasks_are_read_one_gate_per_distinct_instance(tmp_path):
    """Mapped @carbon_aware tasks and carbon_gated operators share one gate; a mapped sensor's instances get theirs."""
    tasks = {t.name: t for t in load_gated_tasks(dag_file(tmp_path, MAPPED))}
    assert {n: (t.kind, t.gate.zones) for n, t in tasks.items()} == {
        "shard": ("@carbon_aware, mapped", ("DE",)), "wait[zone=DE]": ("CarbonAwareSensor, mapped", ("DE",)),
        "wait[zone=GB]": ("CarbonAwareSensor, mapped", ("GB",)), "bash": ("carbon_gated(BashOperator), mapped", ("GB",))}
    assert tasks["wait[zone=GB]"].gate.policy.min_saving_pct == 2 and tasks["bash"].gate.expected_duration == timedelta(hours=2)
    workload, info = build_workload(tasks["wait[zone=GB]"], *SPAN_2021)
    assert info["slack"] == "8h" and info["runs"] == 60 and workload.duration_h == 1
    assert [t.name for t in load_gated_tasks(dag_file(tmp_path, MAPPED), task_id="wait")] == ["wait[zone=DE]", "wait[zone=GB]"]


def test_a_sensor_mapped_over_values_made_at_run_time_is_refused_with_what_to_do(tmp_path, capsys):
    body = with_head("""
    @dag(schedule="@daily", start_date=START)
    def from_xcom():
        @task
        def zones():
            return ["DE", "GB"]
        CarbonAwareSensor.partial(task_id="wait", deadline=After(hours=8),
                                  expected_duration=timedelta(hours=1)).expand(zone=zones())
    from_xcom()
    """)
    err = error_of(capsys, "--dag", dag_file(tmp_path, body), "--trace", "unused.csv")
    assert "task wait is mapped over values another task makes at run time" in err and "--workload" in err, err


def test_a_mapped_instance_that_would_fail_at_run_time_is_named(tmp_path, capsys):
    """Airflow builds mapped sensors only when they run; the backtest builds them, and names the one that fails."""
    body = MAPPED.replace('expand(zone=["DE", "GB", "DE"])', 'expand(zone=["DE", "FR"])')
    err = error_of(capsys, "--dag", dag_file(tmp_path, body), "--trace", "unused.csv")
    assert "mapped task wait[zone=FR]: the embedded profile has no zone 'FR'" in err and err.count("\n") == 1, err


def test_a_mapped_dag_backtests_each_instance_on_its_zone(tmp_path, capsys, shared_data):
    traces = [sample(shared_data, tmp_path, zone) for zone in ("DE", "GB")]
    out = run_json(capsys, "--dag", dag_file(tmp_path, MAPPED), "--task", "wait", "--trace", traces[0],
                   "--trace", traces[1])
    assert {(g["workload"], tuple(g["zones"])) for g in out["gated"]} == {
        ("wait[zone=DE]", ("DE",)), ("wait[zone=GB]", ("GB",))}
    zones = {(r["workload"], r["zone"]) for r in out["results"] if r["strategy"] == "carbon_sensors"}
    assert zones == {("wait[zone=DE]", "DE"), ("wait[zone=GB]", "GB")}, zones


def test_a_local_schedule_and_deadline_keep_their_wall_clock_times_across_dst(tmp_path):
    """06:00 Berlin runs due by 12:00 Berlin: 05:00 UTC in winter, 04:00 UTC in summer, always 6 h of slack."""
    body = with_head("""
    import pendulum
    @dag(schedule="0 6 * * *", start_date=pendulum.datetime(2026, 1, 1, tz="Europe/Berlin"))
    def local():
        CarbonAwareSensor(task_id="wait", zone="DE", deadline=NextLocalTime("12:00", timezone="Europe/Berlin"),
                          expected_duration=timedelta(hours=1))
    local()
    """)
    [task] = load_gated_tasks(dag_file(tmp_path, body))
    workload, info = build_workload(task, datetime(2021, 3, 20, tzinfo=UTC), datetime(2021, 4, 5, tzinfo=UTC))
    hours = {datetime.fromtimestamp(s, UTC).hour for s, _ in workload.runs_s}
    assert hours == {5, 4} and info["slack"] == "6h"
    assert "NextLocalTime" in info["deadline"]


def test_a_template_of_the_run_dates_is_rendered_for_every_run(tmp_path):
    """'{{ data_interval_end.add(hours=6) }}' gives each run a deadline 6 h after its data interval end."""
    body = with_head("""
    @dag(schedule="@daily", start_date=START)
    def templated():
        CarbonAwareSensor(task_id="wait", zone="DE", deadline="{{ data_interval_end.add(hours=6) }}",
                          expected_duration=timedelta(hours=1))
    templated()
    """)
    [task] = load_gated_tasks(dag_file(tmp_path, body))
    workload, info = build_workload(task, *SPAN_2021)
    assert {d - s for s, d in workload.runs_s} == {6 * 3600} and info["runs"] == 60


def test_what_it_cannot_infer_it_asks_for_by_flag(tmp_path, capsys, shared_data):
    """No run times: --every; a template it cannot render or a fixed deadline: --slack; a learned duration: --duration."""
    trace = sample(shared_data, tmp_path, "DE", days=20)
    body = with_head("""
    from airflow.sdk import Asset
    @dag(schedule=None, start_date=START)
    def manual():
        CarbonAwareSensor(task_id="manual_wait", zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1))
    manual()
    @dag(schedule=[Asset("s3://bucket/orders")], start_date=START)
    def on_asset():
        CarbonAwareSensor(task_id="asset_wait", zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1))
    on_asset()
    @dag(schedule="@daily", start_date=START)
    def daily():
        CarbonAwareSensor(task_id="var_deadline", zone="DE", deadline="{{ var.value.cutoff }}",
                          expected_duration=timedelta(hours=1))
        CarbonAwareSensor(task_id="fixed_deadline", zone="DE", deadline=datetime(2031, 1, 1, tzinfo=UTC),
                          expected_duration=timedelta(hours=1))
        @carbon_aware(zone="DE", deadline=After(hours=8))
        @task
        def learned():
            return 1
        learned()
    daily()
    """)
    dag = dag_file(tmp_path, body)
    quick = ("--dag", dag, "--trace", trace, "--strategies", "now", "--seeds", "1", "--workers", "1")
    for task_id, needed, what in (("manual_wait", "--every", "schedule=None"), ("asset_wait", "--every", "assets"),
                                  ("var_deadline", "--slack", "'var' is undefined"),
                                  ("fixed_deadline", "--slack", "fixed moment 2031-01-01"),
                                  ("learned", "--duration", "expected_duration is None")):
        err = error_of(capsys, *quick, "--task", task_id)
        assert needed in err and what in err, err
        flag_value = {"--every": "24h", "--slack": "8h", "--duration": "1h"}[needed]
        assert main(["simulate", *quick, "--task", task_id, needed, flag_value]) == 0, task_id


def test_the_flags_override_what_the_file_says(tmp_path):
    """--every, --slack and --duration replace the schedule, the deadline and the duration."""
    [task] = load_gated_tasks(dag_file(tmp_path, NIGHTLY))
    workload, info = build_workload(task, *SPAN_2021, Overrides(slack=timedelta(hours=12), every=timedelta(hours=12),
                                                                duration=timedelta(hours=2)))
    assert info["runs"] == 59 * 2 + 1 and info["slack"] == "12h" and workload.duration_h == 2
    assert info["from_flags"] == ["--slack", "--every", "--duration"]
    with pytest.raises(ConfigurationError, match="--slack"):
        build_workload(task, *SPAN_2021, Overrides(slack=timedelta(hours=1)))


@pytest.mark.parametrize("body, said", [
    ("from airflow.sdk import dag\nimport no_such_module_for_carbon\n",
     "does not import: ModuleNotFoundError: No module named 'no_such_module_for_carbon'"),
    ("from airflow.sdk import dag\nraise RuntimeError('the config service is down')\n",
     "does not import: RuntimeError: the config service is down"),
    ("from airflow.sdk import task\nANSWER = 42\n", "defines no DAG"),
    (HEAD + "@dag(schedule='@daily', start_date=START)\ndef plain():\n    @task\n    def a():\n        return 1\n"
            "    a()\nplain()\n", "DAG plain in"),
])
def test_bad_files_say_what_is_wrong(tmp_path, capsys, body, said):
    """A file that does not import (its error's last line), one without a DAG, a DAG without gates."""
    err = error_of(capsys, "--dag", dag_file(tmp_path, body), "--trace", "unused.csv")
    assert said in err and err.count("\n") == 1, err  # one line, no traceback
    if "plain" in said:
        assert "no carbon-gated task" in err


def test_a_task_that_is_not_gated_lists_the_gated_ones(tmp_path, capsys):
    err = error_of(capsys, "--dag", dag_file(tmp_path, NIGHTLY), "--task", "publish", "--trace", "unused.csv")
    assert "--task publish names no gated task" in err and "the gated tasks are: wait" in err


def test_a_zone_without_a_trace_is_named(tmp_path, capsys, shared_data):
    trace = sample(shared_data, tmp_path, "GB", days=10)
    err = error_of(capsys, "--dag", dag_file(tmp_path, NIGHTLY), "--trace", trace)
    assert "runs in zone(s) DE, but no --trace is for DE" in err and "the traces are for GB" in err


def test_flags_that_the_file_replaces_are_refused(tmp_path, capsys):
    dag = dag_file(tmp_path, NIGHTLY)
    assert "--workload" in error_of(capsys, "--dag", dag, "--workload", "all", "--trace", "x.csv")
    assert "go with --dag or --flow" in error_of(capsys, "--slack", "8h", "--trace", "x.csv")


def test_a_flow_file_without_prefect_installed_says_so(tmp_path, capsys):
    """In an environment without Prefect, --flow (or a Prefect file given to --dag) names what to install."""
    from importlib.metadata import PackageNotFoundError, version

    try:  # not `import prefect`: with tests/ on sys.path, tests/prefect imports as a namespace package
        version("prefect")
    except PackageNotFoundError:
        pass
    else:
        pytest.skip("Prefect is installed here (tests/prefect cover --flow)")
    flow = ROOT / "example_dags" / "prefect_catalog_enrichment.py"
    for flag in ("--flow", "--dag"):
        err = error_of(capsys, flag, str(flow), "--trace", "x.csv")
        assert "needs Prefect" in err and "pip install prefect" in err


def test_importing_the_core_module_imports_no_framework():
    import subprocess
    import sys

    code = ("import sys, carbon_sensors.simulate_dag, carbon_sensors.cli; "
            "assert 'airflow' not in sys.modules and 'prefect' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.integration
@pytest.mark.parametrize("example, spec", [
    ("catalog_enrichment.py", "wait_for_clean_power:every=24h,duration=1h,slack=8h"),
    ("search_index_rebuild.py", "rebuild_index:every=24h,duration=2h,slack=12h,offset=18h"),
])
def test_the_example_dags_over_three_years_match_their_workloads(capsys, shared_data, example, spec):
    """The example DAGs on their full real traces: the same rows as the equivalent --workload."""
    zone = "DE" if example.startswith("catalog") else "GB"
    trace = str(shared_data / "carbon" / f"{zone}_2021-2023_hourly.csv")
    from_dag = run_json(capsys, "--dag", str(ROOT / "example_dags" / example), "--trace", trace)
    assert from_dag["gated"][0]["equivalent_workload"] == spec
    assert from_dag["results"] == run_json(capsys, "--workload", spec, "--trace", trace)["results"]
