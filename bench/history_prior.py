"""How much better than the plain re-plan can a non-anticipative rule do on the mmfe model? A measured bound.

Run from the repository root (reads ../shared/data/carbon; about 100-120 s per prior on 2 cores)::

    .venv/bin/python bench/history_prior.py                          # sigma24 0.10, 3 seeds, all four priors
    .venv/bin/python bench/history_prior.py --sigma24 0.2 --prior day
    .venv/bin/python bench/history_prior.py --prior day --prior-days 3   # the prior's error from 3 days

Under mmfe a forecast is the actual times the news still to come, so it is noisier than the actual,
and the lowest of many noisy hours is more often noise than a dip (the winner's curse): the plain
re-plan waits for dips that are not there. What a gate knows besides the forecast is the recent past.
The rule measured here blends each forecast hour with a persistence prior, weighting each by the
inverse of its variance, then re-plans as ``replan`` does:

    blend(T) = w * forecast_t(T) + (1 - w) * prior(T),   w = v_prior / (v_prior + lam * v_forecast(h))

- ``v_forecast(h) = sigma24^2 * h / 24``: the source's own stated error (the Forecast's ``error_24h``);
- ``prior = day``: the same hour one, two or three days before (the last one known at issue time),
  ``v_prior`` the mean squared relative error that persistence made over the ``--prior-days``
  (default 30) before issue;
- ``prior = week``: the mean of the same hour over the seven days before that, its error likewise;
- ``prior = recent``: the ``day`` prior with ``v_prior`` estimated from this forecast alone, by how
  far it and the prior disagree (``mean(((f - p) / f)^2) - mean(v_forecast)`` over the leads of each
  lag), so no more than three days of measured history are needed;
- ``prior = const``: the ``day`` prior with one ``v_prior`` for every zone, ``CONST_VAR * L`` at a
  lag of L days (scanning ``lam`` scans that constant), so three days of history are enough;
- ``lam`` scales the forecast's variance: 0 is the plain re-plan, 1 the variances as stated.

``lam`` is chosen on the tuning zones (``--tune``) and the years before ``--holdout-year``, and the
rule is then scored on the other zones and on the held-out year: a rule that only works where it was
tuned does not count. The replay is numpy on hourly refreshes with the package's workloads, margins
and mmfe forecasts (``MMFEForecasts``, same seeds); its ``lam = 0`` column reproduces
``bench/savings.py``'s ``replan`` figure to about 0.002 (it sums over jobs, savings.py over the
traces' means). Prints a JSON document and, last, a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from carbon_sensors.forecast_models import MMFEForecasts  # noqa: E402
from carbon_sensors.planning import Policy  # noqa: E402
from carbon_sensors.simulate import WORKLOADS, load_trace  # noqa: E402

HOUR = 3600.0
RHO = 0.9  # the backtests' default
PRIOR_DAYS = 30  # the window over which the prior's error is measured, before each issue time
LAMS = (0.0, 0.25, 0.5, 1.0, 2.0)
CONST_VAR = 0.02  # prior = const: persistence's relative variance at a lag of one day, for every zone


def window_mean(series: np.ndarray, start: float, d: int) -> float:
    """Mean of an hourly series over ``[start, start + d)`` hours; a fractional start allowed."""
    i = math.floor(start)
    part = start - i
    if part == 0:
        return float(series[i:i + d].mean())
    return float(((1 - part) * series[i] + series[i + 1:i + d].sum() + part * series[i + d]) / d)


def causal_error(values: np.ndarray, prior: np.ndarray, first: int, days: int = PRIOR_DAYS) -> np.ndarray:
    """At each hour, the mean squared relative error ``prior`` made over the ``days`` before it."""
    err = np.zeros(len(values))
    err[first:] = ((values[first:] - prior[first:]) / np.maximum(values[first:], 1e-9)) ** 2
    csum = np.concatenate([[0.0], np.cumsum(err)])
    idx = np.arange(len(values))
    lo = np.clip(idx - days * 24, first, None)
    n = idx - lo
    return np.where(n >= 24, (csum[idx] - csum[np.minimum(lo, idx)]) / np.maximum(n, 1), np.inf)


def priors(values: np.ndarray, kind: str, days: int = PRIOR_DAYS) -> tuple[np.ndarray, np.ndarray]:
    """``prior[L - 1, T]`` for lags of L = 1..3 days and each hour's causal error ``var[L - 1, t]``."""
    n = len(values)
    prior, var = np.full((3, n), np.nan), np.full((3, n), np.inf)
    for lag in (1, 2, 3):
        back = range(lag, lag + (7 if kind == "week" else 1))  # "recent" and "const" use the day prior
        first = 24 * back[-1]
        p = np.full(n, np.nan)
        p[first:] = np.mean([values[first - 24 * d:n - 24 * d] for d in back], axis=0)
        prior[lag - 1] = p
        var[lag - 1] = causal_error(values, p, first, days)
    return prior, var


def replay(zone_path: str, sigma24: float, seed: int, kind: str, days: int = PRIOR_DAYS) -> dict:
    """Per workload and job: submission year, now, oracle, and the window each lam's rule ran in."""
    trace = load_trace(Path(zone_path))
    actual = trace.actual
    values = np.asarray(actual.values, dtype=float)
    model = MMFEForecasts(actual, sigma24=sigma24, rho=RHO, seed=seed)
    factors = np.frombuffer(model.factors, dtype=float).reshape(len(values), model.width)
    prior, var = priors(values, kind, days)
    lams = np.asarray(LAMS)
    t0 = actual.starts_s[0]
    policy = Policy(min_saving_pct=0.0)
    out: dict[str, list] = {}
    for workload in WORKLOADS.values():
        d = workload.duration_h
        latest = workload.slack_h - d - policy.margin_for(timedelta(hours=d)).total_seconds() / HOUR
        starts = np.asarray(list(range(math.floor(latest) + 1)) + ([latest] if latest % 1 else []), dtype=float)
        rows = []
        for submit_s, _ in workload.runs(actual.starts_s[0], actual.end_s - d * HOUR * 4):
            s = round((submit_s - t0) / HOUR)
            truth = values[s:s + workload.slack_h + d + 2]
            actual_w = np.array([window_mean(truth, c, d) for c in starts])
            chosen = np.full(len(lams), -1)
            for k in range(math.floor(latest) + 1):
                t = s + k
                later = starts[starts >= k]
                if len(later) == 1:
                    chosen[chosen < 0] = np.searchsorted(starts, later[0])
                    break
                forecast = truth[k:] * factors[t, :len(truth) - k]
                h = np.arange(len(forecast))
                lag = np.clip(np.ceil(h / 24.0).astype(int), 1, 3)
                p, v = prior[lag - 1, t + h], var[lag - 1, t]
                if kind == "const":
                    v = CONST_VAR * lag.astype(float)
                if kind == "recent":
                    v = np.full(len(h), np.inf)
                    for L in (1, 2, 3):
                        at = (lag == L) & (h > 0) & np.isfinite(p)
                        if at.any():
                            gap = np.mean(((forecast[at] - p[at]) / np.maximum(forecast[at], 1e-9)) ** 2)
                            v[at] = max(1e-4, gap - np.mean(sigma24 ** 2 * h[at] / 24.0))
                for q, lam in enumerate(lams):
                    if chosen[q] >= 0:
                        continue
                    noise = lam * sigma24 ** 2 * h / 24.0
                    usable = np.isfinite(p) & np.isfinite(v) & (noise > 0)
                    w = np.where(usable, v / np.where(usable, v + noise, 1.0), 1.0)
                    blend = w * forecast + (1 - w) * np.where(usable, p, 0.0)
                    planned = np.array([window_mean(blend, c - k, d) for c in later])
                    if planned[0] <= planned[1:].min():
                        chosen[q] = np.searchsorted(starts, k)
                if (chosen >= 0).all():
                    break
            chosen[chosen < 0] = len(starts) - 1
            year = datetime.fromtimestamp(submit_s, UTC).year
            rows.append((year, float(actual_w[0]), float(actual_w.min()), actual_w[chosen].tolist()))
        out[workload.name] = rows
    return {"zone": trace.zone, "seed": seed, "workloads": out}


def fraction(rows: list, q: int) -> float | None:
    now = sum(r[1] for r in rows)
    oracle = sum(r[2] for r in rows)
    rule = sum(r[3][q] for r in rows)
    return round((now - rule) / (now - oracle), 4) if now > oracle else None


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "carbon")
    parser.add_argument("--sigma24", type=float, default=0.10, help="the mmfe forecast error at 24 h (default 0.10)")
    parser.add_argument("--seeds", type=int, default=3, help="noise seeds per zone (default 3)")
    parser.add_argument("--prior", action="append", choices=("day", "week", "recent", "const"),
                        help="the prior(s) to blend with, repeatable (default: day, week, recent and const)")
    parser.add_argument("--tune", default="DE,GB,ZA", help="zones lam is chosen on (the others are held out)")
    parser.add_argument("--holdout-year", type=int, default=2023, help="the year lam is not chosen on (default 2023)")
    parser.add_argument("--prior-days", type=int, default=PRIOR_DAYS,
                        help="days of measured history the prior's error is estimated on")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    paths = sorted(args.data.glob("*_2021-2023_hourly.csv"))
    if not paths:
        print(f"no traces in {args.data}", file=sys.stderr)
        return 2
    tune = {z.strip() for z in args.tune.split(",")}
    started = time.perf_counter()
    report: dict = {"sigma24": args.sigma24, "seeds": args.seeds, "lams": list(LAMS), "tune_zones": sorted(tune),
                    "prior_days": args.prior_days,
                    "holdout_year": args.holdout_year, "model": "mmfe", "priors": {}}
    line = []
    for kind in args.prior or ["day", "week", "recent"]:
        with ProcessPoolExecutor(args.workers) as pool:
            units = list(pool.map(replay, [str(p) for p in paths for _ in range(args.seeds)],
                                  [args.sigma24] * (len(paths) * args.seeds),
                                  [s for _ in paths for s in range(args.seeds)],
                                  [kind] * (len(paths) * args.seeds), [args.prior_days] * (len(paths) * args.seeds)))
        table: dict = {}
        for workload in WORKLOADS:
            def rows(zones=None, years=None, _w=workload, _units=units):
                """The jobs of tuning (True) or held-out (False) zones and years; None: all."""
                return [r for u in _units if zones is None or (u["zone"] in tune) == zones
                        for r in u["workloads"][_w] if years is None or (r[0] < args.holdout_year) == years]

            tuning = rows(zones=True, years=True)
            best = max(range(len(LAMS)), key=lambda q: fraction(tuning, q) or -9)
            per_zone = {z: {str(lam): fraction([r for u in units if u["zone"] == z for r in u["workloads"][workload]], q)
                            for q, lam in enumerate(LAMS)} for z in sorted({u["zone"] for u in units})}
            table[workload] = {
                "lam_chosen_on_tuning": LAMS[best],
                "all": {str(lam): fraction(rows(), q) for q, lam in enumerate(LAMS)},
                "tuning_zones_years": {str(lam): fraction(tuning, q) for q, lam in enumerate(LAMS)},
                "held_out_zones": {str(lam): fraction(rows(zones=False), q) for q, lam in enumerate(LAMS)},
                "held_out_year": {str(lam): fraction(rows(years=False), q) for q, lam in enumerate(LAMS)},
                "per_zone": per_zone,
                "worst_zone_vs_replan": round(min((v[str(LAMS[best])] or 0) - (v["0.0"] or 0)
                                                  for v in per_zone.values()), 4),
            }
            t = table[workload]
            chosen = str(LAMS[best])
            line.append(f"{kind}/{workload.split('_')[0]}: replan {_f(t['held_out_zones']['0.0'])} -> "
                        f"{_f(t['held_out_zones'][chosen])} held-out zones, {_f(t['held_out_year']['0.0'])} -> "
                        f"{_f(t['held_out_year'][chosen])} held-out year (lam {LAMS[best]:g})")
        report["priors"][kind] = table
    report["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=1))
    print(f"history_prior sigma24={args.sigma24} seeds={args.seeds} prior_days={args.prior_days}: {'; '.join(line)}; "
          f"{report['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
