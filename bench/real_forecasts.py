"""The planner on real forecasts: an archive built from the NESO sample, beside the forecast model.

Run from the repository root::

    .venv/bin/python bench/real_forecasts.py [--out archive.csv]

The sample in ../shared/data/forecasts holds, for 96 half-hour slots of 2023-03-15/16 in GB, the
48 h forecast issued at 01:01Z, the final forecast issued 24 h before each slot, and the actual.
From it, an archive of what a gate could have known: at each half hour from 01:01Z on, the
forecast for each later slot is its final forecast once that was issued (the slot is at most 24 h
away), else the 48 h forecast. Every issue time forecasts from its current slot to the end of the
sample, so the archive is non-anticipative by construction.

Every strategy (``now``, ``commit_once``, ``replan``, ``carbon_sensors``, ``oracle``) then runs on
the actual trace with that archive, and, beside it, with the ``mmfe`` model on the same two days
(3 seeds). Two days give only a few jobs per workload: a check that the real-forecast path works end
to end and a sense of direction, not a figure to tune on. Prints a JSON document and, as its last
line, a one-line summary.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT.parent / "shared" / "data" / "forecasts" / "GB_national_2023-03-15_fw48h_vs_actual.csv"
EARLY, FINAL = "forecast_issued_2023-03-15T01:01Z", "forecast_final_pt24h"
FIRST_ISSUE = datetime(2023, 3, 15, 1, 1, tzinfo=UTC)
SLOT = timedelta(minutes=30)
#: Workloads that fit in two days of half-hour slots: a job every 2 h from 02:00 or 03:00 (after the first
#: issue), 1 h long, 6 h or 12 h of slack.
WORKLOADS = ("short_slack:every=2h,duration=1h,slack=6h,offset=2h", "long_slack:every=2h,duration=1h,slack=12h,offset=3h")


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def build_archive(sample: Path, archive: Path, actual: Path) -> int:
    """Write the archive (``issued_at, target_time, value``) and the actual trace; return the issue count."""
    rows = list(csv.DictReader(sample.open(newline="")))
    slots = [(_utc(r["from_utc"]), float(r[EARLY]), float(r[FINAL]), float(r["actual"])) for r in rows]
    issues = 0
    with archive.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["issued_at", "target_time", "value"])
        issued = FIRST_ISSUE
        while issued + SLOT <= slots[-1][0]:
            for start, early, final, _ in slots:
                if start + SLOT <= issued:
                    continue  # a slot that has ended is no forecast
                known_final = start - timedelta(hours=24) <= issued
                out.writerow([f"{issued:%Y-%m-%dT%H:%MZ}", f"{start:%Y-%m-%dT%H:%MZ}", final if known_final else early])
            issues += 1
            issued += SLOT
    with actual.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["datetime_utc", "carbon_intensity"])
        for start, _, _, value in slots:
            out.writerow([f"{start:%Y-%m-%d %H:%M:%S}", value])
    return issues


def run(archive: Path | None, actual: Path, seeds: int) -> dict:
    from carbon_sensors.simulate import SimulationSettings, load_trace, parse_workload, simulate

    settings = SimulationSettings(workloads=tuple(parse_workload(w) for w in WORKLOADS), seeds=seeds,
                                  archive=None if archive is None else str(archive))
    return simulate([[load_trace(actual, zone="GB")]], settings, workers=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="keep the archive here (default: a temporary file)")
    args = parser.parse_args()
    if not SAMPLE.exists():
        print(f"the NESO sample is not at {SAMPLE}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        archive = args.out or Path(tmp) / "GB_archive.csv"
        actual = Path(tmp) / "GB_actual.csv"
        issues = build_archive(SAMPLE, archive, actual)
        real = run(archive, actual, seeds=1)
        model = run(None, actual, seeds=3)
    table = {
        label: {w: {s: v["fraction_of_oracle"] for s, v in by_strategy.items()} for w, by_strategy in out["summary"].items()}
        for label, out in (("archive", real), ("mmfe", model))
    }
    jobs = {r["workload"]: r["jobs"] for r in real["results"] if r["strategy"] == "now"}
    misses = {label: sum(r["caused_misses"] for r in out["results"]) for label, out in (("archive", real), ("mmfe", model))}
    print(json.dumps({"archive": real["forecast_model"], "issue_times": issues, "jobs": jobs,
                      "fraction_of_oracle": table, "caused_misses": misses}, indent=2))
    def line(label: str) -> str:
        return ", ".join(f"{w} {s.get('carbon_sensors')}/{s.get('replan')}/{s.get('commit_once')}"
                         for w, s in table[label].items())
    print(f"real archive ({issues} issue times, {sum(jobs.values())} jobs): carbon_sensors/replan/commit_once "
          f"fraction of oracle {line('archive')}; mmfe on the same days: {line('mmfe')}; caused misses {misses}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
