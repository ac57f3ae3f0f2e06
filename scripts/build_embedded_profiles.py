"""Build the embedded hour-of-day by month carbon-intensity profiles shipped in the package.

Run once from the repository root when the source data changes:

    python scripts/build_embedded_profiles.py ../shared/data/carbon

It reads the hourly Electricity Maps traces (2021-2023, life-cycle factors, UTC hours) and writes
carbon_sensors/signals/embedded_profiles.json: for each zone, 12 months x 24 UTC hours of mean
intensity in gCO2eq/kWh. The file keeps its attribution (ODbL) next to the numbers.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

COLUMN = "ci_lifecycle_gco2eq_per_kwh"
OUT = Path(__file__).resolve().parent.parent / "carbon_sensors" / "signals" / "embedded_profiles.json"


def build(data_dir: Path) -> dict:
    zones: dict[str, list[list[float]]] = {}
    for path in sorted(data_dir.glob("*_2021-2023_hourly.csv")):
        zone = path.name.removesuffix("_2021-2023_hourly.csv")
        sums = [[0.0] * 24 for _ in range(12)]
        counts = [[0] * 24 for _ in range(12)]
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                stamp = row["datetime_utc"]  # "YYYY-MM-DD HH:MM:SS", UTC
                month, hour = int(stamp[5:7]) - 1, int(stamp[11:13])
                sums[month][hour] += float(row[COLUMN])
                counts[month][hour] += 1
        zones[zone] = [
            [round(sums[m][h] / counts[m][h], 1) for h in range(24)] for m in range(12)
        ]
    if not zones:
        raise SystemExit(f"no *_2021-2023_hourly.csv files in {data_dir}")
    return {
        "format": 1,
        "description": "Mean grid carbon intensity by month (index 0 = January) and UTC hour of day.",
        "signal": "average",
        "unit": "gCO2eq/kWh",
        "emission_factors": "lifecycle",
        "period": "2021-01-01/2023-12-31",
        "attribution": (
            "Contains data from Electricity Maps (electricitymaps.com), published under the Open "
            "Database License (ODbL 1.0), as redistributed in HewlettPackard/sustain-cluster."
        ),
        "license": "ODbL-1.0",
        "zones": zones,
    }


if __name__ == "__main__":
    data_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/carbon")
    OUT.write_text(json.dumps(build(data_dir), separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
