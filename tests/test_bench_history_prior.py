"""bench/history_prior.py on a cut of the real traces: its replay is the package's replan; exact forecasts reach the oracle."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from carbon_sensors.planning import Policy
from carbon_sensors.simulate import WORKLOADS, SimulationSettings, load_trace, simulate

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "carbon"
HOURS = 24 * 40  # forty days across the turn of 2022, so both the tuning years and the held-out year have jobs

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/carbon")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("history_prior")
    for zone in ("DE", "GB"):
        with open(SHARED / f"{zone}_2021-2023_hourly.csv", newline="") as f:
            rows = list(csv.reader(f))
        first = next(i for i, row in enumerate(rows) if row[0].startswith("2022-12-05"))
        with open(root / f"{zone}_2021-2023_hourly.csv", "w", newline="") as f:
            csv.writer(f).writerows([rows[0], *rows[first:first + HOURS]])
    return root


def run(data: Path, *args: str) -> tuple[dict, str]:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "history_prior.py"), "--data", str(data),
                           "--workers", "1", "--seeds", "1", "--tune", "DE", *args],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out, summary = done.stdout.rsplit("\n", 2)[0], done.stdout.strip().splitlines()[-1]
    return json.loads(out), summary


def test_lam_zero_is_the_packages_replan_and_the_blend_is_scored_on_what_it_was_not_tuned_on(data):
    out, summary = run(data, "--prior", "day", "--prior-days", "3")
    assert summary.startswith("history_prior sigma24=0.1 seeds=1 prior_days=3: day/nightly: replan ")
    assert out["tune_zones"] == ["DE"] and out["holdout_year"] == 2023
    backtest = simulate([[load_trace(data / f"{z}_2021-2023_hourly.csv")] for z in ("DE", "GB")],
                        SimulationSettings(workloads=tuple(WORKLOADS.values()), strategies=("replan", "oracle"),
                                           seeds=1, policy=Policy(min_saving_pct=0.0)), workers=1)
    means = {(r["zone"], r["workload"], r["strategy"]): r["mean_intensity"] for r in backtest["results"]}
    compared = []
    for workload, table in out["priors"]["day"].items():
        for zone in ("DE", "GB"):
            now, oracle = means[(zone, workload, "now")], means[(zone, workload, "oracle")]
            if now - oracle < 1.0:
                continue  # too little to gain for a share to mean anything on 40 days
            replan = (now - means[(zone, workload, "replan")]) / (now - oracle)
            assert table["per_zone"][zone]["0.0"] == pytest.approx(replan, abs=1e-3), (workload, zone)
            compared.append((workload, zone))
        assert table["lam_chosen_on_tuning"] in out["lams"]
        assert set(table["held_out_zones"]) == {str(lam) for lam in out["lams"]}
        assert table["held_out_year"]["0.0"] is not None and table["tuning_zones_years"]["0.0"] is not None
    assert len(compared) >= 6, compared  # the check above compared most zones and workloads


def test_exact_forecasts_make_every_rule_the_oracle(data):
    out, _ = run(data, "--sigma24", "0", "--prior", "day", "--prior", "week")
    for kind in ("day", "week"):
        for workload, table in out["priors"][kind].items():
            for lam, share in table["all"].items():
                assert share == pytest.approx(1.0, abs=1e-9), (kind, workload, lam)


def test_no_traces_is_an_error(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "history_prior.py"), "--data", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no traces" in done.stderr
