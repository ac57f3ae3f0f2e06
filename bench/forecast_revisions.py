"""Do real forecast revisions continue? Measured on the NESO sample in ../shared/data/forecasts.

Run from the repository root::

    .venv/bin/python bench/forecast_revisions.py

For each 30-minute slot, the revision is the change from the forecast issued at 01:01Z to the final
one (``forecast_final_pt24h``), and the remaining error is the actual's departure from the final
forecast (both relative). If revisions
continued (as they do in the backtests' noise model, where a target hour's error is fixed across
issue times), the two would be positively correlated, and a planner could extrapolate revisions.
It prints a JSON document and, as the last line, a one-line summary. A measurement, not a test.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT.parent / "shared" / "data" / "forecasts" / "GB_national_2023-03-15_fw48h_vs_actual.csv"


def main() -> int:
    if not SAMPLE.is_file():
        print(f"no forecast sample at {SAMPLE}: run from a checkout beside ../shared/data", file=sys.stderr)
        return 2
    with SAMPLE.open(newline="") as f:
        rows = list(csv.DictReader(f))
    early = next(c for c in rows[0] if c.startswith("forecast_issued_"))
    revision = [float(r["forecast_final_pt24h"]) / float(r[early]) - 1 for r in rows]
    remaining = [float(r["actual"]) / float(r["forecast_final_pt24h"]) - 1 for r in rows]
    half = len(rows) // 2
    spans = {"first_24h": slice(0, half), "next_24h": slice(half, None), "all_48h": slice(None)}
    out = {
        "sample": SAMPLE.name,
        "slots": len(rows),
        "correlation_revision_vs_remaining_error": {
            name: round(statistics.correlation(revision[s], remaining[s]), 3) for name, s in spans.items()
        },
    }
    print(json.dumps(out, indent=1))
    c = out["correlation_revision_vs_remaining_error"]
    print(f"forecast_revisions: corr(revision 48h->final, remaining error) first 24 h {c['first_24h']}, "
          f"next 24 h {c['next_24h']}, all {c['all_48h']} ({len(rows)} slots; > 0 would mean revisions continue)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
