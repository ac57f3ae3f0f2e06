"""Backtests on real grid traces: what would carbon-aware scheduling have saved, and did it keep deadlines?

The ``carbon_sensors`` strategy drives the very code an Airflow trigger runs
(:func:`carbon_sensors.gate.wait_for_window` -> :func:`~carbon_sensors.gate.decide` ->
:func:`~carbon_sensors.planning.plan`) with a :class:`~carbon_sensors.testing.FrozenClock` and a
source that serves the forecast issued at each hour. Time is exact: a job starts at whatever moment
its gate decides (a latest start of 06:54 is 06:54), and its intensity is the time-weighted mean of
the actual trace over its real run.

Strategies:

- ``now``: start at submission (the baseline every saving is measured against);
- ``commit_once``: plan once at submission from that hour's forecast and never look again (what the
  peer plugins do);
- ``replan``: at every hourly refresh plan on the latest forecast as it is (no correction, hysteresis
  or minimum saving) and start as soon as "now" is the best window, never after the latest start;
- ``carbon_sensors``: wait in the gate, re-planning at every forecast refresh (hourly);
- ``oracle``: perfect foresight, the best window within the same slack (the physical limit).

Forecast models (per trace and seed), in :mod:`carbon_sensors.forecast_models`: ``mmfe`` (the
default), the martingale model of forecast evolution, where each hour brings independent news and no
set of forecasts reveals an actual before it happens; and ``fixed`` (for comparison only), one error
series over target hours that only shrinks across issue times. h = 0 is exact in both. ``exact_h``
makes every lead up to that many hours exact too (the planner is not told): a diagnostic of how much
foresight a target asks for. A real forecast archive (``issued_at, target_time, value`` rows) can
replace the model.

Price traces (:mod:`carbon_sensors.price_traces`, matched to the carbon traces by zone) add the
actual market price of every job's window and its energy cost at ``power_kw``, and give the
strategies price forecasts (``mmfe``, additive, with ``price_sigma24`` and a random stream of their
own) where the planner takes them.

>>> from carbon_sensors.simulate import WORKLOADS
>>> WORKLOADS["weekly_retrain"].slack_h
48
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from carbon_sensors.errors import ConfigurationError, SourceDataError
from carbon_sensors.forecast import Forecast
from carbon_sensors.forecast_archive import ForecastArchive
from carbon_sensors.forecast_models import (
    FORECAST_MODELS,
    MMFEForecasts,
    ModelForecasts,
    check_model,
    describe_model,
    describe_price_model,
    make_forecasts,
)
from carbon_sensors.planning import Policy, safety_margin_from_history
from carbon_sensors.price_traces import PriceTrace, cost_knobs, match_price_traces, policy_currency
from carbon_sensors.simulate_strategies import (  # noqa: F401 (_replan_start: kept importable from here)
    Prices,
    SimulatedSource,
    _replan_start,
    start_time,
    strategies_on_prices,
)

__all__ = [
    "STRATEGIES",
    "WORKLOADS",
    "FORECAST_MODELS",
    "ArchiveForecasts",
    "ForecastArchive",
    "MMFEForecasts",
    "ModelForecasts",
    "Overrun",
    "PriceTrace",
    "SimulationResult",
    "Trace",
    "Workload",
    "load_trace",
    "parse_workload",
    "run_trace",
    "summarize",
]

STRATEGIES = ("now", "commit_once", "replan", "carbon_sensors", "oracle")
HOUR = 3600.0
#: The earlier name of :class:`~carbon_sensors.forecast_archive.ForecastArchive`.
ArchiveForecasts = ForecastArchive


@dataclass(frozen=True, slots=True)
class Workload:
    """Jobs submitted every ``period_h`` hours (at ``offset_h`` past midnight UTC, or on ``weekday``)."""

    name: str
    period_h: float
    duration_h: float
    slack_h: float
    offset_h: float = 0.0
    weekday: int | None = None  # 0 = Monday; for weekly workloads

    def __post_init__(self) -> None:
        if not (self.period_h > 0 and self.duration_h > 0 and self.slack_h > self.duration_h):
            raise ConfigurationError(
                f"workload {self.name!r}: period and duration must be positive and the slack longer than the duration"
            )

    def submissions(self, start_s: float, end_s: float) -> list[float]:
        """Submission times (epoch s) whose deadline lies inside ``[start_s, end_s]``."""
        first_day = math.floor(start_s / 86400) * 86400
        anchor = first_day + self.offset_h * HOUR
        if self.weekday is not None:
            weekday = datetime.fromtimestamp(first_day, UTC).weekday()
            anchor += ((self.weekday - weekday) % 7) * 86400
        t, out = anchor, []
        while t + self.slack_h * HOUR <= end_s:
            if t >= start_s:
                out.append(t)
            t += self.period_h * HOUR
        return out

    def runs(self, start_s: float, end_s: float) -> list[tuple[float, float]]:
        """(submission, deadline) pairs (epoch s) of the jobs whose deadline lies inside ``[start_s, end_s]``.

        What the backtest reads; a workload with run times of its own (a DAG's schedule, see
        :mod:`carbon_sensors.simulate_dag`) gives its own pairs.
        """
        return [(t, t + self.slack_h * HOUR) for t in self.submissions(start_s, end_s)]


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("nightly_enrichment", period_h=24, duration_h=1, slack_h=8),
        Workload("embedding_refresh", period_h=4, duration_h=1, slack_h=4),
        Workload("index_rebuild", period_h=24, duration_h=2, slack_h=12, offset_h=18),
        Workload("weekly_retrain", period_h=168, duration_h=6, slack_h=48, weekday=0),
    )
}


def parse_workload(text: str) -> Workload:
    """A custom workload: ``name:every=4h,duration=1h,slack=4h[,offset=18h][,weekday=0]``."""
    from carbon_sensors.timeutil import parse_span

    name, _, spec = text.partition(":")
    fields: dict[str, str] = {}
    for part in filter(None, spec.split(",")):
        key, _, value = part.partition("=")
        fields[key.strip()] = value.strip()
    try:
        hours = {k: parse_span(fields[k]).total_seconds() / HOUR for k in ("every", "duration", "slack")}
    except KeyError as missing:
        raise ConfigurationError(f"workload {text!r} needs {missing}; write e.g. 'etl:every=6h,duration=1h,slack=6h'") from None
    return Workload(
        name=name.strip() or "custom", period_h=hours["every"], duration_h=hours["duration"], slack_h=hours["slack"],
        offset_h=parse_span(fields["offset"]).total_seconds() / HOUR if "offset" in fields else 0.0,
        weekday=int(fields["weekday"]) if "weekday" in fields else None,
    )


def load_workloads(path: Path) -> list[Workload]:
    """Custom workloads from a file, one ``name:every=...,duration=...,slack=...`` per line (# comments)."""
    lines = [line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines()]
    return [parse_workload(line) for line in lines if line]


@dataclass(frozen=True, slots=True)
class Overrun:
    """How much longer than expected jobs really run: none, or lognormal with a given 95th percentile."""

    p95: float | None = None

    @classmethod
    def parse(cls, text: str) -> Overrun:
        if text in ("", "none"):
            return cls()
        kind, _, arg = text.partition(":")
        if kind != "lognormal" or not arg.startswith("p95="):
            raise ConfigurationError(f"--overrun takes 'none' or 'lognormal:p95=1.5', got {text!r}")
        p95 = float(arg.removeprefix("p95="))
        if p95 < 1:
            raise ConfigurationError("the overrun p95 must be at least 1 (jobs are not faster than expected)")
        return cls(p95)

    def factors(self, rng: random.Random, n: int) -> list[float]:
        if self.p95 is None:
            return [1.0] * n
        sigma = math.log(self.p95) / 1.6448536269514722  # median 1.0, P(factor <= p95) = 0.95
        return [math.exp(rng.gauss(0.0, sigma)) for _ in range(n)]


@dataclass(frozen=True)
class Trace:
    """An actual intensity series for one zone, read from a file."""

    name: str
    zone: str
    actual: Forecast


def load_trace(
    path: str | Path, column: str | None = None, zone: str | None = None, *,
    time_column: str | None = None, timezone: str | None = None,
) -> Trace:
    """Read a trace (CSV or Parquet); the zone defaults to the file name up to its first underscore.

    ``column`` and ``time_column`` name the intensity and time columns (default: recognised by
    name); ``timezone`` is the zone of naive timestamps.
    """
    from carbon_sensors.signals.file import FileSource

    path = Path(path)
    zone = zone or path.stem.split("_")[0]
    actual = FileSource(path, time_column=time_column, value_column=column, zone=None, timezone=timezone).read_all(zone)
    steps = {round(b - a) for a, b in zip(actual.starts_s, actual.starts_s[1:], strict=False)}
    if len(steps) > 1:
        raise SourceDataError(f"{path} is not evenly spaced (steps {sorted(steps)[:5]} s); backtests need a regular trace")
    return Trace(name=path.name, zone=zone, actual=actual)


@dataclass
class _Tally:
    jobs: int = 0
    intensity_sum: float = 0.0
    misses: int = 0
    caused: int = 0
    delay_h_sum: float = 0.0
    forced: int = 0
    priced: int = 0
    price_sum: float = 0.0
    energy_kwh: float = 0.0
    cost_sum: float = 0.0

    def add_price(self, price: float, energy_kwh: float) -> None:
        """A job's window price (mean actual currency/MWh over its run) and the energy it drew."""
        self.priced += 1
        self.price_sum += price
        self.energy_kwh += energy_kwh
        self.cost_sum += price * energy_kwh / 1000.0

    def add(self, intensity: float, delay_h: float, missed: bool, caused: bool, forced: bool) -> None:
        self.jobs += 1
        self.intensity_sum += intensity
        self.delay_h_sum += delay_h
        self.misses += missed
        self.caused += caused
        self.forced += forced

    def merge(self, other: _Tally) -> None:
        for name in ("jobs", "intensity_sum", "misses", "caused", "delay_h_sum", "forced", "priced", "price_sum",
                     "energy_kwh", "cost_sum"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class SimulationResult:
    """One row of the output: a trace, a workload and a strategy, over all seeds."""

    trace: str
    zone: str
    workload: str
    strategy: str
    jobs: int
    mean_intensity: float
    savings_vs_now: float
    deadline_misses: int
    caused_misses: int
    mean_delay_h: float
    forced_rate: float
    # With price traces only (left out of to_dict() without them): the currency, the mean over jobs of
    # the window's mean actual price (currency/MWh), the energy cost per MWh drawn, the energy (kWh at
    # the settings' power_kw) and its cost, and the cost saved against starting at once.
    price_currency: str | None = None
    mean_price: float | None = None
    cost_per_mwh: float | None = None
    energy_kwh: float | None = None
    energy_cost: float | None = None
    cost_savings_vs_now: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()
                if v is not None or k not in _PRICE_FIELDS}


_PRICE_FIELDS = ("price_currency", "mean_price", "cost_per_mwh", "energy_kwh", "energy_cost", "cost_savings_vs_now")


@dataclass(frozen=True)
class SimulationSettings:
    """What one backtest run uses; shared by every (trace, seed) unit."""

    workloads: tuple[Workload, ...]
    strategies: tuple[str, ...] = STRATEGIES
    sigma24: float = 0.10
    rho: float = 0.9
    seeds: int = 3
    overrun: Overrun = field(default_factory=Overrun)
    policy: Policy = field(default_factory=Policy)
    history: int = 50
    margin_quantile: float = 0.999
    archive: str | None = None
    exact_h: float = 0.0  # forecasts exact up to this lead (a foresight diagnostic; 0: only h = 0)
    forecast_model: str = "mmfe"  # or "fixed", the earlier model, for comparison only
    price_sigma24: float = 0.10  # the price forecasts' error at 24 h, relative to the price level
    power_kw: float = 1.0  # each job's mean draw, for its energy and energy cost (with price traces)

    def __post_init__(self) -> None:
        check_model(self.forecast_model)
        unknown = set(self.strategies) - set(STRATEGIES)
        if unknown:
            raise ConfigurationError(f"unknown strategies {sorted(unknown)}; choose from {', '.join(STRATEGIES)}")
        if not (self.price_sigma24 >= 0 and self.power_kw > 0):
            raise ConfigurationError(f"price_sigma24 must be >= 0 and power_kw positive, got {self.price_sigma24!r} "
                                     f"and {self.power_kw!r}")
        if not self.exact_h >= 0:  # checked here, not first in a worker process
            raise ConfigurationError(f"exact_h is hours of exact foresight and must be >= 0, got {self.exact_h!r}")
        if "now" not in self.strategies:
            object.__setattr__(self, "strategies", ("now", *self.strategies))


def run_trace(
    traces: Sequence[Trace], settings: SimulationSettings, seed: int,
    prices: dict[str, PriceTrace] | None = None,
) -> dict[tuple[str, str], _Tally]:
    """Backtest every workload and strategy on one home trace (``traces[0]``, others are allowed zones).

    ``prices``: a price trace per zone (see :func:`~carbon_sensors.price_traces.match_price_traces`).
    """
    from carbon_sensors.forecast_models import MMFEPriceForecasts

    if settings.archive:
        forecasts = {traces[0].zone: ForecastArchive(settings.archive, traces[0].zone, traces[0].actual.signal)}
    else:
        forecasts = {
            t.zone: make_forecasts(settings.forecast_model, t.actual, sigma24=settings.sigma24, rho=settings.rho,
                                   seed=seed * 1009 + i, exact_h=settings.exact_h)
            for i, t in enumerate(traces)
        }
    priced = None
    if prices:  # the same model, an independent random stream (MMFEPriceForecasts keys its own)
        priced = Prices(
            {t.zone: prices[t.zone].actual for t in traces},
            {t.zone: MMFEPriceForecasts(prices[t.zone].actual, sigma24=settings.price_sigma24, rho=settings.rho,
                                        seed=seed * 1009 + i, exact_h=settings.exact_h) for i, t in enumerate(traces)},
        )
    return asyncio.run(_run_trace(traces, settings, seed, forecasts, priced))


async def _run_trace(traces, settings, seed, forecasts, prices=None) -> dict[tuple[str, str], _Tally]:
    home = traces[0]
    start_s = max(t.actual.starts_s[0] for t in traces)
    end_s = min(t.actual.end_s for t in traces)
    source = SimulatedSource(forecasts, home.actual.signal, {t.zone: t.actual for t in traces})
    tallies: dict[tuple[str, str], _Tally] = {}
    for workload in settings.workloads:
        rng = random.Random(f"{seed}:{home.zone}:{workload.name}")
        runs = workload.runs(start_s, end_s - workload.duration_h * HOUR * 4)
        factors = settings.overrun.factors(rng, len(runs))
        expected = timedelta(hours=workload.duration_h)
        history: list[float] = []
        for (submit_s, deadline_s), factor in zip(runs, factors, strict=True):
            policy = settings.policy
            if settings.overrun.p95 is not None and policy.safety_margin is None:
                policy = _policy_with_margin(policy, history, expected, settings.margin_quantile)
            actual_s = workload.duration_h * HOUR * factor
            now_met = submit_s + actual_s <= deadline_s
            latest_s = deadline_s - (expected + policy.margin_for(expected)).total_seconds()
            for strategy in settings.strategies:
                start, zone = await start_time(strategy, traces, forecasts, source, submit_s, deadline_s, expected, policy,
                                           prices)
                window = next(t for t in traces if t.zone == zone).actual
                intensity = window.mean_between(start, start + actual_s)
                missed = start + actual_s > deadline_s + 1e-6
                tally = tallies.setdefault((workload.name, strategy), _Tally())
                tally.add(intensity, (start - submit_s) / HOUR, missed, missed and now_met, start >= latest_s - 1e-6)
                if prices is not None:
                    tally.add_price(prices.actual[zone].mean_between(start, start + actual_s),
                                    settings.power_kw * actual_s / HOUR)
            history.append(actual_s)
            del history[: -settings.history]
    return tallies


def _policy_with_margin(policy: Policy, history: list[float], expected: timedelta, quantile: float) -> Policy:
    """The policy with the safety margin the planner sets from this task's run-time history."""
    from dataclasses import replace

    margin = safety_margin_from_history([timedelta(seconds=s) for s in history], expected, quantile)
    return replace(policy, safety_margin=margin)


def collect(rows: dict[tuple[str, str, str, str], _Tally], currency: str | None = None) -> list[SimulationResult]:
    """Result rows from tallies keyed by (trace, zone, workload, strategy); priced in ``currency`` if given."""
    out = []
    for (trace, zone, workload, strategy), tally in sorted(rows.items()):
        now = rows[(trace, zone, workload, "now")]
        mean = tally.intensity_sum / tally.jobs if tally.jobs else math.nan
        now_mean = now.intensity_sum / now.jobs if now.jobs else math.nan
        out.append(SimulationResult(
            trace=trace, zone=zone, workload=workload, strategy=strategy, jobs=tally.jobs, mean_intensity=mean,
            savings_vs_now=(now_mean - mean) / now_mean if now_mean else 0.0,
            deadline_misses=tally.misses, caused_misses=tally.caused,
            mean_delay_h=tally.delay_h_sum / tally.jobs if tally.jobs else 0.0,
            forced_rate=tally.forced / tally.jobs if tally.jobs else 0.0,
            **(_priced(tally, now, currency) if currency is not None else {}),
        ))
    return out


def _priced(tally: _Tally, now: _Tally, currency: str) -> dict[str, Any]:
    """A row's price figures: window price, energy and its cost, and the cost saved against starting now."""
    return {
        "price_currency": currency,
        "mean_price": tally.price_sum / tally.priced if tally.priced else math.nan,
        "cost_per_mwh": tally.cost_sum / tally.energy_kwh * 1000.0 if tally.energy_kwh else math.nan,
        "energy_kwh": tally.energy_kwh, "energy_cost": tally.cost_sum,
        "cost_savings_vs_now": (now.cost_sum - tally.cost_sum) / abs(now.cost_sum) if now.cost_sum else 0.0,
    }


def summarize(results: Sequence[SimulationResult]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per workload and strategy, over all traces: saving vs now, and the share of the oracle's saving.

    ``fraction_of_oracle = sum(now - strategy) / sum(now - oracle)`` over the traces' mean intensities.
    """
    by_key = {(r.trace, r.workload, r.strategy): r for r in results}
    summary: dict[str, dict[str, dict[str, float | None]]] = {}
    for workload in sorted({r.workload for r in results}):
        traces = sorted({r.trace for r in results if r.workload == workload})
        now_total = sum(by_key[(t, workload, "now")].mean_intensity for t in traces)
        oracle_gain = (
            sum(by_key[(t, workload, "now")].mean_intensity - by_key[(t, workload, "oracle")].mean_intensity for t in traces)
            if all((t, workload, "oracle") in by_key for t in traces) else None
        )
        for strategy in sorted({r.strategy for r in results if r.workload == workload}, key=STRATEGIES.index):
            gain = sum(by_key[(t, workload, "now")].mean_intensity - by_key[(t, workload, strategy)].mean_intensity
                       for t in traces)
            summary.setdefault(workload, {})[strategy] = {
                "savings_vs_now": round(gain / now_total, 6) if now_total else 0.0,
                "fraction_of_oracle": round(gain / oracle_gain, 6) if oracle_gain else None,
            }
            if by_key[(traces[0], workload, strategy)].energy_cost is not None:  # priced: the cost saved too
                now_cost = sum(by_key[(t, workload, "now")].energy_cost for t in traces)
                cost_gain = now_cost - sum(by_key[(t, workload, strategy)].energy_cost for t in traces)
                summary[workload][strategy]["cost_savings_vs_now"] = (
                    round(cost_gain / abs(now_cost), 6) if now_cost else 0.0)
    return summary


def simulate(
    trace_groups: Sequence[Sequence[Trace]],
    settings: SimulationSettings,
    *,
    prices: Sequence[PriceTrace] = (),
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run the backtest over every trace group and seed; return ``{"results": [...], "summary": {...}}``.

    Each group is a home trace followed by the other zones it may shift to (a single trace without
    spatial shifting). Units of work (group x seed) run in parallel processes. ``prices``: a price
    trace per carbon trace's zone (or none): each row then also has the window's price and the
    energy cost, and the strategies plan on price forecasts where the planner takes them.
    """
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    by_zone = match_price_traces(trace_groups, prices, policy_currency(settings.policy))
    if not by_zone and cost_knobs(settings.policy):
        raise ConfigurationError(f"the policy sets {', '.join(cost_knobs(settings.policy))} but there is no price "
                                 "trace; pass a price trace for every zone, or drop the cost settings")
    currency = next(iter(by_zone.values())).actual.currency if by_zone else None
    group_prices = [{t.zone: by_zone[t.zone] for t in group} if by_zone else None for group in trace_groups]
    units = [(group, seed, gp) for group, gp in zip(trace_groups, group_prices, strict=True)
             for seed in range(settings.seeds)]
    workers = max(1, min(workers or os.cpu_count() or 1, len(units)))
    merged: dict[tuple[str, str, str, str], _Tally] = {}

    def absorb(group: Sequence[Trace], tallies: dict[tuple[str, str], _Tally]) -> None:
        for (workload, strategy), tally in tallies.items():
            merged.setdefault((group[0].name, group[0].zone, workload, strategy), _Tally()).merge(tally)

    done = 0
    if workers == 1:
        for group, seed, gp in units:
            absorb(group, run_trace(group, settings, seed, gp))
            done += 1
            if progress:
                progress(done, len(units))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(run_trace, group, settings, seed, gp): group for group, seed, gp in units}
            for future in as_completed(futures):
                absorb(futures[future], future.result())
                done += 1
                if progress:
                    progress(done, len(units))
    results = collect(merged, currency)
    out = {
        "forecast_model": (
            f"archive {settings.archive}: {ForecastArchive(settings.archive, 'archive').describe()}" if settings.archive else
            describe_model(settings.forecast_model, sigma24=settings.sigma24, rho=settings.rho)
            + f"; seeds = {settings.seeds}; forecasts refresh hourly"
            + (f"; exact up to h = {settings.exact_h:g} h (a foresight diagnostic)" if settings.exact_h else "")
        ),
        "settings": {
            "forecast_model": "archive" if settings.archive else settings.forecast_model,
            "sigma24": settings.sigma24, "rho": settings.rho, "seeds": settings.seeds, "exact_h": settings.exact_h,
            "overrun": "none" if settings.overrun.p95 is None else f"lognormal:p95={settings.overrun.p95}",
            "policy": settings.policy.to_dict(), "strategies": list(settings.strategies),
            "workloads": [w.name for w in settings.workloads],
        },
        "results": [r.to_dict() for r in results],
        "summary": summarize(results),
    }
    if currency is not None:
        out["prices"] = {
            "currency": currency, "unit": f"{currency}/MWh", "power_kw": settings.power_kw,
            "traces": sorted(p.name for p in by_zone.values()),
            "forecast_model": describe_price_model(sigma24=settings.price_sigma24, rho=settings.rho),
            "price_sigma24": settings.price_sigma24,
            "planned_on_prices": strategies_on_prices(settings.strategies),
        }
    return out
