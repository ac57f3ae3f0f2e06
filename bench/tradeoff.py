"""Carbon against cost: five policies of the three-number planner, side by side on real prices and carbon.

Run from the repository root (reads ../shared/data/carbon and ../shared/data/prices: the 9 zones with both)::

    .venv/bin/python bench/tradeoff.py                       # carbon and price sigma24 = 0.10, 1 seed
    .venv/bin/python bench/tradeoff.py --seeds 3 --plot tradeoff.png
    .venv/bin/python bench/tradeoff.py --zones DE,ZA --sigma24 0 --price-sigma24 0   # perfect foresight

Policies (each with ``min_saving_pct = 0``, as the oracle has):

- ``carbon_only``: the cleanest window (the default planner);
- ``cost_only``: the cheapest window (``objective="cost"``);
- ``carbon_within_0pct`` / ``carbon_within_10pct``: the cleanest window whose price is within +0 % /
  +10 % of starting at submission (``max_cost_increase_pct``);
- ``carbon_price_100``: the lowest price plus carbon at 100 USD/t (``carbon_price_per_tonne``).

Each policy runs the gate (``carbon_sensors``: waits, re-plans on hourly forecasts) and the same
policy on the actual traces (``oracle``), against ``now`` (start at submission). Per workload and
policy it reports, over the zones together, the carbon saving (from the mean intensities) and the
cost saving (from the energy cost, jobs at 1 kW), and per zone the same two figures. The last line
is a one-line summary checked against the targets:

- every policy's gate reaches >= 0.90 of its own oracle's saving on the figure it minimises
  (carbon; cost for ``cost_only``; price plus carbon at 100 USD/t for ``carbon_price_100``);
- ``carbon_within_0pct`` costs no more than starting at once over the zones together, and at most
  1 % more in any zone;
- zero caused deadline misses in every policy;
- the whole run under 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from carbon_sensors.planning import Policy  # noqa: E402
from carbon_sensors.price_traces import load_price_traces  # noqa: E402
from carbon_sensors.simulate import WORKLOADS, SimulationSettings, load_trace, simulate  # noqa: E402

CARBON_PRICE = 100.0  # USD/t for carbon_price_100; 1 g/kWh is 0.1 USD/MWh
POLICIES: dict[str, Policy] = {
    "carbon_only": Policy(min_saving_pct=0.0),
    "cost_only": Policy(min_saving_pct=0.0, objective="cost"),
    "carbon_within_0pct": Policy(min_saving_pct=0.0, max_cost_increase_pct=0.0),
    "carbon_within_10pct": Policy(min_saving_pct=0.0, max_cost_increase_pct=10.0),
    "carbon_price_100": Policy(min_saving_pct=0.0, carbon_price_per_tonne=CARBON_PRICE),
}
#: What each policy minimises, from a result row: the figure its fraction of the oracle is judged on.
FIGURES = {
    "carbon_only": "carbon", "cost_only": "cost", "carbon_within_0pct": "carbon", "carbon_within_10pct": "carbon",
    "carbon_price_100": "carbon_priced",
}
TARGET_FRACTION = 0.90
TARGET_ZONE_COST_PCT = 1.0
TARGET_WALL_S = 600.0


def figure(row: dict, name: str) -> float:
    """A row's total of ``name`` over its jobs: carbon (g/kWh x jobs), cost (USD), or price plus carbon at the carbon price."""
    jobs = row["jobs"]
    if name == "carbon":
        return row["mean_intensity"] * jobs
    if name == "cost":
        return row["energy_cost"]
    return (row["mean_price"] + row["mean_intensity"] * CARBON_PRICE / 1000.0) * jobs


def saving_pct(now: float, other: float) -> float | None:
    return None if not now else (now - other) / abs(now) * 100.0


def tabulate(out: dict) -> tuple[dict, dict]:
    """Per workload: the zones-together and the per-zone carbon and cost savings of the gate and the oracle."""
    rows = {(r["zone"], r["workload"], r["strategy"]): r for r in out["results"]}
    zones = sorted({r["zone"] for r in out["results"]})
    together, per_zone = {}, {}
    for workload in sorted({r["workload"] for r in out["results"]}):
        sums = {(s, f): sum(figure(rows[(z, workload, s)], f) for z in zones)
                for s in ("now", "carbon_sensors", "oracle") for f in ("carbon", "cost", "carbon_priced")}
        together[workload] = {
            strategy: {f"{f}_saving_pct": _round(saving_pct(sums[("now", f)], sums[(strategy, f)]))
                       for f in ("carbon", "cost", "carbon_priced")}
            for strategy in ("carbon_sensors", "oracle")
        }
        together[workload]["caused_misses"] = sum(rows[(z, workload, s)]["caused_misses"] for z in zones
                                                  for s in ("carbon_sensors", "oracle"))
        together[workload]["_sums"] = sums
        per_zone[workload] = {
            z: {s: {"carbon_saving_pct": _round(saving_pct(figure(rows[(z, workload, "now")], "carbon"),
                                                           figure(rows[(z, workload, s)], "carbon"))),
                    "cost_saving_pct": _round(saving_pct(figure(rows[(z, workload, "now")], "cost"),
                                                         figure(rows[(z, workload, s)], "cost")))}
                for s in ("carbon_sensors", "oracle")}
            for z in zones
        }
    return together, per_zone


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--zones", help="only these zones, e.g. DE,ZA (default: every zone with both traces)")
    parser.add_argument("--sigma24", type=float, default=0.10, help="carbon forecast error at 24 h")
    parser.add_argument("--price-sigma24", type=float, default=0.10, help="price forecast error at 24 h")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--policies", help=f"only these, comma-separated (default: {','.join(POLICIES)})")
    parser.add_argument("--plot", type=Path, help="write the per-zone trade-off (cost change vs carbon change) here")
    args = parser.parse_args()

    price_paths = {p.name.split("_")[0]: p for p in sorted((args.data / "prices").glob("*_2021-2023_hourly_usd_per_mwh.csv"))}
    carbon_paths = {p.name.split("_")[0]: p for p in sorted((args.data / "carbon").glob("*_2021-2023_hourly.csv"))}
    zones = sorted(set(price_paths) & set(carbon_paths))
    if args.zones:
        zones = [z for z in zones if z in {w.strip() for w in args.zones.split(",")}]
    if not zones:
        print(f"no zone with both a carbon and a price trace under {args.data}", file=sys.stderr)
        return 2
    traces = [[load_trace(carbon_paths[z])] for z in zones]
    prices = [t for z in zones for t in load_price_traces(price_paths[z])]
    names = [p.strip() for p in args.policies.split(",")] if args.policies else list(POLICIES)

    started = time.perf_counter()
    runs, results = {}, {}
    for name in names:
        settings = SimulationSettings(
            workloads=tuple(WORKLOADS.values()), strategies=("now", "carbon_sensors", "oracle"), sigma24=args.sigma24,
            price_sigma24=args.price_sigma24, seeds=args.seeds, policy=POLICIES[name],
        )
        t0 = time.perf_counter()
        out = simulate(traces, settings, prices=prices, workers=args.workers,
                       progress=lambda done, total, name=name: print(f"\r{name}: {done}/{total}", end="", file=sys.stderr))
        print(file=sys.stderr)
        together, per_zone = tabulate(out)
        runs[name] = {"wall_s": round(time.perf_counter() - t0, 1), "together": together, "per_zone": per_zone}
        results[name] = out
    wall_s = time.perf_counter() - started

    checks, fractions = [], {}
    for name in names:
        for workload, row in runs[name]["together"].items():
            sums = row.pop("_sums")
            f = FIGURES[name]
            gain = sums[("now", f)] - sums[("carbon_sensors", f)]
            best = sums[("now", f)] - sums[("oracle", f)]
            fraction = gain / best if best > 0 else None
            fractions[(name, workload)] = fraction
            row["fraction_of_own_oracle"] = _round(fraction)
            if fraction is not None:
                checks.append((f"{name}/{workload} fraction {fraction:.3f} >= {TARGET_FRACTION}",
                               fraction >= TARGET_FRACTION))
            checks.append((f"{name}/{workload} caused misses {row['caused_misses']} == 0", row["caused_misses"] == 0))
    if "carbon_within_0pct" in runs:
        for workload, row in runs["carbon_within_0pct"]["together"].items():
            cost = row["carbon_sensors"]["cost_saving_pct"]
            checks.append((f"carbon_within_0pct/{workload} costs {-cost:+.2f}% vs now together (<= 0)", cost >= -1e-9))
            worst = min(runs["carbon_within_0pct"]["per_zone"][workload].items(),
                        key=lambda zr: zr[1]["carbon_sensors"]["cost_saving_pct"])
            worst_cost = worst[1]["carbon_sensors"]["cost_saving_pct"]
            checks.append((f"carbon_within_0pct/{workload} worst zone {worst[0]} costs {-worst_cost:+.2f}% (<= +1%)",
                           -worst_cost <= TARGET_ZONE_COST_PCT))
    checks.append((f"wall {wall_s:.0f}s < {TARGET_WALL_S:.0f}s", wall_s < TARGET_WALL_S))

    print(json.dumps({"zones": zones, "sigma24": args.sigma24, "price_sigma24": args.price_sigma24,
                      "seeds": args.seeds, "wall_s": round(wall_s, 1), "policies": runs}, indent=1))
    _print_table(runs, names)
    if args.plot:
        _plot(runs, names, args.plot)
    failed = [text for text, ok in checks if not ok]
    fraction_text = ", ".join(f"{n}/{w} {f:.2f}" for (n, w), f in sorted(fractions.items()) if f is not None)
    print(f"tradeoff: {len(zones)} zones, {len(names)} policies, {wall_s:.0f}s; fraction of own oracle: {fraction_text}; "
          + ("all targets met" if not failed else f"{len(failed)} target(s) missed: " + "; ".join(failed)))
    return 0 if not failed else 1


def _print_table(runs: dict, names: list[str]) -> None:
    """Per workload and policy: carbon and cost saving of the gate (and the oracle), zones together."""
    print(f"{'workload':<22} {'policy':<21} {'carbon %':>9} {'cost %':>8} {'oracle carbon %':>16} {'oracle cost %':>14}",
          file=sys.stderr)
    for workload in runs[names[0]]["together"]:
        for name in names:
            row = runs[name]["together"][workload]
            gate, oracle = row["carbon_sensors"], row["oracle"]
            print(f"{workload:<22} {name:<21} {gate['carbon_saving_pct']:>9.1f} {gate['cost_saving_pct']:>8.1f} "
                  f"{oracle['carbon_saving_pct']:>16.1f} {oracle['cost_saving_pct']:>14.1f}", file=sys.stderr)


def _plot(runs: dict, names: list[str], path: Path) -> None:
    """One panel per workload: every zone's cost change (x) against its carbon change (y), a marker per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(runs[names[0]]["per_zone"])
    fig, axes = plt.subplots(1, len(workloads), figsize=(5 * len(workloads), 4.5), squeeze=False)
    markers = dict(zip(names, "os^vD", strict=False))
    for ax, workload in zip(axes[0], workloads, strict=True):
        for name in names:
            per_zone = runs[name]["per_zone"][workload]
            xs = [-r["carbon_sensors"]["cost_saving_pct"] for r in per_zone.values()]
            ys = [-r["carbon_sensors"]["carbon_saving_pct"] for r in per_zone.values()]
            ax.scatter(xs, ys, marker=markers.get(name, "o"), label=name, alpha=0.8)
            if name == names[0]:
                for zone, x, y in zip(per_zone, xs, ys, strict=True):
                    ax.annotate(zone, (x, y), fontsize=7, alpha=0.7)
        ax.axhline(0, color="grey", lw=0.5)
        ax.axvline(0, color="grey", lw=0.5)
        ax.set_title(workload)
        ax.set_xlabel("cost change vs starting at once (%)")
        ax.set_ylabel("carbon change vs starting at once (%)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
