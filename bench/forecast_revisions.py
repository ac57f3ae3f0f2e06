"""Do real forecast revisions continue? The NESO sample in ../shared/data/forecasts beside the backtest models.

Run from the repository root::

    .venv/bin/python bench/forecast_revisions.py [--sigma24 0.10] [--rho 0.9]

For each 30-minute slot of the sample, the revision is the change from the forecast issued at
01:01Z to the final one (``forecast_final_pt24h``, issued 24 h before the slot), and the remaining
error is the actual's departure from the final forecast (both relative). If revisions continued,
the two would be positively correlated, and a planner could extrapolate revisions.

The same statistics are measured on the backtest models (``mmfe``, the default, and ``fixed``) over
the GB trace of 2023 (../shared/data/carbon): every issue time at 01:00 UTC, 48 hourly targets, the
final forecast issued 24 h before each target. For targets 25-48 h ahead (where the final forecast
is the later one), ``mmfe`` revisions are news (correlation about 0, the sample's is -0.18), while
under ``fixed`` a target's error keeps its sign, so a revision predicts the rest (about +0.9). For
the first 24 h the "final" forecast is the earlier one and every series is negative by construction.
It prints a JSON document and, as the last line, a one-line summary. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT.parent / "shared" / "data" / "forecasts" / "GB_national_2023-03-15_fw48h_vs_actual.csv"
TRACE = ROOT.parent / "shared" / "data" / "carbon" / "GB_2021-2023_hourly.csv"

from carbon_sensors.forecast_models import FORECAST_MODELS, make_forecasts  # noqa: E402


def _stats(early: list[float], final: list[float], actual: list[float]) -> dict[str, object]:
    """Relative revision, remaining error and absolute errors for aligned early/final/actual values."""
    revision = [f / e - 1 for e, f in zip(early, final, strict=True)]
    remaining = [a / f - 1 for f, a in zip(final, actual, strict=True)]
    half = len(early) // 2
    spans = {"first_24h": slice(0, half), "next_24h": slice(half, None), "all_48h": slice(None)}
    def mape(xs: list[float]) -> float:
        return round(100 * statistics.fmean(abs(x / a - 1) for x, a in zip(xs, actual, strict=True)), 2)

    return {
        "correlation_revision_vs_remaining_error": {
            name: round(statistics.correlation(revision[s], remaining[s]), 3) for name, s in spans.items()
        },
        "mean_abs_pct_error_48h_forecast": mape(early),
        "mean_abs_pct_error_final_forecast": mape(final),
        "stdev_pct_revision": round(100 * statistics.pstdev(revision), 2),
    }


def model_stats(model: str, sigma24: float, rho: float) -> dict[str, object]:
    """The sample's statistics on ``model`` over GB 2023: issues at 01:00 UTC, 48 hourly targets each."""
    from carbon_sensors.simulate import load_trace

    actual = load_trace(TRACE).actual
    first = next(i for i, s in enumerate(actual.starts_s) if s >= 1672534800)  # 2023-01-01 01:00 UTC
    forecasts = make_forecasts(model, actual, sigma24=sigma24, rho=rho, seed=0)
    # Per lead, so the first and next 24 h keep the sample's split (leads 1-24 h, 25-48 h).
    by_lead: list[tuple[list[float], list[float], list[float]]] = [([], [], []) for _ in range(48)]
    for i in range(first, len(actual.values) - 49, 24):
        early = forecasts.issued_at(actual.starts_s[i]).values
        for lead in range(1, 49):
            target = i + lead
            final = forecasts.issued_at(actual.starts_s[target - 24]).values[24]
            by_lead[lead - 1][0].append(early[lead])
            by_lead[lead - 1][1].append(final)
            by_lead[lead - 1][2].append(actual.values[target])
    ordered = [[v for lead in by_lead for v in lead[k]] for k in range(3)]
    return {"issue_times": len(by_lead[0][0]), "targets": len(ordered[0]), **_stats(*ordered)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sigma24", type=float, default=0.10)
    parser.add_argument("--rho", type=float, default=0.9)
    args = parser.parse_args()
    if not SAMPLE.is_file():
        print(f"no forecast sample at {SAMPLE}: run from a checkout beside ../shared/data", file=sys.stderr)
        return 2
    with SAMPLE.open(newline="") as f:
        rows = list(csv.DictReader(f))
    early = next(c for c in rows[0] if c.startswith("forecast_issued_"))
    sample = _stats([float(r[early]) for r in rows], [float(r["forecast_final_pt24h"]) for r in rows],
                    [float(r["actual"]) for r in rows])
    out: dict[str, object] = {"sample": {"file": SAMPLE.name, "slots": len(rows), **sample}}
    if TRACE.is_file():
        out["models"] = {m: {"sigma24": args.sigma24, "rho": args.rho, **model_stats(m, args.sigma24, args.rho)}
                         for m in FORECAST_MODELS}
    print(json.dumps(out, indent=1))

    def line(name: str, s: dict) -> str:
        c = s["correlation_revision_vs_remaining_error"]
        return (f"{name}: corr first 24 h {c['first_24h']}, next 24 h {c['next_24h']}, all {c['all_48h']}; "
                f"MAPE 48 h {s['mean_abs_pct_error_48h_forecast']} %, final {s['mean_abs_pct_error_final_forecast']} %")

    parts = [line(f"NESO sample ({len(rows)} slots)", sample)]
    parts += [line(f"{m} sigma24={args.sigma24}", s) for m, s in out.get("models", {}).items()]  # type: ignore[union-attr]
    print("forecast_revisions: corr(revision 48h->final, remaining error) | " + " | ".join(parts)
          + " (> 0 would mean revisions continue)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
