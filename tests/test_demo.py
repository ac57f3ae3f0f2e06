"""The quick-start demo runs end to end and prints energy and carbon people can read."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.integration
def test_the_demo_runs_and_prints_units_never_e_notation(tmp_path):
    """scripts/demo.py in a fresh Airflow home: three DAGs succeed; energy and carbon carry units, no 1.01e-09."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CARBON_SENSORS_"))}
    env["DEMO_HOME"] = str(tmp_path / "airflow")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"embedding_refresh\.embed: [\d.,]+ [µmkMG]?Wh, [\d.,]+ (µg|mg|g|kg|t) CO2e", out), out
    header = next(line for line in out.splitlines() if line.strip().startswith("dag_id"))
    assert re.search(r"\benergy_[µmkMG]?Wh\b", header) and re.search(r"\bcarbon_(µg|mg|g|kg|t)\b", header), header
    assert not re.search(r"\d[eE][+-]?\d", out), out
