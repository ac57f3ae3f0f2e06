"""bench/history_prior.py on cut real traces: its replay is the package's replan and gate; exact forecasts are the oracle."""

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


def test_its_rules_are_the_packages_replan_and_gate_and_are_scored_on_what_they_were_not_tuned_on(data):
    """lam 0 is the package's replan and departure_hour at lam 1 the gate (carbon_sensors), zone by zone."""
    out, summary = run(data, "--prior", "departure_hour")
    assert summary.startswith("history_prior sigma24=0.1 seeds=1 history_days=28 (held-out zones / held-out year; "
                              "chosen on DE before 2023): nightly: replan ")
    assert out["tune_zones"] == ["DE"] and out["holdout_year"] == 2023
    assert out["rules"] == ["replan@0", "departure_hour@0.5", "departure_hour@1", "departure_hour@2"]
    backtest = simulate([[load_trace(data / f"{z}_2021-2023_hourly.csv")] for z in ("DE", "GB")],
                        SimulationSettings(workloads=tuple(WORKLOADS.values()),
                                           strategies=("replan", "carbon_sensors", "oracle"),
                                           seeds=1, policy=Policy(min_saving_pct=0.0)), workers=1)
    means = {(r["zone"], r["workload"], r["strategy"]): r["mean_intensity"] for r in backtest["results"]}
    compared = []
    for workload, table in out["workloads"].items():
        for zone in ("DE", "GB"):
            now, oracle = means[(zone, workload, "now")], means[(zone, workload, "oracle")]
            if now - oracle < 1.0:
                continue  # too little to gain for a share to mean anything on 40 days
            for rule, strategy in (("replan@0", "replan"), ("departure_hour@1", "carbon_sensors")):
                share = (now - means[(zone, workload, strategy)]) / (now - oracle)
                assert table["per_zone"][zone][rule] == pytest.approx(share, abs=1e-3), (workload, zone, rule)
            compared.append((workload, zone))
        assert table["chosen_on_tuning"] in out["rules"]
        assert set(table["held_out_zones"]) == set(out["rules"])
        assert table["held_out_year"]["replan@0"] is not None and table["tuning_zones_years"]["replan@0"] is not None
    assert len(compared) >= 6, compared  # the check above compared most zones and workloads


def test_exact_forecasts_make_every_rule_the_oracle(data):
    out, _ = run(data, "--sigma24", "0")
    assert {rule.split("@")[0] for rule in out["rules"]} == {"replan", "usual", "departure", "departure_hour"}
    for workload, table in out["workloads"].items():
        for rule, share in table["all"].items():
            assert share == pytest.approx(1.0, abs=1e-9), (workload, rule)


def test_no_traces_is_an_error(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "history_prior.py"), "--data", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no traces" in done.stderr
