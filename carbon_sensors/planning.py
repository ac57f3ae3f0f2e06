"""The planner: pure functions that decide when (and where) a flexible job should start.

No I/O and no clock reads: the caller passes ``now`` and the forecasts. Call :func:`plan` again
whenever a fresher forecast arrives; the same inputs always give the same :class:`Plan`.

A job is judged on the duration-weighted mean intensity of its whole window, not on the single
lowest slot. Forecasts are piecewise constant, so that mean is piecewise linear in the start time
and its minimum lies where the window's start or end meets a slot boundary: those are the only
candidates the planner needs to look at, which makes the optimum exact at any resolution.

>>> from datetime import datetime, timedelta, timezone
>>> t0 = datetime(2026, 6, 15, 6, tzinfo=timezone.utc)
>>> f = Forecast.from_points([(t0 + timedelta(hours=h), v) for h, v in enumerate([400, 380, 200, 390])],
...                          zone="DE", source="example")
>>> p = plan(f, now=t0, deadline=t0 + timedelta(hours=4), expected_duration=timedelta(hours=1))
>>> p.decision, p.planned_start.hour, round(p.expected_saving_pct)
('wait', 8, 50)
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from carbon_sensors.errors import ConfigurationError, DeadlineError, ForecastCoverageError
from carbon_sensors.forecast import Forecast, Signal, common_signal
from carbon_sensors.timeutil import as_utc

__all__ = ["DEFAULT_MIN_SAVING_PCT", "LATEST_START_TOLERANCE", "Plan", "Policy", "duration_quantile", "latest_start", "plan",
           "safety_margin_from_history"]

#: Waiting is only worth it when it saves at least this share of the job's carbon.
DEFAULT_MIN_SAVING_PCT = 3.0
#: Default safety margin: this share of the expected duration, but never less than the floor.
DEFAULT_MARGIN_SHARE = 0.10
DEFAULT_MARGIN_FLOOR = timedelta(minutes=5)
#: A waiting job wakes a moment after its latest start; up to this late it is "latest start reached",
#: later than that the deadline is "at risk".
LATEST_START_TOLERANCE = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Policy:
    """What a job will accept while it waits for a cleaner window.

    - ``max_delay``: never plan a start later than this after submission.
    - ``threshold``: start as soon as a window's mean intensity is at or below this (gCO2eq/kWh).
    - ``min_saving_pct``: only wait when the saving is at least this percentage.
    - ``safety_margin``: kept free before the deadline; default 10 % of the duration, at least 5 min.

    >>> Policy(max_delay=timedelta(hours=6), threshold=150).min_saving_pct
    3.0
    """

    max_delay: timedelta | None = None
    threshold: float | None = None
    min_saving_pct: float = DEFAULT_MIN_SAVING_PCT
    safety_margin: timedelta | None = None

    def __post_init__(self) -> None:
        if self.max_delay is not None and (not isinstance(self.max_delay, timedelta) or self.max_delay < timedelta(0)):
            raise ConfigurationError(f"max_delay must be a non-negative timedelta, got {self.max_delay!r}")
        if self.threshold is not None and not (isinstance(self.threshold, int | float) and 0 <= self.threshold < math.inf):
            raise ConfigurationError(f"threshold must be a non-negative number of gCO2eq/kWh, got {self.threshold!r}")
        if not (isinstance(self.min_saving_pct, int | float) and 0 <= self.min_saving_pct < 100):
            raise ConfigurationError(f"min_saving_pct must be in [0, 100), got {self.min_saving_pct!r}")
        if self.safety_margin is not None and (
            not isinstance(self.safety_margin, timedelta) or self.safety_margin < timedelta(0)
        ):
            raise ConfigurationError(f"safety_margin must be a non-negative timedelta, got {self.safety_margin!r}")

    def margin_for(self, expected_duration: timedelta) -> timedelta:
        """The safety margin kept before the deadline for a job of this duration."""
        if self.safety_margin is not None:
            return self.safety_margin
        return max(DEFAULT_MARGIN_FLOOR, expected_duration * DEFAULT_MARGIN_SHARE)

    def to_dict(self) -> dict[str, float | None]:
        """JSON-able form (durations in seconds), the inverse of :meth:`from_dict`."""
        return {
            "max_delay_s": None if self.max_delay is None else self.max_delay.total_seconds(),
            "threshold": self.threshold,
            "min_saving_pct": self.min_saving_pct,
            "safety_margin_s": None if self.safety_margin is None else self.safety_margin.total_seconds(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        """Rebuild a policy written by :meth:`to_dict`; unknown keys are ignored for forward compatibility."""

        def span(key: str) -> timedelta | None:
            return None if data.get(key) is None else timedelta(seconds=float(data[key]))

        return cls(
            max_delay=span("max_delay_s"),
            threshold=data.get("threshold"),
            min_saving_pct=float(data.get("min_saving_pct", DEFAULT_MIN_SAVING_PCT)),
            safety_margin=span("safety_margin_s"),
        )


@dataclass(frozen=True, slots=True)
class Plan:
    """A decision that explains itself.

    ``decision`` is ``run_now`` or ``wait``; ``planned_start`` and ``zone`` say when and where.
    Intensities are window means in gCO2eq/kWh of ``signal`` (never mixed); ``intensity_now`` is
    the home zone's (first zone's) window if started now. ``intensity_best_now`` and
    ``best_now_zone`` are the cleanest start-now option in any allowed zone: a plan that waits
    measures ``expected_saving_pct`` against it; one that starts now in another zone, against the
    home zone. ``latest_start_reached`` and ``deadline_at_risk`` mean the deadline, not the
    forecast, decided.
    """

    decision: Literal["run_now", "wait"]
    planned_start: datetime
    zone: str
    latest_start: datetime
    deadline: datetime
    intensity_now: float | None
    intensity_planned: float | None
    expected_saving_pct: float
    signal: Signal
    source: str
    reason: str
    latest_start_reached: bool = False
    deadline_at_risk: bool = False
    intensity_best_now: float | None = None
    best_now_zone: str | None = None

    @property
    def forced(self) -> bool:
        """True when the job starts because of its deadline rather than the forecast."""
        return self.latest_start_reached or self.deadline_at_risk

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form in the decision's vocabulary (docs/decision.md), old names kept as aliases.

        ``status`` (``wait``, ``go`` or ``forced``), ``intensity``, ``intensity_at_submission`` and
        ``saving_pct`` are the names the XCom decision uses; ``decision``, ``intensity_planned``,
        ``intensity_now`` and ``expected_saving_pct`` stay for one release.
        """
        out = asdict(self)
        for key in ("planned_start", "latest_start", "deadline"):
            out[key] = out[key].isoformat()
        for key in ("intensity_now", "intensity_planned", "intensity_best_now"):
            out[key] = None if out[key] is None else round(out[key], 3)
        out["expected_saving_pct"] = round(self.expected_saving_pct, 3)
        out["forced"] = self.forced
        status = "wait" if self.decision == "wait" else "forced" if self.forced else "go"
        return {
            "status": status, "reason": self.reason, "zone": self.zone, "planned_start": out["planned_start"],
            "latest_start": out["latest_start"], "deadline": out["deadline"],
            "intensity": out["intensity_planned"], "intensity_at_submission": out["intensity_now"],
            "saving_pct": out["expected_saving_pct"], "signal": self.signal, "source": self.source,
            "forced": self.forced,
            "forced_reason": ("deadline_at_risk" if self.deadline_at_risk
                              else "latest_start" if self.latest_start_reached else None),
            "best_now_zone": self.best_now_zone, "intensity_best_now": out["intensity_best_now"],
            "latest_start_reached": self.latest_start_reached, "deadline_at_risk": self.deadline_at_risk,
            # Deprecated aliases, kept for one release.
            "decision": self.decision, "intensity_planned": out["intensity_planned"],
            "intensity_now": out["intensity_now"], "expected_saving_pct": out["expected_saving_pct"],
        }


def latest_start(deadline: datetime, expected_duration: timedelta, policy: Policy | None = None) -> datetime:
    """``deadline - expected_duration - safety_margin``: the last start that still meets the deadline."""
    policy = policy or Policy()
    return as_utc(deadline, "deadline") - expected_duration - policy.margin_for(expected_duration)


def plan(
    forecasts: Forecast | Sequence[Forecast],
    *,
    now: datetime,
    deadline: datetime,
    expected_duration: timedelta,
    policy: Policy | None = None,
    submitted_at: datetime | None = None,
) -> Plan:
    """Decide when and where to start a job of ``expected_duration`` that must finish by ``deadline``.

    ``forecasts``: one per allowed zone, the home zone first (spatial shifting happens only when
    the caller passes more than one). ``submitted_at`` anchors ``policy.max_delay`` (default ``now``).
    The planned start always lies in ``[now, latest_start]``; at the latest start (or up to
    ``LATEST_START_TOLERANCE`` after it) the plan says run now with ``latest_start_reached``; later
    than that, run now with ``deadline_at_risk``.
    """
    policy = policy or Policy()
    zones = [forecasts] if isinstance(forecasts, Forecast) else list(forecasts)
    if not zones:
        raise ConfigurationError("plan() needs at least one forecast (one per allowed zone, home zone first)")
    signal = common_signal(zones)
    now = as_utc(now, "now")
    deadline = as_utc(deadline, "deadline")
    if not isinstance(expected_duration, timedelta) or expected_duration <= timedelta(0):
        raise DeadlineError(f"expected_duration must be a positive timedelta, got {expected_duration!r}")
    submitted_at = now if submitted_at is None else as_utc(submitted_at, "submitted_at")
    home = zones[0]
    latest = latest_start(deadline, expected_duration, policy)
    now_s, dur_s = now.timestamp(), expected_duration.total_seconds()
    # Only a forecast that covers now can say what starting now costs (its end may come early).
    now_mean = _finite_or_none(home.mean_between(now_s, now_s + dur_s)) if home.covers(now_s, now_s) else None
    base = {
        "latest_start": latest,
        "deadline": deadline,
        "intensity_now": now_mean,
        "signal": signal,
    }

    def run_now(reason: str, *, zone: Forecast = home, mean: float | None = now_mean, **flags: bool) -> Plan:
        return Plan(
            decision="run_now", planned_start=now, zone=zone.zone, intensity_planned=mean,
            expected_saving_pct=_saving(now_mean, mean), source=zone.source, reason=reason, **base, **flags,
        )

    def cleanest_now() -> dict:
        # Forced to start now, the job may still go to the cleanest allowed zone.
        options = [(now_mean, 0)] if now_mean is not None else []
        options += [(f.mean_between(now_s, now_s + dur_s), zi) for zi, f in enumerate(zones)
                    if zi and f.covers(now_s, now_s + dur_s)]
        if not options:
            return {}
        mean, zi = min(options, key=lambda o: (o[0] + 1e-9 * o[1]))
        return {} if zi == 0 else {"zone": zones[zi], "mean": mean}

    if latest <= now:
        if now - latest > LATEST_START_TOLERANCE:
            return run_now(
                f"Starting now, deadline at risk: the latest start {_hm(latest)} passed {_span(now - latest)} ago "
                f"(deadline {_hm(deadline)}, expected duration {_span(expected_duration)}, "
                f"safety margin {_span(policy.margin_for(expected_duration))}).",
                deadline_at_risk=True, **cleanest_now(),
            )
        return run_now(
            f"Starting now: the latest start {_hm(latest)} has been reached; the deadline "
            f"{_hm(deadline)} wins over the forecast.",
            latest_start_reached=True, **cleanest_now(),
        )
    horizon = latest if policy.max_delay is None else min(latest, submitted_at + policy.max_delay)
    if horizon <= now:
        return run_now(f"Starting now: the maximum delay of {_span(policy.max_delay)} since submission has passed.",
                       **cleanest_now())
    if now_mean is None:
        raise ForecastCoverageError(
            f"forecast for zone {home.zone!r} from {home.source!r} covers {_hm(home.start)} to {_hm(home.end)}, "
            f"which does not include now ({_hm(now)}); fetch a forecast that starts at or before now"
        )
    threshold = None if policy.threshold is None else policy.threshold * (1 + 1e-9) + 1e-9  # float noise
    if threshold is not None and now_mean <= threshold:
        return run_now(
            f"Running now in {home.zone}: the next {_span(expected_duration)} average {now_mean:.0f} g/kWh, "
            f"at or below the {policy.threshold:g} g/kWh threshold."
        )

    best = (now_mean, now_s, 0)  # (window mean, start, zone index)
    best_now = best  # the best start-now option in any allowed zone: what waiting must beat
    first_under: tuple[float, float, int] | None = None
    horizon_s = horizon.timestamp()
    for zi, forecast in enumerate(zones):
        previous: tuple[float, float] | None = None  # (start, mean) of the last covered candidate
        for start_s in _candidates(forecast, now_s, horizon_s, dur_s):
            if not forecast.covers(start_s, start_s + dur_s):
                previous = None
                continue
            mean = forecast.mean_between(start_s, start_s + dur_s)
            cand = (mean, start_s, zi)
            if _better(cand, best):
                best = cand
            if start_s == now_s and _better(cand, best_now):
                best_now = cand
            if threshold is not None and mean <= threshold:
                # The mean is linear between candidates: start where it crosses the threshold.
                crossing = _crossing(previous, (start_s, mean), threshold)
                crossing_mean = forecast.mean_between(crossing, crossing + dur_s)
                if first_under is None or (crossing, zi) < (first_under[1], first_under[2]):
                    first_under = (crossing_mean, crossing, zi)
            previous = (start_s, mean)
    target, by_threshold = (first_under, True) if first_under is not None else (best, False)
    mean, start_s, zi = target
    start = datetime.fromtimestamp(start_s, UTC)
    where = f" in {zones[zi].zone}" if len(zones) > 1 else ""
    if start_s != now_s and _saving(best_now[0], target[0]) < policy.min_saving_pct:
        # Waiting must beat the best start-now option in any allowed zone, not only the home zone's.
        gain = _saving(best_now[0], target[0])
        mean, start_s, zi = best_now
        if zi == 0:
            return run_now(
                f"Running now in {home.zone}: waiting until {_hm(start)}{where} ({target[0]:.0f} g/kWh vs "
                f"{now_mean:.0f} now) would save only {gain:.1f}%, below the {policy.min_saving_pct:g}% worth waiting for."
            )
    chosen = zones[zi]
    saving = _saving(now_mean, mean)
    best_now_mean, best_now_zone = best_now[0], zones[best_now[2]].zone
    if start_s == now_s and zi == 0:
        return run_now(
            f"Running now in {home.zone}: the next {_span(expected_duration)} ({now_mean:.0f} g/kWh) are already "
            f"the cleanest window before {_hm(horizon)}."
        )
    why = f"at or below the {policy.threshold:g} g/kWh threshold" if by_threshold else "the cleanest window"
    if start_s == now_s:
        return run_now(
            f"Running now in {chosen.zone} instead of {home.zone}: {mean:.0f} g/kWh vs {now_mean:.0f}, "
            f"{saving:.0f}% less.",
            zone=chosen, mean=mean,
        )
    start = datetime.fromtimestamp(start_s, UTC)
    # Waiting is measured against the best start-now option in any allowed zone, named with its zone.
    saving = _saving(best_now_mean, mean)
    if len(zones) == 1:
        versus = f"{best_now_mean:.0f} now"
    elif best_now_zone == home.zone:
        versus = f"{best_now_mean:.0f} starting now in {home.zone}"
    else:
        versus = f"{best_now_mean:.0f} starting now in {best_now_zone} ({now_mean:.0f} in {home.zone})"
    return Plan(
        decision="wait", planned_start=start, zone=chosen.zone, intensity_planned=mean,
        expected_saving_pct=saving, source=chosen.source,
        reason=(
            f"Waiting until {_hm(start)}{where}: the {_span(expected_duration)} window then averages "
            f"{mean:.0f} g/kWh vs {versus}, {saving:.0f}% less ({why}); latest start {_hm(latest)}."
        ),
        intensity_best_now=best_now_mean, best_now_zone=best_now_zone,
        **base,
    )


def duration_quantile(durations: Sequence[timedelta], quantile: float = 0.99) -> timedelta:
    """A bound on a task's next run time from its history: a safety margin that learns.

    Run times spread multiplicatively, so this is the upper ``quantile`` prediction bound of a
    log-normal fitted to the history (Student-t, so a short history gives a wide bound); it is
    never below the longest run seen. Use ``duration_quantile(h, q) - expected`` as the
    ``safety_margin``.

    >>> duration_quantile([timedelta(minutes=m) for m in (50, 55, 60, 65, 70)], 0.999) > timedelta(minutes=70)
    True
    """
    import statistics

    seconds = [d.total_seconds() for d in durations]
    if not seconds or min(seconds) <= 0:
        raise ConfigurationError("duration_quantile needs at least one positive duration")
    if not 0.5 <= quantile < 1:
        raise ConfigurationError(f"quantile must be in [0.5, 1), got {quantile}")
    if len(seconds) < 3:
        return timedelta(seconds=max(seconds))
    logs = [math.log(s) for s in seconds]
    n = len(logs)
    spread = statistics.stdev(logs) * math.sqrt(1 + 1 / n)  # the next run, not the mean
    bound = math.exp(statistics.fmean(logs) + _student_t(quantile, n - 1) * spread)
    return timedelta(seconds=max(bound, max(seconds)))


#: With fewer runs of history than this, a task's run time is barely known: keep a wide margin.
MIN_HISTORY_RUNS = 3
COLD_START_MARGIN_SHARE = 0.5


def safety_margin_from_history(
    history: Sequence[timedelta], expected_duration: timedelta, quantile: float = 0.999
) -> timedelta:
    """The safety margin a task's run-time history calls for.

    With under ``MIN_HISTORY_RUNS`` runs, half the expected duration (a new task's run time is barely
    known); then ``duration_quantile(history, quantile) - expected_duration``. Never below the
    default margin.

    >>> safety_margin_from_history([], timedelta(hours=2))
    datetime.timedelta(seconds=3600)
    """
    floor = Policy().margin_for(expected_duration)
    if len(history) < MIN_HISTORY_RUNS:
        return max(floor, expected_duration * COLD_START_MARGIN_SHARE)
    return max(floor, duration_quantile(history, quantile) - expected_duration)


def _student_t(quantile: float, dof: int) -> float:
    """Student's t quantile (Cornish-Fisher expansion around the normal; good for dof >= 3)."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(quantile)
    v = float(dof)
    return (z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3))


def _candidates(forecast: Forecast, now_s: float, horizon_s: float, dur_s: float) -> list[float]:
    """Starts where the window's start or end meets a slot boundary, plus ``now`` and the horizon."""
    starts, end_s = forecast.starts_s, forecast.end_s
    out = {now_s, horizon_s}
    for lo_s, hi_s, shift in ((now_s, horizon_s, 0.0), (now_s + dur_s, horizon_s + dur_s, dur_s)):
        # The slot boundaries in [lo_s, hi_s]: point starts, then the forecast's end (bisecting
        # the starts alone: a long trace is not copied for every plan).
        out.update(b - shift for b in starts[bisect_left(starts, lo_s):bisect_right(starts, hi_s)])
        if lo_s <= end_s <= hi_s:
            out.add(end_s - shift)
    return sorted(out)


def _crossing(previous: tuple[float, float] | None, current: tuple[float, float], threshold: float) -> float:
    """The earliest whole second between two candidates where the (linear) window mean reaches ``threshold``."""
    if previous is None or previous[1] <= threshold or previous[1] <= current[1]:
        return current[0]
    (t0, m0), (t1, m1) = previous, current
    exact = t0 + (m0 - threshold) / (m0 - m1) * (t1 - t0)
    return min(t1, float(math.ceil(exact - 1e-6)))


def _better(cand: tuple[float, float, int], best: tuple[float, float, int]) -> bool:
    """Lower mean wins; near-ties (float noise) go to the earlier start, then to the home zone."""
    tolerance = 1e-9 * max(1.0, abs(best[0]))
    if cand[0] < best[0] - tolerance:
        return True
    return abs(cand[0] - best[0]) <= tolerance and (cand[1], cand[2]) < (best[1], best[2])


def _saving(now_mean: float | None, mean: float | None) -> float:
    if now_mean is None or mean is None or now_mean <= 0:
        return 0.0
    return max(0.0, (now_mean - mean) / now_mean * 100.0)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _hm(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _span(delta: timedelta | None) -> str:
    if isinstance(getattr(delta, "text", None), str):
        return delta.text  # a span the user typed (carbon_sensors.cli_syntax.Span) prints as typed
    total = round((delta or timedelta(0)).total_seconds())
    hours, rest = divmod(total, 3600)
    minutes = rest // 60
    if hours and minutes:
        return f"{hours}h{minutes:02d}m"
    if hours:
        return f"{hours}h"
    return f"{minutes} min" if minutes else f"{total} s"
