"""Would a smarter stopping rule capture more of the oracle's saving? A measurement, not a test.

Run from the repository root (reads ../shared/data/carbon; about 6 minutes for all zones)::

    .venv/bin/python bench/stopping_rule.py                      # weekly_retrain, sigma24 = 0.10
    .venv/bin/python bench/stopping_rule.py --zones DE,ZA --seeds 1

The gate's rule is greedy: at each hourly refresh, start if now is the cleanest window of the
(corrected) forecast. Optimal-stopping theory says to start only if now beats the *expected cost of
going on*, which a far, noisy dip makes look lower than it is. This bench prices going on the
standard way, with a one-step rollout: from the current forecast it draws ``--scenarios`` futures
from the backtests' own noise model (the truth, and the forecasts that later refreshes would
show), runs the greedy rule in each, and starts now only if now costs no more than their mean.
Rollout cannot do worse than its base rule when the scenarios are the true posterior; if it does
not do better, pricing the forecast's documented error is not the missing piece, and a better rule
needs information beyond the current forecast and its error model.

Both rules are replayed in numpy on hourly starts (plus the latest start), with the package's
workloads, noise-model seeds (``ModelForecasts``) and the gate's correction by the current slot's
error; the greedy replay reproduces ``bench/savings.py``'s ``carbon_sensors`` figure to about
0.01. It prints a JSON document and, as the last line, a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from carbon_sensors.planning import Policy  # noqa: E402
from carbon_sensors.simulate import HORIZON_H, WORKLOADS, ModelForecasts, load_trace  # noqa: E402

RHO = 0.9  # the noise model's AR(1) coefficient and the gate's correction persistence (both defaults)
MAX_Z = 4.0  # the gate's clamp on the current error


class Replay:
    """One zone's jobs of one workload: actual hours, noise, and the candidate starts."""

    def __init__(self, actual: np.ndarray, z: np.ndarray, first_hours: np.ndarray, *, duration_h: int,
                 slack_h: int, latest_h: float, sigma24: float):
        span = slack_h + HORIZON_H + 2
        rows = first_hours[:, None] + np.arange(span)
        self.actual, self.z = actual[rows], z[rows]
        self.duration = duration_h
        starts = list(range(math.floor(latest_h) + 1))
        self.grid = np.array(starts + ([latest_h] if latest_h % 1 else []), dtype=float)
        self.scale = sigma24 * np.sqrt(np.arange(HORIZON_H + 1) / 24.0)

    def window_mean(self, series: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Mean of hourly ``series`` over ``[start, start + duration)``; fractional starts allowed."""
        cum = np.concatenate([np.zeros((*series.shape[:-1], 1)), np.cumsum(series, axis=-1)], axis=-1)

        def at(x: np.ndarray) -> np.ndarray:
            i = np.floor(x).astype(int)
            lo = np.take_along_axis(cum, np.clip(i, 0, cum.shape[-1] - 1), -1)
            hi = np.take_along_axis(cum, np.clip(i + 1, 0, cum.shape[-1] - 1), -1)
            return lo + (x - i) * (hi - lo)

        return (at(starts + self.duration) - at(starts)) / self.duration

    def forecast(self, jobs: np.ndarray, hour: int, *, corrected: bool = True) -> np.ndarray:
        """The forecast issued ``hour`` hours after submission (hour 0 exact), as the gate sees it."""
        a, z = self.actual[jobs, hour:], self.z[jobs, hour:]
        h = np.arange(min(HORIZON_H + 1, a.shape[1]))
        out = np.clip(a[:, h] * (1 + self.scale[h] * z[:, h]), 0, None)
        if corrected and hour > 0:
            now_z = np.clip(z[:, :1], -MAX_Z, MAX_Z)
            out = out / np.maximum(0.2, 1 + self.scale[h] * RHO**h * now_z)
            out[:, 0] = a[:, 0]
        return out

    def oracle(self) -> np.ndarray:
        starts = np.broadcast_to(self.grid, (len(self.actual), len(self.grid)))
        return self.window_mean(self.actual, starts).min(axis=1)

    def run(self, rule) -> np.ndarray:
        """Each job's start (hours after submission) under ``rule(jobs, k) -> start now?``."""
        start = np.full(len(self.actual), np.nan)
        for k, hour in enumerate(self.grid):
            waiting = np.flatnonzero(np.isnan(start))
            if not len(waiting):
                break
            if k == len(self.grid) - 1 or hour % 1:
                start[waiting] = hour  # the latest start: the deadline decides
                break
            start[waiting[rule(waiting, k)]] = hour
        return self.window_mean(self.actual, start[:, None])[:, 0]

    def greedy(self, jobs: np.ndarray, k: int) -> np.ndarray:
        f = self.forecast(jobs, int(self.grid[k]))
        offsets = self.grid[k:] - self.grid[k]
        return self.window_mean(f, np.broadcast_to(offsets, (len(jobs), len(offsets)))).argmin(axis=1) == 0

    def rollout(self, jobs: np.ndarray, k: int, scenarios: int, rng: np.random.Generator) -> np.ndarray:
        hour = int(self.grid[k])
        seen = self.forecast(jobs, hour)
        raw = self.forecast(jobs, hour, corrected=False)
        n, length = raw.shape
        h = np.arange(length)
        # The noise model's posterior predictive given this forecast and the current slot's error:
        # z ahead is rho^h * z_now plus an AR(1) innovation path that starts at 0.
        innovation = np.zeros((n, scenarios, length))
        shocks = rng.standard_normal((n, scenarios, length)) * math.sqrt(1 - RHO * RHO)
        for i in range(1, length):
            innovation[:, :, i] = RHO * innovation[:, :, i - 1] + shocks[:, :, i]
        z = RHO**h * self.z[jobs, hour][:, None, None] + innovation
        truth = np.clip(raw[:, None, :] / np.maximum(0.2, 1 + self.scale[h] * z), 0, None)
        truth[:, :, 0] = raw[:, None, 0]
        cost = np.full((n, scenarios), np.nan)
        later = self.grid[k + 1:] - self.grid[k]
        for i, offset in enumerate(later):
            going = np.isnan(cost)
            if not going.any():
                break
            if i == len(later) - 1 or offset % 1:
                cost[going] = self.window_mean(truth, np.full((n, scenarios, 1), offset))[..., 0][going]
                break
            o = int(offset)
            ahead = np.clip(h - o, 0, None)
            shown = np.clip(truth * (1 + self.scale[ahead] * z), 0, None)
            now_z = np.clip(z[:, :, o:o + 1], -MAX_Z, MAX_Z)
            shown = shown / np.maximum(0.2, 1 + self.scale[ahead] * RHO**ahead * now_z)
            shown[:, :, o] = truth[:, :, o]
            means = self.window_mean(shown, np.broadcast_to(later[i:], (n, scenarios, len(later) - i)).copy())
            starts = (means.argmin(axis=-1) == 0) & going
            cost[starts] = self.window_mean(truth, np.full((n, scenarios, 1), offset))[..., 0][starts]
        return self.window_mean(seen, np.zeros((n, 1)))[:, 0] <= cost.mean(axis=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "carbon")
    parser.add_argument("--workload", default="weekly_retrain", choices=sorted(WORKLOADS))
    parser.add_argument("--sigma24", type=float, default=0.10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--scenarios", type=int, default=32)
    parser.add_argument("--zones", help="comma-separated zones (default: every trace in --data)")
    args = parser.parse_args()
    if args.seeds < 1 or args.scenarios < 1:
        parser.error("--seeds and --scenarios must be at least 1")
    paths = sorted(args.data.glob("*_2021-2023_hourly.csv"))
    if not paths:
        print(f"no traces in {args.data}: run from a checkout beside ../shared/data", file=sys.stderr)
        return 2
    if args.zones:
        wanted, known = args.zones.split(","), {p.name.split("_")[0] for p in paths}
        if unknown := sorted(set(wanted) - known):
            parser.error(f"no trace for zone(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        paths = [p for p in paths if p.name.split("_")[0] in wanted]
    workload = WORKLOADS[args.workload]
    expected = timedelta(hours=workload.duration_h)
    latest_h = workload.slack_h - workload.duration_h - Policy().margin_for(expected).total_seconds() / 3600
    started = time.perf_counter()
    totals = {"now": 0.0, "greedy": 0.0, "rollout": 0.0, "oracle": 0.0}
    zones = {}
    for path in paths:
        trace = load_trace(path)
        actual = np.array(trace.actual.values)
        t0 = trace.actual.starts_s[0]
        end = trace.actual.end_s - (workload.slack_h + HORIZON_H + 2) * 3600
        first = np.array([round((s - t0) / 3600) for s in workload.submissions(t0, end)])
        sums = dict.fromkeys(totals, 0.0)
        for seed in range(args.seeds):
            z = np.array(ModelForecasts(trace.actual, sigma24=args.sigma24, rho=RHO, seed=seed * 1009).z)
            replay = Replay(actual, z, first, duration_h=int(workload.duration_h), slack_h=int(workload.slack_h),
                            latest_h=latest_h, sigma24=args.sigma24)
            rng = np.random.default_rng(seed)
            sums["now"] += replay.window_mean(replay.actual, np.zeros((len(first), 1))).sum()
            sums["oracle"] += replay.oracle().sum()
            sums["greedy"] += replay.run(replay.greedy).sum()
            sums["rollout"] += replay.run(lambda jobs, k, r=replay, g=rng: r.rollout(jobs, k, args.scenarios, g)).sum()
        zones[trace.zone] = {rule: round((sums["now"] - sums[rule]) / (sums["now"] - sums["oracle"]), 4)
                             for rule in ("greedy", "rollout")}
        for key in totals:
            totals[key] += sums[key]
        print(f"\r{len(zones)}/{len(paths)} zones", end="", file=sys.stderr)
    print(file=sys.stderr)
    overall = {rule: round((totals["now"] - totals[rule]) / (totals["now"] - totals["oracle"]), 4)
               for rule in ("greedy", "rollout")}
    out = {
        "workload": workload.name, "sigma24": args.sigma24, "rho": RHO, "seeds": args.seeds,
        "scenarios": args.scenarios, "fraction_of_oracle": overall, "by_zone": zones,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(out, indent=1))
    print(f"stopping_rule: {workload.name} sigma24={args.sigma24}, {len(zones)} zones x {args.seeds} seeds: "
          f"fraction of oracle greedy {overall['greedy']:.3f}, rollout over {args.scenarios} scenarios "
          f"{overall['rollout']:.3f}; {out['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
