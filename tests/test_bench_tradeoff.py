"""bench/tradeoff.py on a small cut of the real traces: its figures add up, and exact forecasts reach the optimum."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
HOURS = 24 * 12  # twelve days of DE, May 2023


def _cut(source: Path, target: Path, start: str) -> None:
    with open(source, newline="") as f:
        rows = list(csv.reader(f))
    first = next(i for i, row in enumerate(rows) if row[0].startswith(start))
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", newline="") as f:
        csv.writer(f).writerows([rows[0], *rows[first:first + HOURS]])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tradeoff")
    _cut(SHARED / "carbon" / "DE_2021-2023_hourly.csv", root / "carbon" / "DE_2021-2023_hourly.csv", "2023-05-01")
    _cut(SHARED / "prices" / "DE_2021-2023_hourly_usd_per_mwh.csv",
         root / "prices" / "DE_2021-2023_hourly_usd_per_mwh.csv", "2023-05-01")
    return root


def run(data: Path, *args: str) -> tuple[dict, str]:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "tradeoff.py"), "--data", str(data), "--workers", "1",
                           *args], capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    out, summary = done.stdout.rsplit("\n", 2)[0], done.stdout.strip().splitlines()[-1]
    return json.loads(out), summary


def test_exact_forecasts_reach_every_policys_own_optimum(data):
    out, summary = run(data, "--sigma24", "0", "--price-sigma24", "0")
    assert out["zones"] == ["DE"] and set(out["policies"]) == {"carbon_only", "cost_only", "carbon_within_0pct",
                                                              "carbon_within_10pct", "carbon_price_100"}
    for name, policy in out["policies"].items():
        for workload, row in policy["together"].items():
            assert row["caused_misses"] == 0
            if row["fraction_of_own_oracle"] is not None:
                assert row["fraction_of_own_oracle"] == pytest.approx(1.0, abs=1e-6), (name, workload)
            # One zone: the zones-together figures are that zone's.
            assert policy["per_zone"][workload]["DE"]["carbon_sensors"]["cost_saving_pct"] == pytest.approx(
                row["carbon_sensors"]["cost_saving_pct"])
    assert summary.startswith("tradeoff: 1 zones, 5 policies")


def test_the_policies_order_as_their_figures_say(data):
    """With noisy forecasts: the cost policy saves the most cost, carbon-only the most carbon (its oracle's)."""
    out, summary = run(data, "--policies", "carbon_only,cost_only,carbon_within_0pct")
    nightly = {name: p["together"]["nightly_enrichment"]["oracle"] for name, p in out["policies"].items()}
    assert nightly["cost_only"]["cost_saving_pct"] >= nightly["carbon_within_0pct"]["cost_saving_pct"] >= 0
    assert nightly["carbon_only"]["carbon_saving_pct"] >= nightly["carbon_within_0pct"]["carbon_saving_pct"]
    assert "fraction of own oracle" in summary
