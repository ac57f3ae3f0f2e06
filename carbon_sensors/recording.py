"""Meter one task try and keep its record in the ledger: started before the work, completed after.

The Airflow gated operators and the decorator wrap the work in a :class:`RunRecorder`
automatically; Prefect flows and plain Python use it directly:

>>> from carbon_sensors.records import RunKey
>>> with RunRecorder(RunKey("python", "nightly", "enrich", "2026-06-15"), ledger="sqlite://") as recorder:
...     pass
>>> recorder.record.status
'success'

Recording never fails the work: a ledger that cannot be written gets a warning and the record goes
to the local spool (``carbon-sensors reconcile`` lands it later), unless ``strict=True``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from carbon_sensors.accounting import Prices, apply_carbon, apply_cost, apply_market_price, run_intensities, run_prices
from carbon_sensors.clock import Clock, default_clock
from carbon_sensors.errors import CarbonSensorsError, RecordingError
from carbon_sensors.records import RunKey, RunRecord
from carbon_sensors.timeutil import as_utc, parse_utc

if TYPE_CHECKING:
    from carbon_sensors.forecast import Forecast
    from carbon_sensors.ledger import Ledger
    from carbon_sensors.metering import Meter, MeterSettings
    from carbon_sensors.signals import Source

__all__ = ["HISTORY_RUNS", "HISTORY_QUANTILE", "TAG_NAMES", "RunRecorder", "learned_duration", "tags_from"]

log = logging.getLogger(__name__)

#: The tags finance and sustainability group by. ``cost_center`` is accepted for ``cost_centre``.
TAG_NAMES = ("team", "project", "cost_centre")
_TAG_ALIASES = {"team": "team", "project": "project", "cost_centre": "cost_centre", "cost_center": "cost_centre",
                "cost-centre": "cost_centre", "cost-center": "cost_centre"}
#: Expected duration learned from the ledger: this quantile of the last HISTORY_RUNS successful runs.
HISTORY_RUNS = 20
HISTORY_QUANTILE = 0.95
#: How long the end of a run waits for the intensity lookup started with it.
_INTENSITY_TIMEOUT_S = 30.0


def tags_from(params: Mapping[str, Any] | None = None, tags: Any = None) -> dict[str, str]:
    """Team, project and cost centre from task/DAG params (``{"team": "search"}``) or tags (``team:search``).

    Params win over tags.

    >>> tags_from({"team": "search"}, ["project:catalog", "nightly"])
    {'project': 'catalog', 'team': 'search'}
    """
    found: dict[str, str] = {}
    for tag in tags or ():
        name, sep, value = str(tag).partition(":")
        if sep and (key := _TAG_ALIASES.get(name.strip().lower())) and value.strip():
            found[key] = value.strip()
    for name, value in (params or {}).items():
        if (key := _TAG_ALIASES.get(str(name).lower())) and value not in (None, ""):
            found[key] = str(getattr(value, "value", value))  # Airflow wraps params in Param objects
    return found


def learned_duration(
    ledger: Ledger | str | None, orchestrator: str, dag_id: str, task_id: str
) -> tuple[timedelta | None, int]:
    """``(expected duration, runs it is based on)`` from the ledger's recent successful runs of a task.

    A high quantile (:data:`HISTORY_QUANTILE`, log-normal prediction bound, see
    :func:`carbon_sensors.planning.duration_quantile`) of the last :data:`HISTORY_RUNS`; None with
    fewer than three runs or when the ledger cannot be read (logged).
    """
    from carbon_sensors.planning import MIN_HISTORY_RUNS, duration_quantile

    try:
        if not hasattr(ledger, "durations"):
            from carbon_sensors.ledger import Ledger

            ledger = Ledger(ledger)  # type: ignore[arg-type]
        history = [d for d in ledger.durations(orchestrator, dag_id, task_id, limit=HISTORY_RUNS)  # type: ignore[union-attr]
                   if d.total_seconds() > 0]
    except Exception as exc:  # noqa: BLE001 - no history is the answer when the ledger is out of reach
        log.warning("carbon-sensors cannot read run times from the ledger (%s); no history to learn from", exc)
        return None, 0
    if len(history) < MIN_HISTORY_RUNS:
        return None, len(history)
    return duration_quantile(history, HISTORY_QUANTILE), len(history)


class RunRecorder:
    """A context manager that meters the work and writes its :class:`RunRecord`.

    ``event``: the gate's decision (``Decision.to_event()``) the work started on: schedule window,
    zone, forced or not, and the forecast figures used when the source cannot be asked again.
    ``source``: the gate's source, asked (in the background, while the work runs) for the intensity
    over the run and its counterfactual interval. ``price_source``: the gate's price source, asked the
    same way for the market price (the record's energy cost, in that source's currency).
    ``ledger``: a :class:`~carbon_sensors.ledger.Ledger` or URL (default: see
    :func:`carbon_sensors.ledger.default_ledger_url`). ``prices``: default
    :meth:`Prices.from_env`. ``strict``: raise :class:`RecordingError` instead of warning.
    """

    def __init__(
        self,
        key: RunKey,
        *,
        event: Mapping[str, Any] | None = None,
        source: Source | None = None,
        price_source: Any | None = None,
        submitted_at: datetime | None = None,
        expected_duration: timedelta | None = None,
        tags: Mapping[str, str] | None = None,
        ledger: Ledger | str | None = None,
        prices: Prices | None = None,
        strict: bool = False,
        meter_settings: MeterSettings | None = None,
        heartbeat_interval: timedelta = timedelta(minutes=5),
        clock: Clock | None = None,
    ) -> None:
        self.key, self.event, self.source, self.price_source = key, dict(event or {}), source, price_source
        self.strict, self.clock = strict, clock or default_clock()
        self.expected_duration = expected_duration
        self.heartbeat_interval = heartbeat_interval
        self._ledger_arg, self._prices, self._meter_settings = ledger, prices, meter_settings
        self._tags = {k: v for k, v in (tags or {}).items() if k in TAG_NAMES and v}
        if submitted_at is None and self.event.get("submitted_at"):
            submitted_at = parse_utc(self.event["submitted_at"], "submitted_at")
        self.submitted_at = None if submitted_at is None else as_utc(submitted_at, "submitted_at")
        self.record = RunRecord(key=key)
        self._ledger: Ledger | None = None
        self._meter: Meter | None = None
        self._intensity: Future | None = None
        self._price: Future | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    # -- the context manager ------------------------------------------------------------------

    def __enter__(self) -> RunRecorder:
        now = as_utc(self.clock.now())
        self.record = self._started_record(now)
        self._write("start", self.record)
        self._intensity = self._look_up(self.source, now)
        self._price = self._look_up(self.price_source, now)
        self._meter = self._start_meter()
        if self.heartbeat_interval.total_seconds() > 0:
            self._heartbeat = threading.Thread(target=self._beat, name="carbon-sensors-heartbeat", daemon=True)
            self._heartbeat.start()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        self._stop.set()
        measurement = self._stop_meter(exc_type, exc, tb)
        try:
            self.record = self._finished_record(measurement, exc)
        except CarbonSensorsError:
            if self.strict:
                raise
            log.warning("carbon-sensors could not complete the run record", exc_info=True)
        if self._write("finish", self.record):
            self._land_spool()
        return False  # the work's own exception, if any, propagates unchanged

    # -- building the record ------------------------------------------------------------------

    def _started_record(self, now: datetime) -> RunRecord:
        e = self.event

        def moment(name: str) -> datetime | None:
            return parse_utc(e[name], name) if e.get(name) else None

        return RunRecord(
            key=self.key, status="started", **self._tags,
            submitted_at=self.submitted_at, planned_start=moment("planned_start"), latest_start=moment("latest_start"),
            deadline=moment("deadline"), started_at=now, heartbeat_at=now, zone=e.get("zone"),
            forced=bool(e.get("forced")), forced_reason=e.get("forced_reason"), fallback=e.get("fallback"),
            decision_reason=e.get("reason"), carbon_signal=e.get("signal"), carbon_source=e.get("source"),
            source_spec=None if self.source is None else self.source.to_spec(),
        )

    def _finished_record(self, measurement: Any, exc: BaseException | None) -> RunRecord:
        record = self.record
        ended = as_utc(self.clock.now())
        status = "success" if exc is None else "failed"
        error = None if exc is None else f"{type(exc).__name__}: {exc}"[:500]
        notes = list(record.notes)
        gpu_count = 0
        if measurement is not None:
            notes.extend(measurement.notes)
            gpu_count = measurement.gpu_count
            record = replace(record, energy_kwh=measurement.energy_kwh, energy_measured=measurement.energy_measured,
                             components=measurement.components, tokens=measurement.tokens)
        record = replace(record, status=status, ended_at=ended, heartbeat_at=ended, error=error, notes=tuple(notes))
        record = self._with_price(self._with_carbon(record))
        return apply_cost(record, self.prices, gpu_count=gpu_count, strict=self.strict)

    def _with_carbon(self, record: RunRecord) -> RunRecord:
        e = self.event
        forecast = self._forecast()
        assert record.started_at is not None and record.ended_at is not None
        if forecast is not None:
            intensity, counterfactual, basis = run_intensities(
                forecast, submitted_at=self.submitted_at, started_at=record.started_at, ended_at=record.ended_at)
            if counterfactual is None and e.get("signal") == forecast.signal:
                counterfactual = e.get("intensity_at_submission")  # the gate's own figure at submission
            if intensity is not None:
                return apply_carbon(record, intensity=intensity, counterfactual=counterfactual, signal=forecast.signal,
                                    source=forecast.source, basis=basis)
        # The source could not be asked: the figures the gate planned on, marked as forecast.
        notes = (*record.notes, "intensity from the gate's plan: the source gave none for the run's interval")
        return apply_carbon(replace(record, notes=notes), intensity=e.get("intensity"),
                            counterfactual=e.get("intensity_at_submission"), signal=e.get("signal"),
                            source=e.get("source"), basis="forecast")

    def _with_price(self, record: RunRecord) -> RunRecord:
        e = self.event
        prices = self._result(self._price, "price")
        assert record.started_at is not None and record.ended_at is not None
        if prices is not None:
            price, counterfactual = run_prices(prices, submitted_at=self.submitted_at, started_at=record.started_at,
                                               ended_at=record.ended_at)
            if counterfactual is None and e.get("price_currency") == prices.currency:
                counterfactual = e.get("price_at_submission")
            expected = e.get("price") if e.get("price_currency") == prices.currency else None
            if price is not None:
                return apply_market_price(record, currency=prices.currency, source=prices.source, price=price,
                                          counterfactual=counterfactual, expected=expected)
        if e.get("price_currency") and e.get("price") is not None:
            # The price source could not be asked: the prices the gate planned on.
            notes = (*record.notes, "price from the gate's plan: the price source gave none for the run's interval")
            return apply_market_price(replace(record, notes=notes), currency=e["price_currency"],
                                      source=e.get("price_source"), price=e["price"],
                                      counterfactual=e.get("price_at_submission"), expected=e["price"])
        return record

    @property
    def prices(self) -> Prices:
        if self._prices is None:
            try:
                self._prices = Prices.from_env()
            except CarbonSensorsError:
                if self.strict:
                    raise
                log.warning("carbon-sensors cannot read the price table; costs are left empty", exc_info=True)
                self._prices = Prices()
        return self._prices

    # -- intensity, meter, heartbeat ----------------------------------------------------------

    def _look_up(self, source: Any | None, now: datetime) -> Future | None:
        """Ask ``source`` (carbon or price) in the background for the run's interval and its counterfactual."""
        zone = self.event.get("zone")
        if source is None or not zone:
            return None
        start = min(now, self.submitted_at or now)
        horizon = max(self.expected_duration or timedelta(hours=1), timedelta(hours=1)) * 3
        end = now + horizon

        def fetch() -> Any:
            from carbon_sensors.signals import run_sync

            return run_sync(source.fetch(zone, start, end, now=now))

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="carbon-sensors-lookup")
        future = pool.submit(fetch)
        pool.shutdown(wait=False)
        return future

    def _forecast(self) -> Forecast | None:
        return self._result(self._intensity, "intensity")

    def _result(self, future: Future | None, what: str) -> Any:
        if future is None:
            return None
        try:
            return future.result(timeout=_INTENSITY_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - a source failure only costs precision, noted in the record
            log.warning("carbon-sensors: no %s for the run's interval (%s: %s); using the gate's plan",
                        what, type(exc).__name__, exc)
            return None

    def _start_meter(self) -> Meter | None:
        try:
            from carbon_sensors.metering import Meter

            meter = Meter(settings=self._meter_settings, strict=self.strict)
            meter.__enter__()
            return meter
        except Exception as exc:
            if self.strict:
                raise RecordingError(f"cannot start the energy meter: {exc}") from exc
            log.warning("carbon-sensors cannot start the energy meter (%s); this run's energy is unknown", exc)
            return None

    def _stop_meter(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Any:
        if self._meter is None:
            return None
        try:
            self._meter.__exit__(exc_type, exc, tb)  # a strict meter raises only when the work succeeded
            return self._meter.measurement
        except Exception as err:
            if self.strict:
                raise RecordingError(f"cannot read the energy meter: {err}") from err
            log.warning("carbon-sensors cannot read the energy meter (%s); this run's energy is unknown", err)
            return None

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_interval.total_seconds()):
            try:
                self.ledger.heartbeat(self.key, as_utc(self.clock.now()))
            except Exception as exc:  # noqa: BLE001 - a missed heartbeat only delays reconcile's verdict
                log.debug("carbon-sensors heartbeat not written: %s", exc)

    # -- the ledger ---------------------------------------------------------------------------

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            from carbon_sensors.ledger import Ledger

            arg = self._ledger_arg
            self._ledger = arg if isinstance(arg, Ledger) else Ledger(arg)
        return self._ledger

    def _land_spool(self) -> None:
        """Records spooled while the ledger was away land with the next run that reaches it."""
        try:
            if self.ledger.spooled():
                log.info("carbon-sensors: landed %d spooled run records", self.ledger.flush_spool())
        except Exception as exc:  # noqa: BLE001 - reconcile lands them later
            log.debug("carbon-sensors: spooled records not landed yet: %s", exc)

    def _write(self, operation: str, record: RunRecord) -> bool:
        """Write to the ledger (True), or spool the record with a warning (False); raise when strict."""
        try:
            getattr(self.ledger, operation)(record)
            return True
        except Exception as exc:
            if self.strict:
                raise RecordingError(f"cannot write the run record to the ledger: {exc}") from exc
            problem = exc
        try:
            self.ledger.spool(record, operation=operation)
            log.warning("carbon-sensors: the ledger is not writable (%s); the record waits in the local spool "
                        "until `carbon-sensors reconcile` or the next run lands it", problem)
        except Exception as exc:  # noqa: BLE001 - recording must never fail the work
            log.warning("carbon-sensors: the run record is lost: the ledger (%s) and the spool (%s) both failed",
                        problem, exc)
        return False
