"""A carbon gate: the one place that turns a job's settings, a source and the time into a decision.

The Airflow trigger, the sensor's poke mode and the decorators all call :func:`decide` (one
decision) or :func:`wait_for_window` (decide, sleep until the next decision point, repeat).

>>> from datetime import timedelta
>>> from carbon_sensors.deadlines import After
>>> gate = CarbonGate(zones="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1))
>>> gate.zones, gate.source.kind, gate.on_source_error
(('DE',), 'embedded', 'run_now')
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from carbon_sensors.clock import Clock
from carbon_sensors.correction import ForecastMemory
from carbon_sensors.deadlines import DeadlineSpec, check_deadline_spec
from carbon_sensors.decision import Decision
from carbon_sensors.errors import ConfigurationError, ForecastError, SourceError, UnknownZoneError
from carbon_sensors.overrides import KILL_SWITCH_ENV, Override, force_patterns, kill_switch_from_env
from carbon_sensors.pacing import default_pacer
from carbon_sensors.planning import Plan, Policy, latest_start, plan
from carbon_sensors.signals import EMBEDDED_SOURCE_NAME, EmbeddedProfileSource, Source, source_from_spec
from carbon_sensors.timeutil import as_utc

__all__ = [
    "GATE_SETTINGS",
    "KILL_SWITCH_ENV",
    "ON_SOURCE_ERROR",
    "CarbonGate",
    "Decision",
    "Override",
    "add_decision_listener",
    "decide",
    "force_patterns",
    "remove_decision_listener",
    "kill_switch_from_env",
    "wait_for_window",
    "with_recent_past",
]

log = logging.getLogger(__name__)

#: The longest a decision waits for the measured history its persistence prior needs.
HISTORY_TIMEOUT_S = 10.0
#: What a gate does when its source fails: start now, plan on the embedded profile, or fail the task.
ON_SOURCE_ERROR = ("run_now", "embedded", "fail")
#: The flat settings a gate is built from (:meth:`CarbonGate.from_settings`): the sensor's keywords,
#: the decorators' and Prefect's. Each adapter adds the one that names its credentials (``conn_id``
#: in Airflow, ``block`` in Prefect); tests check every public signature against this list.
GATE_SETTINGS: tuple[str, ...] = (
    "zone", "zones", "deadline", "expected_duration", "source", "max_delay", "threshold", "min_saving_pct",
    "safety_margin", "on_source_error", "check_interval", "fallbacks", "price_source", "max_cost_increase_pct",
    "objective", "max_intensity", "carbon_price_per_tonne", "currency", "persistence_prior",
)
#: The settings that make up the gate's :class:`~carbon_sensors.planning.Policy`.
POLICY_SETTINGS: tuple[str, ...] = tuple(f.name for f in fields(Policy))
_DEFAULT_POLICY = Policy()
_listeners: list[Callable[[Decision], None]] = []


def add_decision_listener(listener: Callable[[Decision], None]) -> None:
    """Call ``listener(decision)`` for every decision any waiting gate in this process makes.

    The decision trail (every re-plan) for logs, records and demos. Listeners must be quick and must
    not raise; an exception is logged and ignored, so a broken listener never holds up a gate.
    """
    _listeners.append(listener)


def remove_decision_listener(listener: Callable[[Decision], None]) -> None:
    """Stop calling ``listener``."""
    _listeners.remove(listener)


def _notify(decision: Decision) -> None:
    for listener in list(_listeners):
        try:
            listener(decision)
        except Exception:
            log.exception("decision listener %r failed", listener)


@dataclass(frozen=True, slots=True)
class CarbonGate:
    """Everything a gate needs to decide: where, by when, for how long, from which signal.

    ``expected_duration=None`` means "learn it": the Airflow and Prefect adapters take a high
    percentile of the task's recent successful run times from the ledger before deciding (and start
    at once while there are fewer than three); :func:`decide` itself needs a concrete duration.

    Validated on construction (at DAG parse time): unknown zones, naive deadlines and durations
    longer than a relative deadline's slack fail here with a
    :class:`~carbon_sensors.errors.ConfigurationError`. :meth:`check_not_past` also refuses an
    absolute deadline that has already passed (the Airflow adapters call it when a DAG is parsed).
    """

    zones: Sequence[str] | str
    deadline: DeadlineSpec
    expected_duration: timedelta | None
    source: Source | str | dict[str, Any] = "embedded"
    policy: Policy = field(default_factory=Policy)
    on_source_error: str = "run_now"
    check_interval: timedelta = timedelta(minutes=1)
    fallbacks: Sequence[Source | str | dict[str, Any]] = ()
    price_source: Any = None

    def __post_init__(self) -> None:
        zones = (self.zones,) if isinstance(self.zones, str) else tuple(self.zones)
        if not zones or not all(isinstance(z, str) and z.strip() for z in zones):
            raise ConfigurationError(f"zones must be one or more zone names such as 'DE', got {self.zones!r}")
        if len(set(zones)) != len(zones):
            raise ConfigurationError(f"zones lists a zone twice: {zones!r}")
        object.__setattr__(self, "zones", tuple(sys.intern(z) for z in zones))
        object.__setattr__(self, "source", source_from_spec(self.source))
        object.__setattr__(self, "fallbacks", tuple(source_from_spec(f) for f in self.fallbacks))
        for zone in zones:
            self.source.check_zone(zone)
        for fallback in self.fallbacks:  # one that serves none of the zones would fail when it is needed most
            if not _served_zones(fallback, zones):
                try:
                    fallback.check_zone(zones[0])
                except UnknownZoneError as exc:
                    raise UnknownZoneError(f"fallback source {fallback.kind!r} serves none of the zones ({exc}); drop "
                                           "it from fallbacks= or give the zones a source that serves them") from None
        if self.expected_duration is not None and (
            not isinstance(self.expected_duration, timedelta) or self.expected_duration <= timedelta(0)
        ):
            raise ConfigurationError(
                f"expected_duration must be a positive timedelta, e.g. timedelta(hours=1), or None to learn it "
                f"from the ledger; got {self.expected_duration!r}"
            )
        if not isinstance(self.policy, Policy):
            raise ConfigurationError(f"policy must be a carbon_sensors.Policy, got {type(self.policy).__name__}")
        if self.on_source_error not in ON_SOURCE_ERROR:
            raise ConfigurationError(
                f"on_source_error must be one of {', '.join(ON_SOURCE_ERROR)}, got {self.on_source_error!r}"
            )
        if not isinstance(self.check_interval, timedelta) or self.check_interval <= timedelta(0):
            raise ConfigurationError(f"check_interval must be a positive timedelta, got {self.check_interval!r}")
        object.__setattr__(self, "price_source", _price_source(self.price_source))
        if self.policy.uses_prices and self.price_source is None:
            raise ConfigurationError(
                "the policy's cost settings (max_cost_increase_pct, objective='cost' or carbon_price_per_tonne) need a "
                "price forecast: give price_source=, e.g. a TariffPrices for your tariff, or drop the cost settings"
            )
        quoted = getattr(self.price_source, "currency", None)
        if self.policy.currency is not None and isinstance(quoted, str) and quoted != self.policy.currency:
            raise ConfigurationError(
                f"the policy's prices are in {self.policy.currency} but the price source quotes {quoted}; prices are "
                "never converted: use a price source in that currency, or change the policy's currency"
            )
        if self.price_source is not None and hasattr(self.price_source, "check_zone"):
            for zone in zones:
                self.price_source.check_zone(zone)
        margin = None if self.expected_duration is None else self.policy.margin_for(self.expected_duration)
        check_deadline_spec(self.deadline, self.expected_duration, safety_margin=margin)

    def check_not_past(self, now: datetime) -> None:
        """Refuse an absolute deadline at or before ``now``."""
        check_deadline_spec(self.deadline, self.expected_duration, now)

    @property
    def home_zone(self) -> str:
        return self.zones[0]

    @classmethod
    def from_settings(cls, **settings: Any) -> CarbonGate:
        """A gate from the flat settings of :data:`GATE_SETTINGS`: ``zone`` or ``zones``, the policy's beside the rest.

        >>> from carbon_sensors.deadlines import After
        >>> CarbonGate.from_settings(zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1),
        ...                          threshold=150).policy.threshold
        150
        """
        if unknown := sorted(set(settings) - set(GATE_SETTINGS)):
            raise TypeError(f"unknown gate setting(s) {', '.join(unknown)}; the settings are {', '.join(GATE_SETTINGS)}")
        zone, zones = settings.pop("zone", None), settings.pop("zones", None)
        if (zone is None) == (zones is None):
            raise ConfigurationError("give exactly one of zone='DE' or zones=['DE', 'FR'] (home zone first)")
        policy = Policy(**{name: settings.pop(name) for name in POLICY_SETTINGS if name in settings})
        return cls(zones=zone if zone is not None else tuple(zones or ()), policy=policy,
                   fallbacks=tuple(settings.pop("fallbacks", None) or ()), **settings)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings (durations in seconds, sources as specs), the inverse of :meth:`from_dict`.

        The deadline is not among them: it may be relative, and each adapter carries the absolute one.
        """
        duration = self.expected_duration
        return {
            "zones": list(self.zones),
            "expected_duration_s": None if duration is None else duration.total_seconds(),
            "source": self.source.to_spec(),
            "policy": self.policy.to_dict(),
            "on_source_error": self.on_source_error,
            "check_interval_s": self.check_interval.total_seconds(),
            "fallbacks": [f.to_spec() for f in self.fallbacks],
            "price_source": None if self.price_source is None else self.price_source.to_spec(),
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, deadline: DeadlineSpec, source_from: Callable[[Any], Any] | None = None,
    ) -> CarbonGate:
        """Rebuild a gate written by :meth:`to_dict`, with its ``deadline``; missing optional keys take the defaults.

        ``zones`` and ``expected_duration_s`` are required (KeyError without them); other keys are ignored.
        ``source_from`` turns each source spec into a source (by default ``source_from_spec``), for an
        adapter whose specs say more (Prefect's name a credentials block).
        """
        def sourced(spec: Any) -> Any:
            return spec if source_from is None else source_from(spec)

        zones = tuple(data["zones"])
        duration = data["expected_duration_s"]
        return cls(
            zones=zones,
            deadline=deadline,
            expected_duration=None if duration is None else timedelta(seconds=float(duration)),
            source=sourced(data.get("source") or "embedded"),
            policy=Policy.from_dict(policy) if (policy := data.get("policy")) else _DEFAULT_POLICY,
            on_source_error=data.get("on_source_error", "run_now"),
            check_interval=timedelta(seconds=float(data.get("check_interval_s", 60.0))),
            fallbacks=tuple(sourced(f) for f in data.get("fallbacks") or ()),
            price_source=data.get("price_source"),  # price kinds are their own registry, not ``source_from``'s
        )


def _price_source(spec: Any) -> Any:
    """A price source from itself or its spec (``to_spec()``); None stays None (carbon only)."""
    if spec is None or hasattr(spec, "fetch"):
        return spec
    from carbon_sensors.signals.prices import price_source_from_spec

    return price_source_from_spec(spec)


async def decide(
    gate: CarbonGate,
    *,
    now: datetime,
    deadline: datetime,
    submitted_at: datetime,
    override: Override | None = None,
    intensity_at_submission: float | None = None,
    waiting_until: datetime | None = None,
    memory: ForecastMemory | None = None,
    signal_at_submission: str | None = None,
    configuration_checked: bool = False,
    price_at_submission: float | None = None,
) -> Decision:
    """One decision for ``gate`` at ``now``: start (``go``/``forced``) or ``wait`` until ``next_check``.

    ``intensity_at_submission``: the counterfactual from the gate's first decision, when this is a later one
    (``price_at_submission`` the same for the price, where the gate has a price source).
    ``waiting_until``: the start this gate is already waiting for. ``min_saving_pct`` decides whether
    waiting is worth it; before the planned start, re-plans just pick the best window (or a gate
    nearing its window would start early each time "now" came within the minimum saving of it), and
    once the window has come, postponing it again needs the minimum saving (or a gate waking a
    moment late would chase the same window a day later).
    ``memory``: the forecasts seen earlier in this wait, to correct new ones by their current error.
    ``configuration_checked``: the gate's configuration worked when its task started (a trigger's
    decisions). A :class:`ConfigurationError` from the source is then something that changed while
    the gate waited (a connection deleted, a file's columns renamed): a source failure, handled by
    the fallbacks and ``on_source_error``, so the gate still starts by its latest start. Otherwise
    (the task's first plan) it fails the task: a misconfiguration never runs as green.
    """
    if gate.expected_duration is None:
        raise ConfigurationError(
            "this gate's expected_duration is None (learned from the ledger by the Airflow and Prefect adapters); "
            "give decide() a gate with a concrete duration: dataclasses.replace(gate, expected_duration=...)"
        )
    policy = gate.policy
    if waiting_until is not None:
        waiting_until = as_utc(waiting_until, "waiting_until")
    if waiting_until is not None and as_utc(now, "now") < waiting_until and policy.min_saving_pct:
        policy = _without_minimum(policy)
    decision = await _decide(gate, policy, now, deadline, submitted_at, override, memory, configuration_checked,
                             price_at_submission)
    counterfactual, signal = intensity_at_submission, signal_at_submission
    if counterfactual is None and decision.plan is not None:
        counterfactual, signal = _counterfactual(decision.plan), decision.plan.signal
    if decision.plan is not None and signal is not None and signal != decision.plan.signal:
        counterfactual = None  # average and marginal are never compared (a fallback changed the signal)
    if price_at_submission is None and decision.plan is not None:
        price_at_submission = decision.plan.price_now
    return replace(decision, intensity_at_submission=counterfactual, signal_at_submission=signal,
                   submitted_at=as_utc(submitted_at, "submitted_at"), price_at_submission=price_at_submission)


def _counterfactual(plan: Plan) -> float | None:
    """What the first plan measured its saving against, so the event's ``saving_pct`` says what the plan said.

    A wait beats the best start-now option in any allowed zone (moving now would have had that
    much without waiting); a start now, here or in another zone, is measured against the home zone now.
    """
    if plan.decision == "wait" and plan.intensity_best_now is not None:
        return plan.intensity_best_now
    return plan.intensity_now


@lru_cache(maxsize=64)
def _without_minimum(policy: Policy) -> Policy:
    return replace(policy, min_saving_pct=0.0)


async def _decide(
    gate: CarbonGate, policy: Policy, now: datetime, deadline: datetime, submitted_at: datetime,
    override: Override | None, memory: ForecastMemory | None = None, configuration_checked: bool = False,
    price_at_submission: float | None = None,
) -> Decision:
    now = as_utc(now, "now")
    deadline = as_utc(deadline, "deadline")
    zone = gate.home_zone
    latest = latest_start(deadline, gate.expected_duration, gate.policy)
    if override is not None:
        return Decision("forced", f"Starting now: {override.reason}.", now, zone, forced_reason=override.kind,
                        deadline=deadline, latest_start=latest)
    # The cost ceiling stays measured against the price at submission while the gate waits.
    prices = await _fetch_prices(gate, now, deadline, configuration_checked)
    if prices is not None:
        prices = _Prices(prices, price_at_submission)
    try:
        try:
            forecasts = await _fetch(gate.source, gate.zones, now, deadline)
        except ConfigurationError as exc:
            if not configuration_checked:
                raise
            log.warning("the gate's source stopped working while it waited (%s); it was configured right when its "
                        "task started, so this is handled as a source failure", exc)
            raise SourceError(f"{type(exc).__name__}: {exc}") from exc
        if policy.persistence_prior:
            forecasts = await with_recent_past(gate.source, forecasts, now, deadline)
        if memory is not None:
            forecasts = [memory.correct(f) for f in forecasts]
        result = _plan(gate, policy, forecasts, now, deadline, submitted_at, prices)
        fallback = None
    except (SourceError, ForecastError, OSError) as exc:
        if isinstance(exc, ConfigurationError):
            raise  # a settings error that is also a SourceError (a column a file lacks): fails the task
        result, fallback = await _try_fallbacks(gate, policy, exc, now, deadline, submitted_at, prices)
        if result is None:
            result, fallback = await _on_source_error(gate, policy, exc, now, deadline, submitted_at, prices)
        if isinstance(result, Decision):
            return result
    if result.forced:
        kind = "deadline_at_risk" if result.deadline_at_risk else "latest_start"
        return Decision("forced", result.reason, now, result.zone, result, forced_reason=kind, fallback=fallback)
    if result.decision == "run_now":
        return Decision("go", result.reason, now, result.zone, result, fallback=fallback)
    refresh = gate.source.refresh_interval  # on a fallback too: the primary source may have recovered
    next_check = min(result.planned_start, latest)
    if refresh is not None:
        next_check = min(next_check, now + refresh)
    return Decision("wait", result.reason, now, result.zone, result, fallback=fallback, next_check=next_check)


async def wait_for_window(
    gate: CarbonGate,
    *,
    deadline: datetime,
    submitted_at: datetime,
    clock: Clock,
    read_override: Callable[[], Awaitable[Override | None]] | None = None,
    on_decision: Callable[[Decision], None] | None = None,
    intensity_at_submission: float | None = None,
    waiting_until: datetime | None = None,
    signal_at_submission: str | None = None,
    configuration_checked: bool = False,
    correct_forecasts: bool = False,
    price_at_submission: float | None = None,
) -> Decision:
    """Decide, sleep until the next decision point, re-plan; return the first decision to start.

    Sleeps in steps of at most ``gate.check_interval``, re-reading the clock and the override each
    step, so a clock jump or a manual override is noticed; it never sleeps past the latest start.
    ``waiting_until``: the planned start of an earlier decision to wait (e.g. the sensor's, in the worker).
    ``configuration_checked``: as for :func:`decide` (a trigger, whose task planned first); the
    re-plans after the first decision always count as checked.
    ``correct_forecasts``: correct each forecast by the error its source made on the current slot
    (:mod:`carbon_sensors.correction`). Off by default: it assumes revisions continue, which neither
    the NESO sample nor the martingale backtest model shows (``bench/forecast_revisions.py``), and
    there it costs up to 3 points of the oracle's saving.
    """
    memory = ForecastMemory() if correct_forecasts else None
    pacer = default_pacer()

    while True:
        await pacer.turn()  # gates wake together at a refresh: a burst of re-plans must not block the loop
        override = kill_switch_from_env() or (await read_override() if read_override else None)
        decision = await decide(
            gate, now=clock.now(), deadline=deadline, submitted_at=submitted_at, override=override,
            intensity_at_submission=intensity_at_submission, waiting_until=waiting_until, memory=memory,
            signal_at_submission=signal_at_submission, configuration_checked=configuration_checked,
            price_at_submission=price_at_submission,
        )
        if intensity_at_submission is None:
            intensity_at_submission = decision.intensity_at_submission
            signal_at_submission = decision.signal_at_submission
        # The first plan used this configuration: from now on, one that breaks (a connection deleted
        # while the gate waits) is a source failure, and the fallbacks and the latest start decide.
        configuration_checked = True
        if price_at_submission is None:
            price_at_submission = decision.price_at_submission
        if decision.status == "wait" and decision.plan is not None:
            waiting_until = decision.plan.planned_start
        if on_decision is not None:
            on_decision(decision)
        _notify(decision)
        if decision.status != "wait":
            return decision
        assert decision.next_check is not None
        next_check, step_s = decision.next_check, gate.check_interval.total_seconds()
        del decision  # a triggerer keeps thousands of these loops asleep: hold only what the wait needs
        while (remaining := (next_check - clock.now()).total_seconds()) > 0:
            await clock.sleep(min(remaining, step_s))
            await pacer.turn()
            if kill_switch_from_env() or (read_override is not None and await read_override() is not None):
                break


async def _fetch(source: Source, zones: Sequence[str], now: datetime, deadline: datetime) -> list:
    # The window the planner may need: from now until the job must be done.
    forecasts = [await source.fetch(z, now, max(deadline, now + timedelta(hours=1)), now=now) for z in zones]
    # Every gate sharing one in-flight request resumes in the iteration it lands in: pace their plans
    # (primary, fallback and embedded fetches alike).
    await default_pacer().turn()
    return forecasts


async def with_recent_past(source: Source, forecasts: list, now: datetime, until: datetime | None = None) -> list:
    """Each forecast blended with the zone's measured past (:mod:`carbon_sensors.planning.prior`), up to ``until``
    (the deadline: no plan reads past it).

    Only where the source serves measured history (``fetch_measured``); a history that fails, is
    slower than ``HISTORY_TIMEOUT_S`` or is too short leaves the forecast as it is: the prior
    improves a plan, it never holds one up.

    >>> import asyncio
    >>> from datetime import UTC, datetime, timedelta
    >>> source, now = EmbeddedProfileSource(), datetime(2026, 6, 15, tzinfo=UTC)
    >>> forecast = asyncio.run(source.fetch("DE", now, now + timedelta(hours=8), now=now))
    >>> asyncio.run(with_recent_past(source, [forecast], now)) == [forecast]  # the profile has no history
    True
    """
    fetch_measured = getattr(source, "fetch_measured", None)
    if fetch_measured is None:
        return forecasts
    import asyncio

    from carbon_sensors.planning.prior import HISTORY, blend_with_persistence

    out = []
    for forecast in forecasts:
        try:
            measured = await asyncio.wait_for(fetch_measured(forecast.zone, now - HISTORY, now, now=now),
                                              HISTORY_TIMEOUT_S)
        except (SourceError, ForecastError, OSError, TimeoutError) as exc:
            log.info("no measured history for %s (%s: %s); planning on the forecast as it is", forecast.zone,
                     type(exc).__name__, exc)
            out.append(forecast)
            continue
        out.append(blend_with_persistence(forecast, measured, now=now, until=until))
    return out


@dataclass(frozen=True, slots=True)
class _Prices:
    """The price forecasts a decision plans on, and the price its cost ceiling is measured against."""

    forecasts: list
    baseline: float | None


async def _fetch_prices(gate: CarbonGate, now: datetime, deadline: datetime, configuration_checked: bool) -> list | None:
    """The price forecast of each allowed zone from the gate's price source (None without one).

    A failing price source never holds a job up: it gives no prices, and the planner plans on
    carbon alone and says so. A configuration error fails the task's first plan, as the carbon
    source's does.
    """
    source = gate.price_source
    if source is None:
        return None
    prices = []
    for zone in gate.zones:
        try:
            prices.append(await source.fetch(zone, now, max(deadline, now + timedelta(hours=1)), now=now))
        except ConfigurationError:
            if not configuration_checked:
                raise
            log.warning("the gate's price source stopped working while it waited; planning %s on carbon alone", zone,
                        exc_info=True)
        except (SourceError, ForecastError, OSError) as exc:
            log.warning("price source failed for %s (%s: %s); planning on carbon alone", zone, type(exc).__name__, exc)
    return prices


def _plan(
    gate: CarbonGate, policy: Policy, forecasts: list, now: datetime, deadline: datetime, submitted_at: datetime,
    prices: _Prices | None = None,
) -> Plan:
    return plan(
        forecasts, now=now, deadline=deadline, expected_duration=gate.expected_duration,
        policy=policy, submitted_at=submitted_at, prices=None if prices is None else prices.forecasts,
        price_baseline=None if prices is None else prices.baseline,
    )


async def _try_fallbacks(
    gate: CarbonGate, policy: Policy, exc: Exception, now: datetime, deadline: datetime, submitted_at: datetime,
    prices: _Prices | None = None,
) -> tuple[Plan | None, str | None]:
    """The configured fallback sources, in order; the first that can plan serves."""
    for source in gate.fallbacks:
        zones = _served_zones(source, gate.zones)  # like the embedded profile: plan on the zones it serves
        if not zones:
            continue
        try:
            forecasts = await _fetch(source, zones, now, deadline)
            plan_ = _plan(gate, policy, forecasts, now, deadline, submitted_at, prices)
        except (SourceError, ForecastError, OSError, ConfigurationError) as again:  # e.g. its connection deleted
            log.warning("fallback source %s failed too (%s: %s)", source.kind, type(again).__name__, again)
            continue
        log.warning("carbon source failed (%s: %s); the fallback %s serves", type(exc).__name__, exc, source.kind)
        return plan_, source.kind
    return None, None


def _served_zones(source: Source, zones: Sequence[str]) -> list[str]:
    """The zones, in order, that ``source`` serves."""
    served = []
    for zone in zones:
        try:
            source.check_zone(zone)
        except UnknownZoneError:
            continue
        served.append(zone)
    return served


async def _on_source_error(
    gate: CarbonGate, policy: Policy, exc: Exception, now: datetime, deadline: datetime, submitted_at: datetime,
    prices: _Prices | None = None,
) -> tuple[Plan | Decision, str | None]:
    what = f"{type(exc).__name__}: {exc}"
    if gate.on_source_error == "fail":
        raise exc
    if gate.on_source_error == "embedded" and not isinstance(gate.source, EmbeddedProfileSource):
        embedded = EmbeddedProfileSource()
        zones = []
        for zone in gate.zones:
            try:
                embedded.check_zone(zone)
                zones.append(zone)
            except UnknownZoneError:
                continue
        if zones:
            log.warning("carbon source failed (%s); planning on the embedded profile instead", what)
            forecasts = await _fetch(embedded, zones, now, deadline)
            return _plan(gate, policy, forecasts, now, deadline, submitted_at, prices), EMBEDDED_SOURCE_NAME
    log.warning("carbon source failed (%s); starting now as on_source_error=%r says", what, gate.on_source_error)
    return Decision(
        "forced", f"Starting now: the carbon source failed ({what}).", now, gate.home_zone,
        forced_reason="source_error", fallback="run_now", deadline=deadline,
        latest_start=latest_start(deadline, gate.expected_duration, gate.policy),
    ), "run_now"
