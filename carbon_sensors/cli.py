"""The ``carbon-sensors`` command: look at forecasts and plans from a terminal.

    carbon-sensors zones
    carbon-sensors forecast --zone DE --hours 24
    carbon-sensors plan --zone DE --deadline +8h --duration 1h
    carbon-sensors plan --zone DE --zone GB --deadline 2026-06-16T06:00+02:00 --duration 6h --json

``--at`` pretends it is another time (ISO-8601 with offset); ``--source`` takes ``embedded``
(default) or a CSV/Parquet file. Errors print one line saying what to do and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from carbon_sensors import __version__
from carbon_sensors.errors import CarbonSensorsError, ConfigurationError

_SPAN = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m(?:in)?)?\s*$")


def parse_span(text: str) -> timedelta:
    """``90m``, ``1h30m``, ``2d``, ``1.5h`` or a number of seconds, as a timedelta."""
    try:
        return timedelta(seconds=float(text))
    except ValueError:
        pass
    match = _SPAN.match(text.lower())
    if not match or not any(match.groups()):
        raise ConfigurationError(f"cannot read the duration {text!r}; write e.g. 90m, 1h30m, 2d or 3600")
    days, hours, minutes = (float(g) if g else 0.0 for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes)


def _moment(text: str | None, now: datetime) -> datetime:
    from carbon_sensors.timeutil import parse_utc

    if text is None:
        return now
    if text.startswith("+"):
        return now + parse_span(text[1:])
    return parse_utc(text, "time")


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
    source = _source(args)
    forecast = run_sync(source.fetch(args.zone, now, now + parse_span(args.hours), now=now))
    points = forecast.points()
    if args.json:
        print(json.dumps({
            "zone": forecast.zone, "source": forecast.source, "signal": forecast.signal,
            "issued_at": forecast.issued_at.isoformat(), "unit": "gCO2eq/kWh",
            "points": [{"start": t.isoformat(), "intensity": v} for t, v in points],
        }, indent=2))
        return 0
    top = max(v for _, v in points) or 1.0
    print(f"{forecast.zone} · {forecast.source} · {forecast.signal} intensity, gCO2eq/kWh")
    for t, v in points:
        print(f"{t:%Y-%m-%d %H:%M} UTC  {v:7.1f}  {'█' * round(30 * v / top)}")
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from carbon_sensors.planning import Policy, plan
    from carbon_sensors.signals import run_sync

    now = _moment(args.at, datetime.now(UTC))
    deadline = _moment(args.deadline, now)
    if deadline <= now:
        raise ConfigurationError(f"the deadline {deadline.isoformat()} is already past; give a later one, e.g. +8h")
    policy = Policy(
        max_delay=parse_span(args.max_delay) if args.max_delay else None,
        threshold=args.threshold,
        min_saving_pct=args.min_saving_pct,
        safety_margin=parse_span(args.safety_margin) if args.safety_margin else None,
    )
    source = _source(args)
    forecasts = [run_sync(source.fetch(z, now, deadline, now=now)) for z in args.zone]
    result = plan(forecasts, now=now, deadline=deadline, expected_duration=parse_span(args.duration), policy=policy)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.reason)
        print(f"  decision        {result.decision}")
        print(f"  planned start   {result.planned_start:%Y-%m-%d %H:%M} UTC in {result.zone}")
        print(f"  latest start    {result.latest_start:%Y-%m-%d %H:%M} UTC (deadline {result.deadline:%Y-%m-%d %H:%M} UTC)")
        print(f"  intensity       {_g(result.intensity_now)} now, {_g(result.intensity_planned)} planned"
              f" ({result.signal}, {result.source})")
        print(f"  expected saving {result.expected_saving_pct:.1f}%")
    return 0


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
    forecast.add_argument("--hours", default="24h", help="how far ahead (default 24h)")
    with_source(forecast)
    forecast.set_defaults(func=_cmd_forecast)

    plan = sub.add_parser("plan", help="plan a job: when (and where) should it start?")
    plan.add_argument("--zone", required=True, action="append", help="allowed zone; repeat for more (home first)")
    plan.add_argument("--deadline", required=True, help="ISO-8601 with offset, or +8h from now")
    plan.add_argument("--duration", required=True, help="expected duration, e.g. 1h or 90m")
    plan.add_argument("--max-delay", help="never wait longer than this, e.g. 4h")
    plan.add_argument("--threshold", type=float, help="start at once at or below this intensity (g/kWh)")
    plan.add_argument("--min-saving-pct", type=float, default=3.0, help="only wait for at least this saving")
    plan.add_argument("--safety-margin", help="kept free before the deadline (default 10%% of duration, >= 5 min)")
    with_source(plan)
    plan.set_defaults(func=_cmd_plan)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CarbonSensorsError as exc:
        print(f"carbon-sensors: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into head: stop quietly
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
