"""The planner's plans, pinned: every case built from the real hourly traces gives the plan it gave when pinned.

Each case is a planning problem cut from ``../shared/data/carbon``: a zone (and up to two more allowed
zones), a submission time in 2021-2023, a forecast of 1 to 168 hours (exact, or with an error that
grows with the horizon; hourly, half-hourly or quarter-hourly; aligned or not), a duration, a deadline
(no slack, at or past the latest start, or days of slack) and a policy (minimum saving, threshold,
maximum delay, safety margin). A case's digest is the sha256 of its plan's ``to_dict()`` with the
exact floats, or of the error it raised. ``tests/fixtures/planning_golden.json`` holds the digests;
after a change that is meant to change plans, rewrite it with ``python tests/test_planning_golden.py``
and say why in the commit.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import random
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

from carbon_sensors.cli_syntax import Span
from carbon_sensors.errors import CarbonSensorsError
from carbon_sensors.forecast import Forecast
from carbon_sensors.planning import Plan, Policy, plan

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "planning_golden.json"
ZONES = ("DE", "GB", "US-CAL-CISO", "US-TEX-ERCO", "US-MIDA-PJM", "US-NY-NYIS", "CA-ON", "AU-NSW", "BR-CS", "ZA")
COLUMNS = ("ci_lifecycle_gco2eq_per_kwh", "ci_direct_gco2eq_per_kwh")
CASES_PER_ZONE = 200
HOUR_S = 3600
T0_S = datetime(2021, 1, 1, tzinfo=UTC).timestamp()
M, H = timedelta(minutes=1), timedelta(hours=1)


@dataclass(frozen=True)
class Case:
    """One planning problem, named so that a plan that changed can be found."""

    name: str
    forecasts: tuple[Forecast, ...]
    now: datetime
    deadline: datetime
    duration: timedelta
    policy: Policy
    submitted_at: datetime | None

    def outcome(self) -> dict:
        """The plan's ``to_dict()`` and its exact floats, or the error's type and message."""
        try:
            p = plan(list(self.forecasts), now=self.now, deadline=self.deadline, expected_duration=self.duration,
                     policy=self.policy, submitted_at=self.submitted_at)
        except CarbonSensorsError as exc:
            return {"error": type(exc).__name__, "message": str(exc)}
        return {**p.to_dict(), "exact": _exact(p)}


def digest(outcome: dict) -> str:
    """The first 16 hex digits of the outcome's sha256 (as canonical JSON)."""
    return hashlib.sha256(json.dumps(outcome, sort_keys=True).encode()).hexdigest()[:16]


def _exact(p: Plan) -> dict:
    floats = ("intensity_now", "intensity_planned", "expected_saving_pct", "intensity_best_now")
    return {k: None if getattr(p, k) is None else float.hex(getattr(p, k)) for k in floats} | {
        "planned_start": p.planned_start.isoformat(), "latest_start": p.latest_start.isoformat()}


def branch(case: Case, outcome: dict) -> str:
    """Which way the planner went, read from the outcome: the golden must visit every way."""
    if "error" in outcome:
        return outcome["error"]
    reason = outcome["reason"]
    elsewhere = ", elsewhere" if outcome["zone"] != case.forecasts[0].zone else ""
    if outcome["status"] == "wait":
        why = "threshold" if "(at or below the" in reason else "cleanest"
        where = ("one zone" if "starting now in" not in reason
                 else "best now elsewhere" if re.search(r"starting now in \S+ \(", reason) else "best now home")
        return f"wait, {why}, {where}{elsewhere}"
    if outcome["deadline_at_risk"]:
        return f"deadline at risk{elsewhere}"
    if outcome["latest_start_reached"]:
        return f"latest start reached{elsewhere}"
    for phrase, name in (("maximum delay", "max delay passed"), ("would save only", "saving too small"),
                         ("already the cleanest", "already cleanest"), ("threshold", "under threshold now"),
                         (" instead of ", "run now elsewhere")):
        if phrase in reason:
            return name + ("" if name == "run now elsewhere" else elsewhere)
    raise AssertionError(f"a reason no branch names: {reason}")


# -- building the cases from the traces ------------------------------------------------------------------


@cache
def trace(data: Path, zone: str, column: str) -> tuple[float, ...]:
    """A zone's hourly intensities from 2021-01-01 00:00 UTC, one value an hour, no gaps."""
    with (data / "carbon" / f"{zone}_2021-2023_hourly.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    first = datetime.fromisoformat(rows[0]["datetime_utc"]).replace(tzinfo=UTC).timestamp()
    last = datetime.fromisoformat(rows[-1]["datetime_utc"]).replace(tzinfo=UTC).timestamp()
    assert first == T0_S and last == T0_S + (len(rows) - 1) * HOUR_S, f"{zone}: not hourly without gaps"
    return tuple(float(r[column]) for r in rows)


@cache
def whole_trace(data: Path, zone: str, column: str) -> Forecast:
    """The actual trace as one forecast: the oracle's view."""
    values = trace(data, zone, column)
    return Forecast.from_points([(_at(T0_S + i * HOUR_S), v) for i, v in enumerate(values)], zone=zone, source="actual")


def forecast(data: Path, zone: str, column: str, first_hour: int, hours: int, rng: random.Random, *,
             sigma: float = 0.0, step_min: int = 60, offset_s: int = 0, signal: str = "average") -> Forecast:
    """``hours`` of the trace from ``first_hour``, split into ``step_min`` slots, with an error growing with the horizon."""
    values = trace(data, zone, column)[first_hour:first_hour + hours]
    per_hour = 60 // step_min
    points = []
    for h, value in enumerate(values):
        for k in range(per_hour):
            noise = (rng.random() + rng.random() - 1.0) * sigma * math.sqrt((h + 1) / 24)
            wobble = 1.0 + (rng.random() - 0.5) * 0.1 if per_hour > 1 else 1.0
            v = min(2000.0, max(0.0, value * (1.0 + noise) * wobble))
            points.append((_at(T0_S + (first_hour + h) * HOUR_S + k * step_min * 60 + offset_s), round(v, 3)))
    return Forecast.from_points(points, zone=zone, source=f"trace-{column[3:7]}-{step_min}m", signal=signal,
                                resolution=timedelta(minutes=step_min), error_24h=sigma)


def random_case(data: Path, zone: str, k: int) -> Case:
    """A case drawn from a seed named by the zone and the number: the same case on every machine."""
    rng = random.Random(f"golden-{zone}-{k}")
    pick: Callable = rng.choice
    column = pick(COLUMNS)
    n_hours = len(trace(data, zone, column))
    hour = rng.randrange(48, n_hours - 24 * 9)
    now = _at(T0_S + hour * HOUR_S) + timedelta(minutes=pick([0, 0, 0, 7, 30, 59]), seconds=pick([0, 0, 0, 17]),
                                                 microseconds=pick([0, 0, 0, 0, 1, 500_000]))
    duration = pick([5 * M, 30 * M, H, H, 90 * M, 2 * H, 3 * H, 4 * H, 8 * H, 20 * H, None])
    duration = duration or timedelta(minutes=rng.randint(1, 12 * 60))
    kind = rng.random()
    if kind < 0.06:  # at the latest start, or up to the tolerance past it, or just beyond
        slack = -timedelta(seconds=pick([0, 1, 30, 59, 60, 61, 90]))
    elif kind < 0.12:  # the deadline is at risk
        slack = -timedelta(minutes=rng.randint(2, 600))
    elif kind < 0.45:
        slack = timedelta(minutes=rng.randint(1, 6 * 60))
    elif kind < 0.85:
        slack = timedelta(minutes=rng.randint(6 * 60, 48 * 60))
    else:  # beyond the forecast's end, for the shorter ones
        slack = timedelta(hours=rng.randint(48, 200))
    margin = pick([None, None, None, timedelta(0), 15 * M, 2 * H])
    policy_kwargs = {
        "min_saving_pct": pick([0.0, 3.0, 3.0, 3.0, 10.0, 25.0, 50.0, 99.9]),
        "max_delay": pick([None, None, None, None, None, timedelta(0), 30 * M, 2 * H, 6 * H, 24 * H]),
        "safety_margin": margin,
    }
    start = hour - pick([0, 0, 0, 1]) + (1 if rng.random() < 0.03 else 0)  # rarely, a forecast that starts after now
    sigma = pick([0.0, 0.0, 0.05, 0.1, 0.2])
    if rng.random() < 0.05:
        home = whole_trace(data, zone, column)
    else:
        home = forecast(data, zone, column, start, pick([1, 6, 24, 24, 48, 48, 48, 72, 72, 168]), rng, sigma=sigma,
                        step_min=pick([60, 60, 60, 30, 15]), offset_s=pick([0, 0, 0, 0, -17 * 60]))
    others = []
    for other in rng.sample([z for z in ZONES if z != zone], pick([0, 0, 0, 1, 1, 2])):
        others.append(forecast(
            data, other, column, hour - pick([0, 0, 1]) + (1 if rng.random() < 0.1 else 0), pick([24, 48, 72]), rng,
            sigma=pick([0.0, 0.1]), step_min=pick([60, 30]), signal="marginal" if rng.random() < 0.02 else "average"))
    if rng.random() < 0.35:
        level = sorted(home.values[: 48 * 4])
        policy_kwargs["threshold"] = pick([0.0, 2000.0, level[len(level) // 10], level[len(level) // 4],
                                           level[len(level) // 2]])
    if rng.random() < 0.05:  # durations the user typed keep their spelling in the reason
        duration = Span(duration, f"{round(duration.total_seconds() / 60)}m")
        if policy_kwargs["max_delay"] is not None:
            policy_kwargs["max_delay"] = Span(policy_kwargs["max_delay"], "a while")
    policy = Policy(**policy_kwargs)
    deadline = now + slack + duration + policy.margin_for(duration)
    submitted_at = None if rng.random() < 0.5 else now - timedelta(minutes=rng.randint(0, pick([60, 6 * 60, 24 * 60])))
    return Case(f"{zone}-{k:03d}", (home, *others), now, deadline, duration, policy, submitted_at)


def edge_cases(data: Path) -> Iterator[Case]:
    """Hand-picked corners: no slack, forced, does not fit, ties, thresholds, zones that cannot start now."""
    rng = random.Random("golden-edges")
    hour = 365 * 24 + 10  # 2022-01-01 10:00 UTC
    now = _at(T0_S + hour * HOUR_S)
    de = forecast(data, "DE", COLUMNS[0], hour, 48, rng)
    gb = forecast(data, "GB", COLUMNS[0], hour, 48, rng)
    late = forecast(data, "GB", COLUMNS[0], hour + 2, 48, rng)  # cannot start now
    flat = Forecast.from_points([(now + i * H, 300.0) for i in range(48)], zone="FLAT", source="flat")
    dip = Forecast.from_points([(now + i * H, 400.0 if i < 3 or i > 6 else 150.0) for i in range(48)], zone="DIP", source="dip")
    for slack_s in (0, -1, -59, -60, -61, -3600, 1, 60, 3600):
        for label, zones in (("de", (de,)), ("de-gb", (de, gb)), ("gb-de", (gb, de)), ("de-late", (de, late))):
            deadline = now + timedelta(seconds=slack_s) + 2 * H + Policy().margin_for(2 * H)
            yield Case(f"edge-slack{slack_s}-{label}", zones, now, deadline, 2 * H, Policy(), None)
    for name, zones, deadline, duration, policy in (
        ("no-slack-zero-margin", (de,), now + H, H, Policy(safety_margin=timedelta(0))),
        ("does-not-fit", (de,), now + H, 2 * H, Policy()),
        ("does-not-fit-two-zones", (de, gb), now + H, 2 * H, Policy()),
        ("duration-longer-than-forecast", (de,), now + 80 * H, 60 * H, Policy()),
        ("flat-tie", (flat,), now + 24 * H, H, Policy(min_saving_pct=0.0)),
        ("flat-tie-two-zones", (flat, flat), now + 24 * H, H, Policy(min_saving_pct=0.0)),
        ("threshold-zero", (de,), now + 24 * H, H, Policy(threshold=0.0)),
        ("threshold-top", (de,), now + 24 * H, H, Policy(threshold=2000.0)),
        ("threshold-now-flat", (flat,), now + 24 * H, H, Policy(threshold=300.0)),
        ("threshold-elsewhere-first", (flat, dip), now + 24 * H, H, Policy(threshold=200.0)),
        ("threshold-elsewhere-first-no-saving", (flat, dip), now + 24 * H, H, Policy(threshold=200.0, min_saving_pct=0.0)),
        ("threshold-elsewhere-first-high-saving", (flat, dip), now + 24 * H, H, Policy(threshold=200.0, min_saving_pct=80.0)),
        ("max-delay-zero", (de, gb), now + 24 * H, H, Policy(max_delay=timedelta(0))),
        ("max-delay-passed", (de,), now + 24 * H, H, Policy(max_delay=H)),
        ("min-saving-zero", (de,), now + 24 * H, H, Policy(min_saving_pct=0.0)),
        ("min-saving-high", (de, gb), now + 24 * H, H, Policy(min_saving_pct=99.9)),
        ("home-cannot-start-now", (late,), now + 24 * H, H, Policy()),
        ("home-cannot-start-now-forced", (late, de), now + 2 * H, 2 * H, Policy()),
        ("other-cannot-start-now", (de, late), now + 24 * H, H, Policy()),
        ("typed-spans", (de,), now + 24 * H, Span(3 * H, "3 hours"), Policy(max_delay=Span(10 * H, "10h"))),
    ):
        yield Case(f"edge-{name}", zones, now, deadline, duration, policy, None)
    for h in range(0, 24 * 7, 5):  # thresholds across zones, through a week
        at = _at(T0_S + (hour + h) * HOUR_S)
        de_h, gb_h = (forecast(data, z, COLUMNS[1], hour + h, 36, rng, sigma=0.05, step_min=30) for z in ("DE", "GB"))
        for label, zones in (("de-gb", (de_h, gb_h)), ("gb-de", (gb_h, de_h))):
            level = sorted(v for f in zones for v in f.values)
            for cut, saving in ((5, 0.0), (5, 3.0), (3, 3.0)):
                policy = Policy(threshold=level[len(level) // cut], min_saving_pct=saving)
                yield Case(f"edge-threshold-{h}-{label}-{cut}-{saving:g}", zones, at, at + 30 * H, 3 * H, policy, None)
    yield Case("edge-submitted-long-ago", (de,), now, now + 30 * H, H, Policy(max_delay=6 * H), now - 5 * H)
    yield Case("edge-naive-now", (de,), now.replace(tzinfo=None), now + 24 * H, H, Policy(), None)
    yield Case("edge-zero-duration", (de,), now, now + 24 * H, timedelta(0), Policy(), None)
    yield Case("edge-no-forecasts", (), now, now + 24 * H, H, Policy(), None)


def cases(data: Path) -> list[Case]:
    """The edge cases, then ``CASES_PER_ZONE`` drawn cases for each zone."""
    return [*edge_cases(data), *(random_case(data, z, k) for z in ZONES for k in range(CASES_PER_ZONE))]


def golden(data: Path) -> dict:
    """The fixture's content: the digest of every case, and how many cases went each way."""
    digests, branches = {}, Counter()
    for case in cases(data):
        outcome = case.outcome()
        digests[case.name] = digest(outcome)
        branches[branch(case, outcome)] += 1
    return {"cases": len(digests), "branches": dict(sorted(branches.items())), "digests": digests}


def _at(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


# -- the test -------------------------------------------------------------------------------------------


def test_plans_are_the_pinned_ones(shared_data):
    """Every case gives the plan (or the error) it gave when the fixture was written, bit for bit."""
    expected = json.loads(GOLDEN.read_text())
    actual = golden(shared_data)
    assert actual["cases"] == expected["cases"] and actual["digests"].keys() == expected["digests"].keys()
    changed = [name for name, digest in actual["digests"].items() if expected["digests"][name] != digest]
    if changed:
        by_name = {case.name: case for case in cases(shared_data)}
        first = json.dumps(by_name[changed[0]].outcome(), indent=1, sort_keys=True)
        raise AssertionError(f"{len(changed)} of {actual['cases']} plans changed: {changed[:10]}; the first is now\n{first}")
    assert actual["branches"] == expected["branches"]


def test_the_cases_visit_every_branch_of_the_planner():
    """Each way a plan can go is taken by at least three cases, and each error the planner raises by one."""
    branches = json.loads(GOLDEN.read_text())["branches"]
    ways = {name: n for name, n in branches.items() if not name.endswith("Error")}
    assert len(ways) == 19 and min(ways.values()) >= 3, ways
    assert {"ConfigurationError", "DeadlineError", "ForecastCoverageError", "SignalMismatchError"} <= branches.keys()


if __name__ == "__main__":
    data = Path(__file__).resolve().parents[2] / "shared" / "data"
    GOLDEN.write_text(json.dumps(golden(data), indent=0, sort_keys=False) + "\n")
    print(f"wrote {GOLDEN}", file=sys.stderr)
