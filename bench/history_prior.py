"""How much better than the plain re-plan can a rule that blends forecasts with the measured past do? A measured bound.

Run from the repository root (reads ../shared/data/carbon; about 2-3 minutes per sigma on 2 cores)::

    .venv/bin/python bench/history_prior.py                          # sigma24 0.10, 3 seeds, every prior
    .venv/bin/python bench/history_prior.py --sigma24 0.2 --prior departure_hour
    .venv/bin/python bench/history_prior.py --history-days 14        # the priors fitted on two weeks

Under mmfe a forecast is the actual times the news still to come, so it is noisier than the actual,
and the lowest of many noisy hours is more often noise than a dip (the winner's curse): the plain
re-plan waits for dips that are not there. What a gate knows besides the forecast is the measured
past and where the grid stands now. Each rule blends every forecast hour with a prior, weighting
each by the inverse of its variance, then re-plans as ``replan`` does::

    blend(T) = w * forecast_t(T) + (1 - w) * prior(T),   w = v_prior / (v_prior + lam * sigma24^2 * h / 24)

The priors (``usual_L(T)``: the mean of T's hour over the seven days from L days before, L the
smallest lag measured at issue; ``departure(t) = log actual(t) - log usual_L(t)``; all fitted on the
``--history-days`` measured before the issue time, as a gate fits on what its source serves):

- ``usual``: ``usual_L(T)``, its error the mean squared log error over the history (what the
  package planned on before: the week's usual level);
- ``departure``: ``usual_L(T) * exp(c_h * departure(now))``, ``c_h`` the least-squares slope of
  ``departure(s + h)`` on ``departure(s)`` over the history, its error over all hours;
- ``departure_hour``: the same, its error per hour of day of ``T`` shrunk towards all hours with 10
  pseudo-samples. This is :mod:`carbon_sensors.planning.prior` as the gate runs it (``lam`` 1).

``lam`` 0 is the plain re-plan; ``lam`` and the prior are chosen per workload on the tuning zones
(``--tune``) and the years before ``--holdout-year``, then scored on the other zones and on the
held-out year: a rule that only works where it was tuned does not count. The replay is numpy on
hourly refreshes, vectorised over jobs, with the package's workloads, margins and mmfe forecasts
(``MMFEForecasts``, same seeds); its ``lam`` 0 column reproduces ``bench/savings.py``'s ``replan``
and ``departure_hour`` at ``lam`` 1 its ``carbon_sensors`` (tests/test_bench_history_prior.py).
Prints a JSON document and, last, a one-line summary.
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
from carbon_sensors.planning.prior import HOUR_OF_DAY_PSEUDO_SAMPLES, MIN_PAIRS_H  # noqa: E402
from carbon_sensors.simulate import WORKLOADS, load_trace  # noqa: E402

HOUR = 3600.0
RHO = 0.9  # the backtests' default
HISTORY_DAYS = 28  # what a gate asks its source for (carbon_sensors.planning.prior.HISTORY)
PRIORS = ("usual", "departure", "departure_hour")
LAMS = (0.0, 0.5, 1.0, 2.0)
MAX_LEAD = 72  # the priors cover leads of 1..71 hours
FLOOR = 1e-6


def window_means(series: np.ndarray, starts: np.ndarray, d: int) -> np.ndarray:
    """Means of hourly ``series`` (..., n) over ``[start, start + d)`` for each of ``starts`` (fractional allowed)."""
    cum = np.concatenate([np.zeros((*series.shape[:-1], 1)), np.cumsum(series, axis=-1)], axis=-1)

    def at(x: np.ndarray) -> np.ndarray:
        i = np.floor(x).astype(int)
        lo, hi = cum[..., np.clip(i, 0, cum.shape[-1] - 1)], cum[..., np.clip(i + 1, 0, cum.shape[-1] - 1)]
        return lo + (x - i) * (hi - lo)

    return (at(starts + d) - at(starts)) / d


def _window_sums(column: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sums of ``column`` over ``[a, b)`` for each pair (empty where a >= b)."""
    cum = np.concatenate([[0.0], np.cumsum(column)])
    a = np.clip(a, 0, len(column))
    b = np.clip(b, 0, len(column))
    return np.where(b > a, cum[b] - cum[np.minimum(a, b)], 0.0)


def _class_sums(column: np.ndarray, a: np.ndarray, b: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Sums of ``column[j]`` over ``j`` in ``[a, b)`` with ``j % 24 == r``, for each triple."""
    n = len(column)
    padded = np.zeros(-(-n // 24) * 24)
    padded[:n] = column
    cum = np.concatenate([np.zeros((1, 24)), np.cumsum(padded.reshape(-1, 24), axis=0)])  # cum[k, r]: first k of class r
    k0 = np.clip(-((r - a) // 24), 0, cum.shape[0] - 1)  # ceil((a - r) / 24)
    k1 = np.clip(-((r - b) // 24), 0, cum.shape[0] - 1)
    return np.where(k1 > k0, cum[k1, r] - cum[np.minimum(k0, k1), r], 0.0)


def _residual(slope: np.ndarray, xx: np.ndarray, xy: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """The sum of squared residuals ``(y - slope x)^2`` from the sums of the pairs."""
    return np.maximum(0.0, yy - 2 * slope * xy + slope ** 2 * xx)


def priors(values: np.ndarray, kind: str, history_h: int) -> tuple[np.ndarray, np.ndarray]:
    """``prior[h, t]``: the prior issued at hour ``t`` for hour ``t + h``, and ``var[h, t]`` its error (inf: none).

    Fitted as the package fits, on the ``history_h`` hours before ``t`` (the samples ``[t - history_h, t)``).
    """
    n = len(values)
    logs = np.log(np.where(values > 0, values, np.nan))
    sums = np.full(n, np.nan)
    sums[144:] = sum(values[144 - 24 * d:n - 24 * d] for d in range(7))
    usual = {}
    for lag in (1, 2, 3):
        u = np.full(n, np.nan)
        u[24 * lag:] = np.log(sums[:n - 24 * lag] / 7)
        usual[lag] = u
    prior, var = np.full((MAX_LEAD, n), np.nan), np.full((MAX_LEAD, n), np.inf)
    t = np.arange(n)
    for h in range(1, MAX_LEAD):
        lag = -(-(h + 1) // 24)
        dep = logs - usual[lag]
        x, y = np.full(n, np.nan), dep
        x[h:] = dep[:-h]
        if kind == "usual":
            x = np.where(np.isfinite(x), 0.0, np.nan)  # slope 0: the usual level alone, over the same pairs
        ok = np.isfinite(x) & np.isfinite(y)
        cols = [ok.astype(float), np.where(ok, x * x, 0.0), np.where(ok, x * y, 0.0), np.where(ok, y * y, 0.0)]
        a = t - history_h + h + 24 * lag + 144  # the first target whose anchor's usual level is in the history
        m, xx, xy, yy = (_window_sums(c, a, t) for c in cols)
        slope = np.where(xx > 0, np.clip(xy / np.where(xx > 0, xx, 1), 0, 1), 0.0)
        v_all = np.maximum(FLOOR, _residual(slope, xx, xy, yy) / np.maximum(m, 1))
        if kind == "departure_hour":
            r = (t + h) % 24  # the traces start at 00:00 UTC: the class is the target's hour
            mc, cxx, cxy, cyy = (_class_sums(c, a, t, r) for c in cols)
            own = _residual(slope, cxx, cxy, cyy)
            v = np.maximum(FLOOR, (own + HOUR_OF_DAY_PSEUDO_SAMPLES * v_all) / (mc + HOUR_OF_DAY_PSEUDO_SAMPLES))
        else:
            v = v_all
        target = np.full(n, np.nan)
        target[:n - h] = usual[lag][h:] + slope[:n - h] * (logs[:n - h] - usual[lag][:n - h])
        prior[h] = np.exp(target)
        var[h] = np.where((m >= MIN_PAIRS_H) & np.isfinite(target), v, np.inf)
    return prior, var


def replay(zone_path: str, sigma24: float, seed: int, kinds: tuple[str, ...], history_days: int) -> dict:
    """Per workload and job: submission year, now, oracle, and the window each (prior, lam) rule ran in."""
    trace = load_trace(Path(zone_path))
    actual = trace.actual
    values = np.asarray(actual.values, dtype=float)
    model = MMFEForecasts(actual, sigma24=sigma24, rho=RHO, seed=seed * 1009)
    factors = np.frombuffer(model.factors, dtype=float).reshape(len(values), model.width)
    fitted = {kind: priors(values, kind, 24 * history_days) for kind in kinds}
    rules = [("replan", 0.0)] + [(kind, lam) for kind in kinds for lam in LAMS if lam]
    t0 = actual.starts_s[0]
    policy = Policy(min_saving_pct=0.0)
    out: dict[str, list] = {}
    for workload in WORKLOADS.values():
        d = int(workload.duration_h)
        latest = workload.slack_h - d - policy.margin_for(timedelta(hours=d)).total_seconds() / HOUR
        starts = np.asarray(list(range(math.floor(latest) + 1)) + ([latest] if latest % 1 else []), dtype=float)
        runs = workload.runs(actual.starts_s[0], actual.end_s - d * HOUR * 4)
        subs = np.array([round((s - t0) / HOUR) for s, _ in runs])
        span = workload.slack_h + d + 2
        truth = values[subs[:, None] + np.arange(span)]
        actual_w = window_means(truth, starts, d)
        chosen = np.full((len(rules), len(subs)), -1)
        for k in range(math.floor(latest) + 1):
            later = starts[starts >= k]
            width = min(factors.shape[1], span - k)
            h = np.arange(width)
            t = subs + k
            forecast = truth[:, k:k + width] * factors[t][:, :width]
            for q, (kind, lam) in enumerate(rules):
                act = chosen[q] < 0
                if not act.any():
                    continue
                if len(later) == 1:
                    chosen[q, act] = len(starts) - 1
                    continue
                blend = forecast[act]
                if lam:
                    prior, var = fitted[kind]
                    hh = np.clip(h, 1, MAX_LEAD - 1)
                    p, v = prior[hh[None, :], t[act, None]], var[hh[None, :], t[act, None]]
                    use = (h[None, :] >= 1) & (h[None, :] < MAX_LEAD) & np.isfinite(v) & np.isfinite(p)
                    noise = lam * sigma24 ** 2 * h / 24.0
                    w = np.where(use, v / np.where(use, v + noise[None, :], 1.0), 1.0)
                    blend = np.where(use, w * blend + (1 - w) * np.where(use, p, 0.0), blend)
                planned = window_means(blend, later - k, d)
                stop = planned[:, 0] <= planned[:, 1:].min(axis=1) * (1 + 1e-9)
                rows = np.nonzero(act)[0]
                chosen[q, rows[stop]] = np.searchsorted(starts, k)
                if k == math.floor(latest):
                    chosen[q, rows[~stop]] = len(starts) - 1
        chosen[chosen < 0] = len(starts) - 1
        years = [datetime.fromtimestamp(s, UTC).year for s, _ in runs]
        out[workload.name] = [(y, float(actual_w[j, 0]), float(actual_w[j].min()),
                               [float(actual_w[j, chosen[q, j]]) for q in range(len(rules))])
                              for j, y in enumerate(years)]
    return {"zone": trace.zone, "seed": seed, "rules": [f"{k}@{lam:g}" for k, lam in rules], "workloads": out}


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
    parser.add_argument("--prior", action="append", choices=PRIORS,
                        help="the prior(s) to blend with, repeatable (default: all three)")
    parser.add_argument("--tune", default="DE,GB,ZA", help="zones the rule is chosen on (the others are held out)")
    parser.add_argument("--holdout-year", type=int, default=2023, help="the year the rule is not chosen on (default 2023)")
    parser.add_argument("--history-days", type=int, default=HISTORY_DAYS,
                        help=f"days of measured history the priors are fitted on (default {HISTORY_DAYS}, a gate's)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    paths = sorted(args.data.glob("*_2021-2023_hourly.csv"))
    if not paths:
        print(f"no traces in {args.data}", file=sys.stderr)
        return 2
    kinds = tuple(args.prior or PRIORS)
    tune = {z.strip() for z in args.tune.split(",")}
    started = time.perf_counter()
    jobs = [(str(p), s) for p in paths for s in range(args.seeds)]
    with ProcessPoolExecutor(args.workers) as pool:
        units = list(pool.map(replay, [p for p, _ in jobs], [args.sigma24] * len(jobs), [s for _, s in jobs],
                              [kinds] * len(jobs), [args.history_days] * len(jobs)))
    rules = units[0]["rules"]
    report: dict = {"sigma24": args.sigma24, "seeds": args.seeds, "lams": list(LAMS), "priors": list(kinds),
                    "rules": rules, "tune_zones": sorted(tune), "history_days": args.history_days,
                    "holdout_year": args.holdout_year, "model": "mmfe", "workloads": {}}
    package = "departure_hour@1"
    line = []
    for workload in WORKLOADS:
        def rows(zones=None, years=None, _w=workload):
            """The jobs of tuning (True) or held-out (False) zones and years; None: all."""
            return [r for u in units if zones is None or (u["zone"] in tune) == zones
                    for r in u["workloads"][_w] if years is None or (r[0] < args.holdout_year) == years]

        tuning = rows(zones=True, years=True)
        best = max(range(len(rules)), key=lambda q: fraction(tuning, q) or -9)
        per_zone = {z: {rule: fraction([r for u in units if u["zone"] == z for r in u["workloads"][workload]], q)
                        for q, rule in enumerate(rules)} for z in sorted({u["zone"] for u in units})}
        table = report["workloads"][workload] = {
            "chosen_on_tuning": rules[best],
            "all": {rule: fraction(rows(), q) for q, rule in enumerate(rules)},
            "tuning_zones_years": {rule: fraction(tuning, q) for q, rule in enumerate(rules)},
            "held_out_zones": {rule: fraction(rows(zones=False), q) for q, rule in enumerate(rules)},
            "held_out_year": {rule: fraction(rows(years=False), q) for q, rule in enumerate(rules)},
            "per_zone": per_zone,
            "worst_zone_vs_replan": {rule: round(min((v[rule] or 0) - (v["replan@0"] or 0) for v in per_zone.values()), 4)
                                     for rule in rules},
        }
        shown = [rules[best]] + ([package] if package in rules and package != rules[best] else [])
        held = ", ".join(f"{rule} {_f(table['held_out_zones'][rule])} / {_f(table['held_out_year'][rule])}" for rule in shown)
        line.append(f"{workload.split('_')[0]}: replan {_f(table['held_out_zones']['replan@0'])} / "
                    f"{_f(table['held_out_year']['replan@0'])} -> {held}")
    report["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=1))
    print(f"history_prior sigma24={args.sigma24} seeds={args.seeds} history_days={args.history_days} "
          f"(held-out zones / held-out year; chosen on {','.join(sorted(tune))} before {args.holdout_year}): "
          f"{'; '.join(line)}; {report['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
