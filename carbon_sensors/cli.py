"""The ``carbon-sensors`` command: look at forecasts and plans from a terminal.

    carbon-sensors zones
    carbon-sensors forecast --zone DE --hours 24
    carbon-sensors plan --zone DE --deadline +8h --duration 1h
    carbon-sensors plan --zone DE --zone GB --deadline 2026-06-16T06:00+02:00 --duration 6h --json
    carbon-sensors simulate --trace DE_2021-2023_hourly.csv --workload nightly_enrichment --json
    carbon-sensors simulate --dag dags/catalog_enrichment.py --trace DE_2021-2023_hourly.csv
    carbon-sensors report --since 30d --by team --format csv --out carbon.csv
    carbon-sensors reconcile --stale-after 15m --json

``--at`` pretends it is another time (ISO-8601 with offset); ``--source`` takes ``embedded``
(default) or a CSV/Parquet file. ``report`` and ``reconcile`` read the run ledger named by ``--ledger``
or ``CARBON_SENSORS_LEDGER_URL`` (default: the SQLite file under ``$AIRFLOW_HOME``). Errors print one
line saying what to do and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from carbon_sensors import __version__
from carbon_sensors.cli_syntax import cli_wording, parse_moment, parse_span
from carbon_sensors.errors import CarbonSensorsError, ConfigurationError

__all__ = ["build_parser", "main", "parse_span"]

def _moment(text: str | None, now: datetime, option: str = "--at") -> datetime:
    return parse_moment(text, now, option)


def _source(args: argparse.Namespace):
    from carbon_sensors.signals import EmbeddedProfileSource, FileSource

    if args.source in (None, "embedded"):
        return EmbeddedProfileSource()
    return FileSource(
        args.source, time_column=args.time_column, value_column=args.value_column,
        signal=args.signal, timezone=args.timezone,
    )


def _cmd_zones(args: argparse.Namespace) -> int:
    from carbon_sensors.signals import embedded_zones

    zones = list(embedded_zones())
    print(json.dumps(zones) if args.json else "\n".join(zones))
    return 0


def _cmd_forecast(args: argparse.Namespace) -> int:
    from carbon_sensors.signals import run_sync

    now = _moment(args.at, datetime.now(UTC))
    hours = parse_span(args.hours, "--hours", bare="hours")  # --hours 24 is 24 hours, as is 24h
    if hours <= timedelta(0):
        raise ConfigurationError(f"--hours {args.hours} must be longer than zero, e.g. --hours 24")
    source = _source(args)
    source.check_zone(args.zone)
    forecast = run_sync(source.fetch(args.zone, now, now + hours, now=now))
    points = _rows(forecast.points(), now, hours)
    if args.json:
        print(json.dumps({
            "zone": forecast.zone, "source": forecast.source, "signal": forecast.signal,
            "issued_at": forecast.issued_at.isoformat(), "unit": "gCO2eq/kWh",
            "points": [{"start": t.isoformat(), "intensity": v} for t, v in points],
        }, indent=2))
        return 0
    low, top = min(v for _, v in points), max(v for _, v in points)
    # Bars start near the lowest value, not at zero, so a dip from 478 to 450 shows.
    base = max(0.0, low - (top - low) * 0.25) if top > low else 0.0
    base = float(int(base // 10 * 10))
    print(f"{forecast.zone} · {forecast.source} · {forecast.signal} intensity, gCO2eq/kWh "
          f"(bars start at {base:.0f})")
    for t, v in points:
        bar = round(30 * (v - base) / (top - base)) if top > base else 30
        print(f"{t:%Y-%m-%d %H:%M} UTC  {v:7.1f}  {'█' * max(1, bar)}")
    return 0


def _rows(points: list, now: datetime, hours: timedelta) -> list:
    """The slots of the next ``hours``: from the slot that holds ``now``, ``hours`` long (24h: 24 hourly rows)."""
    first = max((t for t, _ in points if t <= now), default=points[0][0])
    return [(t, v) for t, v in points if first <= t < first + hours]


def _cmd_plan(args: argparse.Namespace) -> int:
    from carbon_sensors.deadlines import does_not_fit
    from carbon_sensors.planning import Policy, plan
    from carbon_sensors.signals import run_sync

    now = _moment(args.at, datetime.now(UTC))
    deadline = _moment(args.deadline, now, "--deadline")
    if deadline <= now:
        raise ConfigurationError(
            f"--deadline {args.deadline} ({deadline:%Y-%m-%d %H:%M} UTC) is already past; give a later one, e.g. +8h"
        )
    # A bare number needs a unit here: --duration 6 could be six seconds or six hours.
    duration = parse_span(args.duration, "--duration", bare="refuse")
    if duration <= timedelta(0):
        raise ConfigurationError(f"--duration {args.duration} must be longer than zero, e.g. --duration 1h")
    policy = Policy(
        max_delay=parse_span(args.max_delay, "--max-delay", bare="refuse") if args.max_delay else None,
        threshold=args.threshold,
        min_saving_pct=args.min_saving_pct,
        safety_margin=parse_span(args.safety_margin, "--safety-margin", bare="refuse") if args.safety_margin else None,
    )
    # The same case as a gate refused at parse time: a job that cannot finish in time is an error.
    margin = policy.margin_for(duration)
    problem = does_not_fit(duration, margin, deadline - now, f"before --deadline {args.deadline}")
    if problem:
        fix = "give a later --deadline or a shorter --duration"
        if deadline - now > duration:
            fix += ", or a smaller --safety-margin (e.g. --safety-margin 0)"
        raise ConfigurationError(f"{problem.replace('the expected duration', '--duration', 1)}; {fix}")
    source = _source(args)
    for zone in args.zone:
        source.check_zone(zone)
    forecasts = [run_sync(source.fetch(z, now, deadline, now=now)) for z in args.zone]
    if policy.persistence_prior:  # as a gate plans: blended with the measured past where the source has it
        from carbon_sensors.gate import with_recent_past

        forecasts = run_sync(with_recent_past(source, forecasts, now, deadline))
    result = plan(forecasts, now=now, deadline=deadline, expected_duration=duration, policy=policy)
    decided = result.to_dict()
    if args.json:
        print(json.dumps(decided, indent=2))
    else:
        print(result.reason)
        print(f"  status          {decided['status']}")  # wait, go or forced, as in --json and the XCom decision
        print(f"  planned start   {result.planned_start:%Y-%m-%d %H:%M} UTC in {result.zone}")
        print(f"  latest start    {result.latest_start:%Y-%m-%d %H:%M} UTC (deadline {result.deadline:%Y-%m-%d %H:%M} UTC)")
        now_text = f"{_g(result.intensity_now)} now"
        if len(args.zone) > 1:
            now_text += f" in {args.zone[0]}"
            if result.best_now_zone not in (None, args.zone[0]):
                now_text += f", {_g(result.intensity_best_now)} now in {result.best_now_zone}"
        print(f"  duration        {duration} (safety margin {format_span(margin)})")
        print(f"  intensity       {now_text}, {_g(result.intensity_planned)} planned"
              f" ({result.signal}, {result.source})")
        versus = ""
        if result.decision == "wait" and len(args.zone) > 1 and result.best_now_zone:
            versus = f" vs starting now in {result.best_now_zone}"
        elif result.zone != args.zone[0]:
            versus = f" vs starting now in {args.zone[0]}"
        print(f"  expected saving {result.expected_saving_pct:.1f}%{versus}")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    import time

    from carbon_sensors.planning import Policy
    from carbon_sensors.price_traces import load_price_traces
    from carbon_sensors.simulate import (
        STRATEGIES,
        WORKLOADS,
        Overrun,
        SimulationSettings,
        load_trace,
        load_workloads,
        parse_workload,
        simulate,
    )

    gated = _gated_tasks(args)  # --dag / --flow: the file's gated tasks are the workloads
    workloads = []
    for name in [] if gated else args.workload or ["all"]:
        if name == "all":
            workloads.extend(WORKLOADS.values())
        elif name in WORKLOADS:
            workloads.append(WORKLOADS[name])
        elif ":" in name:
            workloads.append(parse_workload(name))
        else:
            raise ConfigurationError(
                f"unknown workload {name!r}; use one of {', '.join(WORKLOADS)}, 'all', or 'name:every=4h,duration=1h,slack=4h'"
            )
    if args.workload_file:
        workloads.extend(load_workloads(args.workload_file))
    strategies = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
    traces = [load_trace(path, args.column, time_column=args.time_column, timezone=args.timezone)
              for path in args.trace]
    if args.zones_group and not gated:
        group = [z.strip() for z in args.zones_group.split(",") if z.strip()]
        by_zone = {t.zone: t for t in traces}
        missing = [z for z in group if z not in by_zone]
        if missing:
            raise ConfigurationError(f"--zones-group names {', '.join(missing)} but no --trace for them")
        groups = [[by_zone[home], *(by_zone[z] for z in group if z != home)] for home in group]
    else:
        groups = [[t] for t in traces]
    prices = [p for path in args.price_trace or () for p in load_price_traces(
        path, currency=args.currency, value_column=args.price_column,
        timezone=args.timezone)]
    settings = SimulationSettings(
        workloads=tuple(workloads), strategies=strategies or STRATEGIES, sigma24=args.sigma24, rho=args.rho,
        seeds=args.seeds, overrun=Overrun.parse(args.overrun), archive=args.forecast_archive,
        forecast_model=args.forecast_model, price_sigma24=args.price_sigma24, power_kw=args.power_kw,
        policy=_simulate_policy(args, Policy, prices),
    )
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        if not sys.stderr.isatty() and done not in (total,) and done % max(1, total // 10):
            return
        width = 30
        elapsed = time.monotonic() - started
        eta = elapsed / done * (total - done) if done else 0.0
        bar = "#" * round(width * done / total)
        print(f"\rsimulating [{bar:<{width}}] {done}/{total} units, {elapsed:.0f}s elapsed, ~{eta:.0f}s left",
              end="\n" if done == total else "", file=sys.stderr, flush=True)

    if gated:
        from carbon_sensors.simulate_dag import Overrides, simulate_gated

        overrides = Overrides(slack=_opt_span(args.slack, "--slack"), every=_opt_span(args.every, "--every"),
                              duration=_opt_span(args.duration, "--duration"), min_saving_pct=args.min_saving_pct,
                              persistence_prior=False if args.no_persistence_prior else None)
        out = simulate_gated(gated, traces, settings, overrides=overrides, prices=prices, workers=args.workers,
                             progress=progress)
    else:
        out = simulate(groups, settings, prices=prices, workers=args.workers, progress=progress)
    if args.plot:
        _plot(out, args.plot)
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"Forecast model: {out['forecast_model']}")
    if gated:
        from carbon_sensors.simulate_dag import describe

        print(f"Gated tasks of {args.dag or args.flow}, each backtested with its own settings:")
        print("\n".join("  " + line for line in describe(out["gated"])))
    group_zones = {info["workload"]: info["zones"] for info in out.get("gated", ())}
    priced = "prices" in out
    if priced:
        print(f"Price forecasts: {out['prices']['forecast_model']}; planned on by: "
              f"{', '.join(out['prices']['planned_on_prices']) or 'none (this planner takes no prices)'}")
    header = ("workload", "strategy", "saving_pct", "of_oracle", "misses", "caused_misses", "mean_delay_h",
              "forced_pct", *(("cost_saving_pct", "mean_price") if priced else ()), "zones")
    row_format = "{:<20} {:<15} {:>10} {:>9} {:>6} {:>13} {:>12} {:>10}" + (" {:>15} {:>10}" if priced else "") + "  {}"
    print(row_format.format(*header))
    totals: dict[tuple[str, str], list] = {}
    for row in out["results"]:
        totals.setdefault((row["workload"], row["strategy"]), []).append(row)
    for (workload, strategy), rows in sorted(totals.items(), key=lambda kv: (kv[0][0], STRATEGIES.index(kv[0][1]))):
        summary = out["summary"][workload][strategy]
        jobs = sum(r["jobs"] for r in rows)
        fraction = summary["fraction_of_oracle"]
        zones = ",".join(group_zones.get(workload) or sorted({r["zone"] for r in rows})) + (
            " (one group)" if args.zones_group or len(group_zones.get(workload, ())) > 1 else "")
        print(row_format.format(
            workload, strategy, f"{summary['savings_vs_now'] * 100:.1f}%", "" if fraction is None else f"{fraction:.3f}",
            sum(r["deadline_misses"] for r in rows), sum(r["caused_misses"] for r in rows),
            f"{sum(r['mean_delay_h'] * r['jobs'] for r in rows) / jobs:.1f}",
            f"{sum(r['forced_rate'] * r['jobs'] for r in rows) / jobs * 100:.1f}%",
            *((f"{summary['cost_savings_vs_now'] * 100:.1f}%",
               f"{sum(r['mean_price'] * r['jobs'] for r in rows) / jobs:.2f}") if priced else ()), zones,
        ))
    print("saving_pct: mean intensity saved against starting at once; of_oracle: the share of the saving "
          "perfect foresight gets;\nmisses: deadlines missed; caused_misses: those that starting at once would "
          "have met; mean_delay_h: mean wait;\nforced_pct: jobs started at their latest start, the deadline "
          "winning over the forecast; zones: the traces' zones"
          + (", each job free to run in any of them (--zones-group)." if args.zones_group else "."))
    if priced:
        print(f"cost_saving_pct: energy cost saved against starting at once; mean_price: the mean actual price "
              f"over each job's run ({out['prices']['unit']}).")
    return 0


def _simulate_policy(args: argparse.Namespace, policy_type: type, prices: Sequence) -> object:
    """The simulate command's Policy, with the price settings this planner's Policy takes."""
    from dataclasses import fields

    knobs = {name: value for name, value in (
        ("max_cost_increase_pct", args.max_cost_increase_pct), ("objective", args.objective),
        ("max_intensity", args.max_intensity), ("carbon_price_per_tonne", args.carbon_price_per_tonne),
    ) if value is not None}
    known = {f.name for f in fields(policy_type)}
    unknown = [name for name in knobs if name not in known]
    if unknown:
        raise ConfigurationError(
            f"{', '.join('--' + n.replace('_', '-') for n in unknown)}: this carbon-sensors' planner does not take "
            "price settings yet; upgrade carbon-sensors, or drop them to backtest carbon only")
    if knobs and prices and "currency" in known:
        knobs["currency"] = args.currency or prices[0].actual.currency
    from carbon_sensors.planning import DEFAULT_MIN_SAVING_PCT

    minimum = DEFAULT_MIN_SAVING_PCT if args.min_saving_pct is None else args.min_saving_pct
    if getattr(args, "no_persistence_prior", False) and "persistence_prior" in known:
        knobs["persistence_prior"] = False
    return policy_type(min_saving_pct=minimum, **knobs)


def _opt_span(text: str | None, option: str) -> timedelta | None:
    return None if text is None else parse_span(text, option, bare="refuse")


def _gated_tasks(args: argparse.Namespace) -> list:
    """The gated tasks of ``--dag`` or ``--flow`` (an empty list without either), the flags checked against them."""
    from_file = ("--slack", args.slack), ("--every", args.every), ("--duration", args.duration), ("--task", args.task)
    if not (args.dag or args.flow):
        if given := [flag for flag, value in from_file if value is not None]:
            raise ConfigurationError(f"{', '.join(given)} go with --dag or --flow (they stand in for what the file "
                                     "says); for a --workload write them into it, e.g. 'etl:every=24h,slack=8h,...'")
        return []
    if args.dag and args.flow:
        raise ConfigurationError("give one of --dag or --flow, not both")
    clash = [flag for flag, value in (("--workload", args.workload), ("--workload-file", args.workload_file),
                                      ("--zones-group", args.zones_group), ("--max-cost-increase-pct",
                                      args.max_cost_increase_pct), ("--objective", args.objective),
                                      ("--max-intensity", args.max_intensity),
                                      ("--carbon-price-per-tonne", args.carbon_price_per_tonne)) if value]
    if clash:
        raise ConfigurationError(f"{', '.join(clash)}: with --{'dag' if args.dag else 'flow'} the workloads, zones and "
                                 "policy are the gates' own; drop them, or change the gate in the file")
    from carbon_sensors.gated_files import load_gated_tasks

    return load_gated_tasks(args.dag or args.flow, "dag" if args.dag else "flow", args.task)


def _plot(out: dict, path: str) -> None:
    fig = plot_figure(out)
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)


def plot_figure(out: dict):
    """The backtest's bar chart (a matplotlib Figure): saving vs starting at once, per workload and strategy."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigurationError("--plot needs matplotlib; pip install 'carbon-sensors[plot]'") from None
    summary = out["summary"]
    workloads = list(summary)
    strategies = [s for s in ("commit_once", "carbon_sensors", "oracle") if s in next(iter(summary.values()))]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.8 / max(1, len(strategies))
    for k, strategy in enumerate(strategies):
        values = [summary[w][strategy]["savings_vs_now"] * 100 for w in workloads]
        bars = ax.bar([i + k * width for i in range(len(workloads))], values, width, label=strategy)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks([i + width * (len(strategies) - 1) / 2 for i in range(len(workloads))], workloads, fontsize=8)
    ax.set_ylabel("carbon saved vs starting at once (%)")
    ax.set_title(f"Backtest: {out['settings']['sigma24']} forecast error at 24 h, {out['settings']['seeds']} seed(s)")
    ax.margins(y=0.15)  # room above the tallest bar's label
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # beside the bars, never on a label
    fig.tight_layout()
    return fig


def _when(text: str, now: datetime, option: str) -> datetime:
    """A span back from ``now`` (``30d``, ``12h``) or an ISO-8601 time with an offset."""
    from carbon_sensors.timeutil import is_span

    if is_span(text) or re.fullmatch(r"\s*[-+]?\d+(\.\d*)?\s*", text):  # a bare number: refused, 30 what?
        return now - parse_span(text, option, bare="refuse")
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError(
            f"cannot read {option} {text!r}; write a span back from now (30d, 12h) or an ISO time (2026-06-01T00:00Z)"
        ) from None
    if moment.tzinfo is None:
        raise ConfigurationError(f"{option} {text!r} has no time zone; add one, e.g. 2026-06-01T00:00Z or "
                                 "2026-06-01T00:00+02:00")
    return moment.astimezone(UTC)


def _cmd_report(args: argparse.Namespace) -> int:
    from carbon_sensors.ledger import Ledger, mask_url
    from carbon_sensors.report import build_report, write_report

    now = datetime.now(UTC)
    since = _when(args.since, now, "--since")
    until = _when(args.until, now, "--until") if args.until else None
    with Ledger(args.ledger) as ledger:
        records = ledger.records(since=since, until=until)
    if not records and args.format == "table" and args.out is None:
        print(f"no runs in the ledger at {mask_url(ledger.url)} since {since:%Y-%m-%d %H:%M} UTC")
        return 0
    table = build_report(records, by=args.by)
    write_report(table, args.format, args.out, wide=args.wide)
    if args.out is not None:
        print(f"wrote {args.out}: {len(table)} rows from {len(records)} runs")
    return 0


def _cmd_reconcile(args: argparse.Namespace) -> int:
    from carbon_sensors.ledger import Ledger

    stale_after = parse_span(args.stale_after, "--stale-after")  # a bare number is seconds, as in the help
    if stale_after < timedelta(0):
        raise ConfigurationError(f"--stale-after {args.stale_after} must be zero or longer, e.g. --stale-after 15m")
    with Ledger(args.ledger, spool_dir=args.spool_dir) as ledger:
        flushed = ledger.flush_spool()
        abandoned = ledger.abandon_stale(stale_after, datetime.now(UTC))
        repriced = None
        if not args.no_reprice:
            try:
                from carbon_sensors.accounting import reprice_with_actuals
            except ImportError as exc:
                raise ConfigurationError(
                    f"re-pricing is not available in this installation ({exc}); run reconcile with --no-reprice"
                ) from None
            repriced = ledger.reprice(reprice_with_actuals)
    if args.json:
        print(json.dumps({"spooled_flushed": flushed, "abandoned": len(abandoned), "repriced": repriced}))
        return 0
    print(f"{flushed} spooled record{'s' * (flushed != 1)} written to the ledger")
    print(f"{len(abandoned)} stale run{'s' * (len(abandoned) != 1)} closed as abandoned "
          f"(no heartbeat for {args.stale_after})")
    for key in abandoned:
        print(f"  {key.orchestrator} {key.dag_id}.{key.task_id} {key.run_id} try {key.try_number}"
              + (f" map {key.map_index}" if key.map_index >= 0 else ""))
    if repriced is None:
        print("re-pricing skipped (--no-reprice)")
    else:
        print(f"{repriced} record{'s' * (repriced != 1)} re-priced with measured intensities")
    return 0


def format_span(delta: timedelta) -> str:
    from carbon_sensors.durations import format_span as _format

    return _format(delta)


def _g(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} g/kWh"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carbon-sensors", description="Carbon-aware scheduling: forecasts and plans.")
    parser.add_argument("--version", action="version", version=f"carbon-sensors {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_source(p: argparse.ArgumentParser) -> None:
        p.add_argument("--source", default="embedded", help="'embedded' (default) or a CSV/Parquet file")
        p.add_argument("--time-column", help="the file's time column (default: recognised by name)")
        p.add_argument("--value-column", help="the file's intensity column (default: recognised by name)")
        p.add_argument("--timezone", help="time zone of naive timestamps in the file")
        p.add_argument("--signal", default="average", choices=["average", "marginal"])
        p.add_argument("--at", help="pretend it is this time (ISO-8601 with offset, or +2h)")
        p.add_argument("--json", action="store_true", help="print JSON")

    zones = sub.add_parser("zones", help="list the zones of the embedded profile")
    zones.add_argument("--json", action="store_true")
    zones.set_defaults(func=_cmd_zones)

    forecast = sub.add_parser("forecast", help="show a zone's forecast")
    forecast.add_argument("--zone", required=True)
    forecast.add_argument("--hours", default="24",
                          help="how far ahead: a number of hours (24) or a span (90min, 2d); default 24")
    with_source(forecast)
    forecast.set_defaults(func=_cmd_forecast)

    plan = sub.add_parser("plan", help="plan a job: when (and where) should it start?")
    plan.add_argument("--zone", required=True, action="append", help="allowed zone; repeat for more (home first)")
    plan.add_argument("--deadline", required=True, help="ISO-8601 with offset, or +8h from now")
    plan.add_argument("--duration", required=True, help="expected duration, with its unit, e.g. 1h or 90m")
    plan.add_argument("--max-delay", help="never wait longer than this, e.g. 4h (0: start at once)")
    plan.add_argument("--threshold", type=float, help="start at once at or below this intensity (g/kWh)")
    plan.add_argument("--min-saving-pct", type=float, default=3.0, help="only wait for at least this saving")
    plan.add_argument("--safety-margin", help="kept free before the deadline (default 10%% of duration, >= 5 min)")
    with_source(plan)
    plan.set_defaults(func=_cmd_plan)

    sim = sub.add_parser("simulate", help="backtest strategies on real intensity traces")
    sim.add_argument("--trace", required=True, action="append", help="hourly trace CSV/Parquet; repeat for more zones")
    sim.add_argument("--column", "--value-column", dest="column",
                     help="the trace's intensity column (default: recognised by name)")
    sim.add_argument("--time-column", help="the trace's time column (default: recognised by name)")
    sim.add_argument("--timezone", help="time zone of naive timestamps in the trace, e.g. UTC")
    sim.add_argument("--workload", action="append",
                     help="a preset (nightly_enrichment, embedding_refresh, index_rebuild, weekly_retrain), 'all' "
                          "(default), or custom 'name:every=4h,duration=1h,slack=4h[,offset=18h][,weekday=0]'; repeat")
    sim.add_argument("--workload-file", help="custom workloads, one per line")
    sim.add_argument("--dag", help="backtest the gated tasks of this Airflow DAG file as they are: their zones, "
                                   "schedule, deadline, expected duration and policy")
    sim.add_argument("--flow", help="the same for a Prefect flow file (@carbon_aware_flow; needs Prefect installed)")
    sim.add_argument("--task", help="with --dag or --flow: only this gated task (its task id)")
    sim.add_argument("--slack", help="with --dag or --flow: each run's deadline this long after its data interval "
                                     "end (for a deadline the backtest cannot evaluate), e.g. 8h")
    sim.add_argument("--every", help="with --dag or --flow: a run every this long from 00:00 UTC, for a schedule "
                                     "without run times (None, assets) or in place of it, e.g. 24h")
    sim.add_argument("--duration", help="with --dag or --flow: the expected duration, where the gate learns it, e.g. 1h")
    sim.add_argument("--sigma24", type=float, default=0.10, help="forecast error (1 sigma, relative) at 24 h")
    sim.add_argument("--rho", type=float, default=0.9, help="hour-to-hour correlation of forecast errors")
    sim.add_argument("--seeds", type=int, default=3)
    sim.add_argument("--strategies", default="now,commit_once,replan,carbon_sensors,oracle",
                     help="comma-separated, from now, commit_once, replan, carbon_sensors, oracle (default: all)")
    sim.add_argument("--forecast-model", default="mmfe",
                     help="mmfe (default: martingale forecast evolution) or fixed (the earlier model, for comparison)")
    sim.add_argument("--overrun", default="none", help="none, or lognormal:p95=1.5")
    sim.add_argument("--zones-group", help="zones a workload may run in (spatial shifting), e.g. DE,GB")
    sim.add_argument("--forecast-archive", help="real forecasts (issued_at,target_time,value) instead of the model")
    sim.add_argument("--min-saving-pct", type=float,
                     help="the planner's minimum saving (default 3; with --dag, in place of the gates' own)")
    sim.add_argument("--no-persistence-prior", action="store_true",
                     help="carbon_sensors plans on the forecasts as they are, not blended with the measured past")
    sim.add_argument("--price-trace", action="append",
                     help="hourly market prices (CSV/Parquet, per MWh) for a --trace's zone, matched by zone; repeat")
    sim.add_argument("--price-column", help="the price trace's price column (default: recognised by name)")
    sim.add_argument("--currency", help="the price traces' and the policy's currency, e.g. USD (default: as the "
                                        "traces' column names say); never converted")
    sim.add_argument("--price-sigma24", type=float, default=0.10,
                     help="price forecast error (1 sigma) at 24 h, relative to the price level (default 0.10)")
    sim.add_argument("--power-kw", type=float, default=1.0,
                     help="each job's mean power draw, for its energy and energy cost (default 1 kW)")
    sim.add_argument("--max-cost-increase-pct", type=float,
                     help="the cleanest window whose expected energy cost is within this %% of starting now")
    sim.add_argument("--objective", choices=["carbon", "cost"], help="what the planner minimises (default carbon)")
    sim.add_argument("--max-intensity", type=float,
                     help="with --objective cost: the cheapest window whose intensity stays under this (g/kWh)")
    sim.add_argument("--carbon-price-per-tonne", type=float,
                     help="an internal carbon price (per tonne CO2eq, in the currency) folding carbon into cost")
    sim.add_argument("--workers", type=int, help="processes (default: all cores)")
    sim.add_argument("--json", action="store_true", help="print the full JSON")
    sim.add_argument("--plot", help="write a bar chart of the savings to this PNG")
    sim.set_defaults(func=_cmd_simulate)

    report = sub.add_parser("report", help="carbon, savings, tokens and cost from the run ledger")
    report.add_argument("--since", default="30d", help="a span back from now (30d, 12h) or an ISO time (default 30d)")
    report.add_argument("--until", help="a span back from now or an ISO time (default: now)")
    report.add_argument("--by", default="dag", choices=["dag", "task", "team", "zone", "project"])
    report.add_argument("--format", default="table", choices=["table", "csv", "parquet", "json"])
    report.add_argument("--out", help="write to this file (needed for parquet; default: stdout)")
    report.add_argument("--wide", action="store_true",
                        help="every column in the table (tokens by kind, per-1k-token figures, delay, measured share)")
    report.add_argument("--ledger", help="the ledger's URL (default: CARBON_SENSORS_LEDGER_URL or the SQLite file)")
    report.set_defaults(func=_cmd_report)

    reconcile = sub.add_parser("reconcile", help="land spooled records, close dead runs, re-price with actuals")
    reconcile.add_argument("--ledger", help="the ledger's URL (default: CARBON_SENSORS_LEDGER_URL or the SQLite file)")
    reconcile.add_argument("--stale-after", default="15m",
                           help="close started runs without a heartbeat for this long as abandoned (default 15m; "
                                "a bare number is seconds)")
    reconcile.add_argument("--no-reprice", action="store_true", help="skip re-pricing forecast-based records")
    reconcile.add_argument("--spool-dir", help="the spool (default: CARBON_SENSORS_SPOOL_DIR or next to the SQLite file)")
    reconcile.add_argument("--json", action="store_true", help="print the counts as JSON")
    reconcile.set_defaults(func=_cmd_reconcile)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CarbonSensorsError as exc:
        print(f"carbon-sensors: error: {cli_wording(str(exc), getattr(args, 'flag_names', None))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into head: stop quietly
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
