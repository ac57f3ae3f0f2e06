"""Every code block of the README and docs/ that is meant to run, run as written.

Python blocks run in a fresh interpreter, in a working directory that holds what the README tells a
user to have: ``example_dags/`` (as in a clone of this repository), the Data Portal trace ``DE_2023_hourly.csv`` (and GB's),
``my_forecast.csv``, ``grid_intensity.csv`` and a ledger with a few runs. ``carbon-sensors``
commands in shell blocks run with their output checked for its key line (``COMMANDS``); other shell
lines (pip, make, airflow) are installs and deployments, run by CI itself (``.ci/run``). JSON, INI
and TOML blocks are parsed and checked against the objects they document. Blocks that use Prefect
run in the Prefect suite (tests/prefect/test_docs_examples.py).
"""

from __future__ import annotations

import ast
import builtins
import configparser
import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from docs_blocks import ROOT, Block, blocks

BIN = Path(sys.executable).parent
ALL = blocks()

# Every carbon-sensors command the docs show, and the line its output must hold.
COMMANDS: dict[str, str] = {
    "carbon-sensors plan --zone GB --deadline +12h --duration 2h --at 2026-01-12T18:00Z":
        r"Waiting until 2026-01-13 03:00 UTC: the 2h window then averages 180 g/kWh",
    "carbon-sensors plan --zone DE --zone GB --deadline +48h --duration 6h --json": r'"status": "(wait|go)"',
    "carbon-sensors forecast --zone DE --hours 24h": r"DE · embedded-profile · average intensity",
    "carbon-sensors forecast --zone DE --source my_forecast.csv": r"DE · file:my_forecast.csv",
    "carbon-sensors simulate --trace DE_2023_hourly.csv --workload nightly_enrichment":
        r"nightly_enrichment .*carbon_sensors",
    "carbon-sensors simulate --trace DE_2023_hourly.csv --trace GB_2023_hourly.csv --workload all --sigma24 0.10 "
    "--seeds 3 --plot savings.png": r"weekly_retrain",
    'carbon-sensors simulate --trace DE_2023_hourly.csv --workload "etl:every=6h,duration=90m,slack=5h" --json':
        r'"workload": "etl"',
    "carbon-sensors simulate --trace DE_2023_hourly.csv --trace GB_2023_hourly.csv --zones-group DE,GB":
        r"weekly_retrain +carbon_sensors",
    "carbon-sensors simulate --trace DE_2023_hourly.csv --price-trace DE_2023_hourly_usd_per_mwh.csv --workload "
    "nightly_enrichment": r"cost_saving_pct +mean_price",
    "carbon-sensors simulate --dag example_dags/catalog_enrichment.py --trace DE_2023_hourly.csv":
        r"wait_for_clean_power +carbon_sensors",
    "carbon-sensors report --since 30d --by team --format table": r"search",
    "carbon-sensors reconcile": r"spooled records written to the ledger",
}
SLOW = ("simulate",)

PORTAL_HEADER = ["Datetime (UTC)", "Country", "Zone Name", "Zone Id", "Carbon Intensity gCO₂eq/kWh (direct)",
                 "Carbon Intensity gCO₂eq/kWh (life cycle assessment)", "Low Carbon Percentage",
                 "Renewable Percentage", "Data Source", "Data Estimated", "Data Estimation Method"]


def _portal_trace(shared: Path, zone: str, target: Path) -> None:
    """Two months of 2023 in the Data Portal's layout, from the real trace in ../shared/data."""
    with open(shared / "carbon" / f"{zone}_2021-2023_hourly.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["datetime_utc"].startswith(("2023-01", "2023-02"))]
    with open(target, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(PORTAL_HEADER)
        for r in rows:
            out.writerow([r["datetime_utc"], zone, zone, zone, r["ci_direct_gco2eq_per_kwh"],
                          r["ci_lifecycle_gco2eq_per_kwh"], r["low_carbon_pct"], r["renewable_pct"], "", "false", ""])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, airflow_db) -> Path:
    from carbon_sensors.ledger import Ledger
    from carbon_sensors.records import RunKey, RunRecord

    work = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "example_dags", work / "example_dags", ignore=shutil.ignore_patterns("__pycache__"))
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    (work / "my_forecast.csv").write_text("timestamp,carbon_intensity\n" + "".join(
        f"{(now + timedelta(hours=h)).isoformat()},{300 + 40 * ((h % 24) < 8)}\n" for h in range(-1, 48)))
    (work / "grid_intensity.csv").write_text("ts,gco2_per_kwh\n" + "".join(
        f"{(now + timedelta(hours=h)).isoformat()},{250 + h}\n" for h in range(-1, 48)))
    ledger_url = f"sqlite:///{work / 'ledger.db'}"
    with Ledger(ledger_url) as ledger:
        day = now - timedelta(days=1)
        ledger.finish(RunRecord(RunKey("airflow", "catalog_enrichment", "enrich_catalog", "r1"), status="success",
                                team="search", started_at=day, ended_at=day + timedelta(hours=1), energy_kwh=0.4,
                                carbon_g=120.0, counterfactual_carbon_g=180.0, saved_carbon_g=60.0,
                                carbon_signal="average"))
    shared = ROOT.parent / "shared" / "data"
    if (shared / "carbon").is_dir():
        for zone in ("DE", "GB"):
            _portal_trace(shared, zone, work / f"{zone}_2023_hourly.csv")
        prices = (shared / "prices" / "DE_2021-2023_hourly_usd_per_mwh.csv").read_text().splitlines()
        (work / "DE_2023_hourly_usd_per_mwh.csv").write_text("\n".join(
            [prices[0], *[r for r in prices[1:] if r.startswith(("2023-01", "2023-02"))]]) + "\n")
    return work


def _env(work: Path) -> dict[str, str]:
    return {**os.environ, "CARBON_SENSORS_LEDGER_URL": f"sqlite:///{work / 'ledger.db'}",
            "CARBON_SENSORS_SPOOL_DIR": str(work / "spool"), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def _unrun(block: Block) -> bool:
    return block.not_run is not None or block.uses_prefect


def _params(kinds: tuple[str, ...]):
    return [pytest.param(b, id=b.id) for b in ALL if b.lang in kinds and not _unrun(b)]


def test_every_block_is_run_or_says_why_not():
    known = {"python", "bash", "json", "ini", "toml", ""}
    for block in ALL:
        assert block.not_run != "", f"{block.id}: say why the block is not run"
        if block.lang not in known:
            assert block.not_run, f"{block.id}: a {block.lang!r} block is not run by any test; say why above its fence"


def test_every_command_shown_is_checked():
    shown = {c for b in ALL if b.lang in ("bash", "") and not b.not_run for c in _strip(b)}
    assert shown == set(COMMANDS), (f"commands with no expected line: {sorted(shown - set(COMMANDS))}; "
                                    f"expectations for commands no longer shown: {sorted(set(COMMANDS) - shown)}")


def _strip(block: Block) -> list[str]:
    return [" ".join(re.sub(r"\s+#.*$", "", c).split()) for c in block.commands()]


def _bound(tree: ast.AST) -> set[str]:
    """Every name a block binds: imports, definitions, arguments, assignment and loop targets."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names


@pytest.mark.parametrize("block", _params(("python",)))
def test_python_block_names_only_what_it_defines(block):
    """A block runs as written when pasted: no name it uses is left for the reader to define (``llm``)."""
    tree = ast.parse(block.body)
    known = _bound(tree) | set(dir(builtins))
    undefined = sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
                       - known)
    assert not undefined, f"{block.id} uses {', '.join(undefined)} without defining it"


@pytest.mark.parametrize("block", _params(("python",)))
def test_python_block_builds_tasks_inside_a_dag(block):
    """An operator or sensor a block builds is built in ``with DAG(...)`` or a ``@dag`` function, as in a DAG file."""
    def outside(node: ast.AST):
        if isinstance(node, ast.With | ast.FunctionDef | ast.AsyncFunctionDef):
            return  # a DAG context or a (@dag or @task) function: built when the DAG is
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            if re.search(r"(Operator|Sensor)$", name):
                yield f"{name}(...) at line {node.lineno}"
        for child in ast.iter_child_nodes(node):
            yield from outside(child)

    found = list(outside(ast.parse(block.body)))
    assert not found, f"{block.id} builds {', '.join(found)} outside a DAG"


def test_the_dagbag_folder_shown_is_in_a_fresh_clone():
    """The testing snippet's DagBag folder exists in the repository, as a fresh clone has it."""
    (block,) = [b for b in ALL if b.lang == "python" and "DagBag(" in b.body]
    folder = re.search(r"DagBag\(\"([^\"]+)\"\)", block.body)[1]
    assert (ROOT / folder).is_dir(), f"{block.id}: DagBag({folder!r}) names no folder of a fresh clone"
    assert any(p.suffix == ".py" for p in (ROOT / folder).iterdir())


def test_the_price_files_shown_say_where_to_get_them():
    """Like the carbon traces (the Data Portal), the price files the README names say where they come from."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = " ".join(text[text.index("### Price sources"):text.index("\n## ", text.index("### Price sources"))].split())
    assert "ENTSO-E Transparency Platform" in section and "transparency.entsoe.eu" in section
    assert "market operator" in section and "`datetime_utc,price_usd_per_mwh`" in section
    assert "#price-sources" in text[text.index("**What it would have cost.**"):]


@pytest.mark.parametrize("block", _params(("python",)))
def test_python_block_runs(block, workdir, tmp_path):
    script = tmp_path / f"{block.id.replace(':', '_')}.py"
    script.write_text(block.body)
    done = subprocess.run([sys.executable, "-c", f"import runpy; runpy.run_path({str(script)!r}, run_name='example')"],
                          cwd=workdir, env=_env(workdir), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{block.id} failed:\n{block.body}\n{done.stdout[-2000:]}{done.stderr[-4000:]}"


@pytest.mark.parametrize("command", [pytest.param(c, id=c[:60], marks=[pytest.mark.integration] if
                                                  any(s in c for s in SLOW) else []) for c in COMMANDS])
def test_command_prints_its_key_line(command, workdir):
    if "_2023_hourly.csv" in command and not (workdir / "DE_2023_hourly.csv").exists():
        pytest.skip("the real traces in ../shared/data are not here")
    done = subprocess.run(shlex.split(command), cwd=workdir, env=_env(workdir), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    expected = COMMANDS[command]
    assert re.search(expected, done.stdout), f"{command}: no line matching {expected!r} in\n{done.stdout[-3000:]}"


def test_the_decision_shown_has_the_decisions_fields():
    """The README's XCom decision names exactly the fields a real decision event carries."""
    import asyncio

    from carbon_sensors.gate import CarbonGate, decide

    (shown,) = [json.loads(b.body) for b in ALL if b.lang == "json" and '"status": "go"' in b.body]
    now = datetime(2026, 1, 13, 3, tzinfo=UTC)
    decision = asyncio.run(decide(CarbonGate(zones=("GB",), deadline=now + timedelta(hours=3),
                                             expected_duration=timedelta(hours=2)),
                                  now=now, deadline=now + timedelta(hours=3), submitted_at=now - timedelta(hours=9)))
    assert set(shown) == set(decision.to_event())


def test_the_record_shown_has_the_records_fields():
    from carbon_sensors.records import RunKey, RunRecord

    (block,) = [b for b in ALL if b.lang == "json" and '"energy_kwh"' in b.body]
    shown = json.loads(block.body.replace(", ...", ""))
    assert set(shown) <= set(RunRecord(RunKey("airflow", "d", "t", "r")).summary()), block.id


def test_ini_blocks_name_real_options():
    from carbon_sensors.provider_info import get_provider_info

    options = set(get_provider_info()["config"]["carbon_sensors"]["options"])
    for block in (b for b in ALL if b.lang == "ini"):
        parser = configparser.ConfigParser()
        parser.read_string(block.body)
        assert set(parser["carbon_sensors"]) <= options, block.id


def test_toml_price_tables_load(tmp_path):
    from carbon_sensors.accounting import Prices

    for block in (b for b in ALL if b.lang == "toml"):
        tomllib.loads(block.body)
        path = tmp_path / "prices.toml"
        path.write_text(block.body)
        prices = Prices.load(path)
        assert prices.usd_per_kwh is not None or prices.usd_per_kwh_series, block.id


def test_the_error_tree_shown_is_the_package_s():
    import carbon_sensors.errors as errors

    (tree,) = [b for b in ALL if b.lang == "" and "CarbonSensorsError" in b.body]
    names = [n for n in re.findall(r"\b([A-Z]\w+Error)\b", tree.body) if not hasattr(__builtins__, n)
             and n not in ("ValueError", "LookupError")]
    assert len(names) >= 10
    for name in names:
        cls = getattr(errors, name, None)
        assert isinstance(cls, type) and issubclass(cls, errors.CarbonSensorsError), f"{name} is not in carbon_sensors.errors"


def test_plan_json_speaks_the_decision_s_vocabulary(workdir):
    """`plan --json` carries every decision field but the decision-only ones, and the documented extras."""
    import asyncio

    from carbon_sensors.gate import CarbonGate, decide

    # A fixed --at: the embedded profile's answer depends on the hour (at 01:00 UTC in December it is `go`).
    done = subprocess.run(["carbon-sensors", "plan", "--zone", "DE", "--zone", "GB", "--deadline", "+48h",
                           "--duration", "6h", "--json", "--at", "2026-01-13T03:00Z"], cwd=workdir,
                          env=_env(workdir), capture_output=True, text=True, timeout=120, check=True)
    planned = json.loads(done.stdout)
    now = datetime(2026, 1, 13, 3, tzinfo=UTC)
    event = asyncio.run(decide(CarbonGate(zones=("GB",), deadline=now + timedelta(hours=3),
                                          expected_duration=timedelta(hours=2)),
                               now=now, deadline=now + timedelta(hours=3), submitted_at=now)).to_event()
    documented = {"best_now_zone", "intensity_best_now", "latest_start_reached", "deadline_at_risk",
                  "decision", "intensity_planned", "intensity_now", "expected_saving_pct"}
    assert set(planned) == (set(event) - {"fallback", "decided_at", "submitted_at"}) | documented
    assert planned["status"] == planned["decision"] == "wait"
    # Running now: the new name says `go`, the old alias keeps the old value.
    done = subprocess.run(["carbon-sensors", "plan", "--zone", "DE", "--zone", "GB", "--deadline", "+48h",
                           "--duration", "6h", "--json", "--at", "2026-12-04T01:00Z"], cwd=workdir,
                          env=_env(workdir), capture_output=True, text=True, timeout=120, check=True)
    running = json.loads(done.stdout)
    assert (running["status"], running["decision"], running["zone"]) == ("go", "run_now", "GB")
