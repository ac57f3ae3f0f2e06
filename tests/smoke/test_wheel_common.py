"""The installed wheel: imported from site-packages, its package data present, the CLI working."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

from smoke_env import require_wheel_cell

require_wheel_cell()

import carbon_sensors  # noqa: E402

PACKAGE = Path(carbon_sensors.__file__).parent
CLI = Path(sys.executable).parent / "carbon-sensors"


def test_the_package_comes_from_site_packages_not_a_source_tree():
    """carbon_sensors is the installed wheel, at the version its metadata says."""
    assert "site-packages" in PACKAGE.parts, PACKAGE
    assert version("carbon-sensors") == carbon_sensors.__version__


def test_the_wheel_holds_its_package_data():
    """The embedded profile, its licence, the UI templates and py.typed are installed."""
    for name in ("py.typed", "signals/embedded_profiles.json", "signals/EMBEDDED_DATA_LICENSE.md",
                 "plugins/templates/overview.html.j2", "plugins/templates/task.html.j2"):
        assert (PACKAGE / name).is_file(), name
    assert json.loads((PACKAGE / "signals" / "embedded_profiles.json").read_text())


def test_the_console_script_prints_the_version():
    """`carbon-sensors --version` names the installed version."""
    out = subprocess.run([str(CLI), "--version"], check=True, capture_output=True, text=True).stdout
    assert carbon_sensors.__version__ in out


def test_simulate_runs_on_a_small_trace(tmp_path):
    """`carbon-sensors simulate` backtests a 3-week hourly trace with a daily cycle."""
    trace = tmp_path / "XX_trace.csv"
    start = datetime(2026, 3, 1, tzinfo=UTC)
    rows = ["datetime_utc,carbon_intensity"]
    for hour in range(21 * 24):
        value = 300 + 120 * math.sin(2 * math.pi * (hour % 24) / 24)
        rows.append(f"{(start + timedelta(hours=hour)):%Y-%m-%d %H:%M:%S},{value:.1f}")
    trace.write_text("\n".join(rows) + "\n")
    out = subprocess.run(
        [str(CLI), "simulate", "--trace", str(trace), "--workload", "nightly_enrichment", "--seeds", "1",
         "--workers", "1", "--json"],
        check=True, capture_output=True, text=True, timeout=300,
    ).stdout
    result = json.loads(out)
    rows = result["results"]
    gate = [r for r in rows if r["strategy"] == "carbon_sensors"]
    assert gate and all(r["jobs"] > 0 for r in gate), rows
    assert all(r["deadline_misses"] == 0 for r in gate), rows
