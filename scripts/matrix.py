"""Build the wheel and sdist, check them, and install the wheel into a matrix of clean venvs.

    python3 scripts/matrix.py                 # every cell (make matrix); prints a table at the end
    python3 scripts/matrix.py --cells ci      # the reduced set CI runs (make matrix-ci)
    python3 scripts/matrix.py --cells airflow-3.3-py3.13,prefect-3.6-py3.11 --json matrix.json

Each cell is a fresh venv under ``.matrix/`` holding the built wheel and the frameworks named by the
cell, nothing else of ours. In each: ``pip check`` must be clean, then the smoke suite
(``tests/smoke/``) runs from a temporary directory, so ``carbon_sensors`` is imported from the venv's
site-packages and never from this checkout. Interpreters come from pyenv (``~/.pyenv/versions``) or
``python3.X`` on the PATH; a cell whose Python is missing is reported as not run.

Build: ``python -m build`` and ``twine check`` run in their own tools venv (``.matrix/tools``); the
wheel must hold the package data (embedded profiles and their licence, the UI templates, ``py.typed``).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".matrix"
DIST = WORK / "dist"

#: What the wheel must hold besides the modules.
WHEEL_DATA = (
    "carbon_sensors/py.typed",
    "carbon_sensors/signals/embedded_profiles.json",
    "carbon_sensors/signals/EMBEDDED_DATA_LICENSE.md",
    "carbon_sensors/plugins/templates/base.html.j2",
    "carbon_sensors/plugins/templates/chart.svg.j2",
    "carbon_sensors/plugins/templates/overview.html.j2",
    "carbon_sensors/plugins/templates/task.html.j2",
)
#: Build tools for the tools venv (build: the PyPA front end; twine: the PyPA metadata check).
TOOLS = ("build>=1.2", "twine>=5")
SMOKE = ROOT / "tests" / "smoke"
PROVIDERS = ("apache-airflow-providers-http", "apache-airflow-providers-postgres", "apache-airflow-providers-standard")
#: Prefect 3.9.1 pins certifi>=2026.10.19, newer than the package index has (docs: PLATFORM-FACTS). The cell
#: installs Prefect's frozen set with --no-deps, as make install-prefect does, and this one pip check line is expected.
PREFECT_KNOWN_CHECK = "prefect 3.9.1 has requirement certifi>=2026.10.19"


@dataclass
class Cell:
    name: str
    python: str
    kind: str  # "airflow" or "prefect"
    pins: tuple[str, ...]
    extra_after: tuple[str, ...] = ()  # installed second, with no downgrade of what the first install chose
    frozen: str | None = None  # a constraints file installed with --no-deps instead of resolving
    fallback_python: bool = False  # use the machine's python3 when this Python is missing
    result: dict = field(default_factory=dict)


#: Airflow 3.1.8 sets an attribute on cryptography's MultiFernet, which cryptography 51 (a Rust class) refuses:
#: every deferral then fails with "Database error occurred" ('MultiFernet' object has no attribute
#: 'is_encrypted'). Airflow's constraints pin an older cryptography; a clean resolve must pin it too.
AIRFLOW_31 = ("apache-airflow==3.1.8", "cryptography<51")

CELLS = [
    Cell("airflow-3.1-py3.11", "3.11", "airflow", AIRFLOW_31),
    Cell("airflow-3.1-py3.12", "3.12", "airflow", AIRFLOW_31, fallback_python=True),
    Cell("airflow-3.3-py3.11", "3.11", "airflow", ("apache-airflow==3.3.2",)),
    Cell("airflow-3.3-py3.12", "3.12", "airflow", ("apache-airflow==3.3.2",)),
    Cell("airflow-3.3-py3.13", "3.13", "airflow", ("apache-airflow==3.3.2",)),
    Cell("airflow-3.3-providers-py3.11", "3.11", "airflow", ("apache-airflow==3.3.2",), extra_after=PROVIDERS),
    # The oldest Prefect minor we claim. Prefect 3.6.29 and 3.7 allow fastapi<1.0, and fastapi 0.165 removed
    # Body(min_items=...) that their servers use: the cell pins the fastapi of the Prefect 3.9 set. Prefect
    # 3.6.29 failed its smoke suite even so (fastapi 0.150: 'PrefectRouter' object has no attribute 'routes'),
    # so the floor is 3.7.
    Cell("prefect-3.7-py3.11", "3.11", "prefect", ("prefect==3.7.8", "fastapi==0.150.0")),
    Cell("prefect-3.9-py3.11", "3.11", "prefect", ("prefect==3.9.1",), frozen="constraints/prefect.txt"),
]
#: CI's reduced set: the oldest Airflow we claim, on Python 3.12 (or the machine's python3).
CI_CELLS = ("airflow-3.1-py3.12",)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kwargs)


def find_python(version: str, fallback: bool) -> str | None:
    """An interpreter for ``version`` ("3.12"): pyenv's, else ``python3.12`` on the PATH."""
    pyenv = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")))
    if pyenv:
        return pyenv[-1]
    found = shutil.which(f"python{version}")
    if found:
        return found
    return shutil.which("python3") if fallback else None


def venv(path: Path, python: str) -> Path:
    if path.exists():
        shutil.rmtree(path)
    run([python, "-m", "venv", str(path)])
    return path / "bin" / "python"


def build() -> tuple[Path, Path]:
    """Build the wheel and sdist with ``python -m build``, check them with twine and for package data."""
    tools = WORK / "tools" / "bin" / "python"
    if not tools.exists():
        venv(WORK / "tools", sys.executable)
        run([str(tools), "-m", "pip", "install", "--quiet", *TOOLS])
    if DIST.exists():
        shutil.rmtree(DIST)
    run([str(tools), "-m", "build", "--outdir", str(DIST), str(ROOT)])
    wheels, sdists = sorted(DIST.glob("*.whl")), sorted(DIST.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        raise SystemExit(f"expected one wheel and one sdist in {DIST}, found {wheels + sdists}")
    run([str(tools), "-m", "twine", "check", "--strict", str(wheels[0]), str(sdists[0])])
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    missing = [n for n in WHEEL_DATA if n not in names]
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
        missing.append("*.dist-info/licenses/LICENSE")
    if missing:
        raise SystemExit(f"the wheel {wheels[0].name} lacks {missing}")
    return wheels[0], sdists[0]


def freeze(python: Path) -> dict[str, str]:
    out = run([str(python), "-m", "pip", "list", "--format", "json"]).stdout
    return {p["name"].lower(): p["version"] for p in json.loads(out)}


def downgrades(before: dict[str, str], after: dict[str, str]) -> list[str]:
    from packaging.version import Version

    return [f"{name} {old} -> {after[name]}" for name, old in before.items()
            if name in after and Version(after[name]) < Version(old)]


def run_cell(cell: Cell, wheel: Path) -> dict:
    python = find_python(cell.python, cell.fallback_python)
    if python is None:
        return {"status": "not run", "why": f"no Python {cell.python} on this machine"}
    started = time.monotonic()
    py = venv(WORK / cell.name, python)
    pip = [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    result: dict = {"python": run([str(py), "-c", "import platform; print(platform.python_version())"]).stdout.strip()}
    try:
        run([*pip, "--upgrade", "pip"])
        if cell.frozen:
            run([*pip, "--no-deps", "-r", str(ROOT / cell.frozen)])
            run([*pip, "--no-deps", str(wheel)])
        else:
            run([*pip, f"{wheel}[{cell.kind}]", *cell.pins])
        if cell.extra_after:
            before = freeze(py)
            run([*pip, f"{wheel}[{cell.kind}]", *cell.pins, *cell.extra_after])
            after = freeze(py)
            if bad := downgrades(before, after):
                raise CellFailure("resolver downgrades: " + ", ".join(bad))
            result["providers"] = {n: after[n] for n in (p.lower() for p in cell.extra_after)}
        result["install_s"] = round(time.monotonic() - started, 1)
        versions = freeze(py)
        result["framework"] = f"{cell.kind} {versions.get('apache-airflow' if cell.kind == 'airflow' else 'prefect')}"
        check = subprocess.run([str(py), "-m", "pip", "check"], text=True, capture_output=True)
        problems = [line for line in check.stdout.splitlines() if line.strip() and not line.startswith("No broken")]
        unexpected = [line for line in problems if not line.startswith(PREFECT_KNOWN_CHECK)]
        result["pip_check"] = "clean" if not problems else "; ".join(problems)
        if unexpected:
            raise CellFailure(f"pip check: {'; '.join(unexpected)}")
        run([*pip, "pytest>=8"])
        smoke_started = time.monotonic()
        result["smoke"] = smoke(py, cell)
        result["smoke_s"] = round(time.monotonic() - smoke_started, 1)
        result["status"] = "passed"
    except CellFailure as exc:
        result.update(status="FAILED", why=str(exc))
    except subprocess.CalledProcessError as exc:
        result.update(status="FAILED", why=f"{' '.join(map(str, exc.cmd[:6]))}...: {(exc.stdout or '')[-3000:]}"
                      f"{(exc.stderr or '')[-3000:]}")
    result["total_s"] = round(time.monotonic() - started, 1)
    return result


class CellFailure(Exception):
    pass


def smoke(py: Path, cell: Cell) -> str:
    """Run the smoke suite from a temporary directory (so nothing is imported from this checkout)."""
    with tempfile.TemporaryDirectory(prefix="carbon-sensors-smoke-") as tmp:
        files = ["smoke_env.py", "test_wheel_common.py", f"test_wheel_{cell.kind}.py"]
        for name in files:
            shutil.copy(SMOKE / name, Path(tmp) / name)
        (Path(tmp) / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CARBON_SENSORS_", "PREFECT_"))}
        env.pop("PYTHONPATH", None)
        env.update(
            CARBON_SENSORS_WHEEL_SMOKE="1",
            CARBON_SENSORS_SMOKE_DAG=str(ROOT / "example_dags" / "catalog_enrichment.py"),
            CARBON_SENSORS_SMOKE_FLOW=str(ROOT / "example_dags" / "prefect_catalog_enrichment.py"),
        )
        proc = subprocess.run([str(py), "-m", "pytest", "-q", "-rs", *files[1:]], cwd=tmp, env=env, text=True,
                              capture_output=True, timeout=900)
        summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        if proc.returncode != 0 or "skipped" in summary:
            raise CellFailure(f"smoke suite: {proc.stdout[-4000:]}{proc.stderr[-2000:]}")
        return summary


def table(cells: list[Cell]) -> str:
    lines = ["| cell | Python | framework | pip check | smoke | install s | smoke s | result |",
             "|---|---|---|---|---|---|---|---|"]
    for c in cells:
        r = c.result
        lines.append(f"| {c.name} | {r.get('python', '-')} | {r.get('framework', '-')} | {r.get('pip_check', '-')} | "
                     f"{r.get('smoke', '-')} | {r.get('install_s', '-')} | {r.get('smoke_s', '-')} | {r['status']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="all", help="all, ci, none (build and check only), or comma-separated cell names")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    names = {c.name for c in CELLS}
    if args.cells in ("all", "ci", "none"):
        chosen = {"all": names, "ci": set(CI_CELLS), "none": set()}[args.cells]
    else:
        chosen = set(args.cells.split(","))
    if unknown := chosen - names:
        parser.error(f"unknown cells {sorted(unknown)}; known: {', '.join(c.name for c in CELLS)}")
    cells = [c for c in CELLS if c.name in chosen]
    WORK.mkdir(exist_ok=True)
    started = time.monotonic()
    wheel, sdist = build()
    print(f"built and checked {wheel.name} and {sdist.name} in {time.monotonic() - started:.0f} s", flush=True)
    for cell in cells:
        print(f"--- {cell.name} ...", flush=True)
        cell.result = run_cell(cell, wheel)
        print(f"    {cell.result['status']} in {cell.result['total_s']} s {cell.result.get('why', '')}", flush=True)
    if cells:
        print(table(cells))
    print(f"total {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({c.name: c.result for c in cells}, indent=1))
    failed = [c.name for c in cells if c.result["status"] == "FAILED"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
