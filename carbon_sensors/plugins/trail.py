"""The decision trail: every decision a gate makes goes to the ledger, and none ever waits for it.

- The **worker** writes its gate's first decision at once (:func:`record_now`): the task is about to
  defer or start, and the write is one short transaction. A failure is logged, never raised.
- The **triggerer** is one event loop holding thousands of waiting gates, so its decisions go to a
  bounded per-process queue (:func:`submit_decision`), and a background thread writes them in batches every
  ``flush_interval_s`` (:class:`DecisionWriter`). A full queue drops the decision and counts it; a
  database that fails is logged at most once a minute and retried; neither touches the gate.

``[carbon_sensors] record_decisions = False`` (``AIRFLOW__CARBON_SENSORS__RECORD_DECISIONS``) turns
the trail off.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from carbon_sensors.gate import CarbonGate, Decision
    from carbon_sensors.ledger import DecisionEntry, Ledger

__all__ = [
    "DecisionWriter",
    "decision_entry",
    "decision_writer",
    "record_now",
    "recording_enabled",
    "set_decision_writer",
    "submit",
    "submit_decision",
]

log = logging.getLogger(__name__)

ORIGIN_WORKER = "worker"
ORIGIN_TRIGGERER = "triggerer"
#: How often a failure of the same kind is logged, at most.
WARN_EVERY_S = 60.0


class _Throttled:
    """Logs a warning at most once per ``every_s``, with how many were not logged in between."""

    def __init__(self, every_s: float = WARN_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s, self.clock = every_s, clock
        self._last: float | None = None
        self._suppressed = 0
        self._lock = threading.Lock()

    def warning(self, message: str, *args: Any) -> bool:
        with self._lock:
            now = self.clock()
            if self._last is not None and now - self._last < self.every_s:
                self._suppressed += 1
                return False
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        if suppressed:
            message += f" ({suppressed} more like this in the last {self.every_s:g} s)"
        log.warning(message, *args)
        return True


_enabled: tuple[float, bool] | None = None


def recording_enabled() -> bool:
    """``[carbon_sensors] record_decisions`` (default True), read at most once a minute per process."""
    global _enabled
    now = time.monotonic()
    if _enabled is None or now - _enabled[0] > 60.0:
        from carbon_sensors.airflow.settings import record_decisions

        _enabled = (now, record_decisions())
    return _enabled[1]


def decision_entry(
    decision: Decision, *, dag_id: Any, task_id: Any, run_id: Any, try_number: Any = None, map_index: Any = -1,
    gate: CarbonGate | None = None, origin: str | None = None,
) -> DecisionEntry | None:
    """The ledger entry of a decision made for one Airflow task try; None without a task identity."""
    if not all(isinstance(v, str) and v for v in (dag_id, task_id, run_id)):
        return None
    from carbon_sensors.ledger import DecisionEntry
    from carbon_sensors.records import RunKey

    tries = try_number if isinstance(try_number, int) and not isinstance(try_number, bool) and try_number > 0 else 1
    index = map_index if isinstance(map_index, int) and not isinstance(map_index, bool) else -1
    # The fields of Decision.to_event(), read straight from the decision: a triggerer makes thousands of
    # these, and every dict and string made here is work for the garbage collector (a test pins the equality).
    p = decision.plan
    planned = None if p is None else p.intensity_planned
    submitted = decision.intensity_at_submission
    return DecisionEntry(
        RunKey("airflow", dag_id, task_id, run_id, tries, index), decision.decided_at, decision.status,
        reason=decision.reason, zone=p.zone if p else decision.zone,
        planned_start=p.planned_start if p else None,
        latest_start=p.latest_start if p else decision.latest_start,
        deadline=p.deadline if p else decision.deadline, next_check=decision.next_check, submitted_at=decision.submitted_at,
        expected_duration_s=None if gate is None or gate.expected_duration is None
        else gate.expected_duration.total_seconds(),
        intensity=None if planned is None else round(planned, 3),
        intensity_at_submission=None if submitted is None else round(submitted, 3),
        saving_pct=None if submitted is None or planned is None or submitted <= 0
        else round((submitted - planned) / submitted * 100.0, 3),
        signal=p.signal if p else None, source=p.source if p else None,
        source_spec=None if gate is None else _spec(gate.source), forced_reason=decision.forced_reason,
        fallback=decision.fallback, origin=origin, **_prices(p, decision.price_at_submission),
    )


def _prices(p: Any, submitted: float | None) -> dict[str, Any]:
    """The decision's price figures (as in ``Decision.to_event()``), only where its gate had a price source."""
    if p is None or p.price_currency is None:
        return {}
    planned = p.price_planned
    return {
        "price": None if planned is None else round(planned, 4),
        "price_at_submission": None if submitted is None else round(submitted, 4),
        "cost_change_pct": None if planned is None or not submitted else round((planned - submitted) / abs(submitted) * 100.0, 3),
        "price_currency": p.price_currency,
    }


_specs: dict[int, tuple[Any, dict[str, Any]]] = {}


def _spec(source: Any) -> dict[str, Any]:
    """``source.to_spec()``, made once per source object (sources are shared; the spec is only read)."""
    known = _specs.get(id(source))
    if known is None or known[0] is not source:
        if len(_specs) >= 1024:
            _specs.clear()
        known = _specs[id(source)] = (source, source.to_spec())
    return known[1]


_ledgers: dict[str, Ledger] = {}
_sync_warnings = _Throttled()


def _ledger(url: str | None) -> Ledger:
    from carbon_sensors.ledger import Ledger, default_ledger_url

    url = url or default_ledger_url()
    if url not in _ledgers:
        _ledgers[url] = Ledger(url)
    return _ledgers[url]


def record_now(entry: DecisionEntry | None, ledger_url: str | None = None) -> bool:
    """Write one decision now (in a worker); False, with a warning at most once a minute, when it cannot be written."""
    if entry is None:
        return False
    try:
        _ledger(ledger_url).add_decisions([entry])
        return True
    except Exception as exc:  # noqa: BLE001 - the trail never fails a task
        _sync_warnings.warning("carbon-sensors: cannot write the gate decision to the ledger (%s); the gate goes on", exc)
        return False


class DecisionWriter:
    """A bounded queue of decisions and a background thread writing them to the ledger in batches.

    ``submit()`` never blocks and never raises: it returns False and counts the decision in
    ``dropped`` when the queue is full. The thread starts on the first ``submit()`` (again in a forked
    child) and flushes every ``flush_interval_s``, or at once when a batch is full; ``flush()`` writes
    what is queued now. A batch the
    database refuses is retried at the next flush (``failures`` counts the tries), while at most
    ``max_queue`` decisions wait; a batch with a value the database can never take is dropped.
    ``on_tick`` runs after each flush on the background thread (the waiting-gates gauge).

    :meth:`submit_decision` queues the decision as it is, so the event loop only appends a tuple;
    the thread turns it into a ledger entry, and lets other threads run between batches.
    """

    def __init__(
        self, ledger: Ledger | str | None = None, *, flush_interval_s: float = 2.0, max_queue: int = 20_000,
        batch_size: int = 500, on_tick: Callable[[], None] | None = None, warn_every_s: float = WARN_EVERY_S,
    ) -> None:
        if max_queue < 1 or batch_size < 1 or flush_interval_s <= 0:
            from carbon_sensors.errors import ConfigurationError

            raise ConfigurationError("max_queue and batch_size must be at least 1, flush_interval_s above 0")
        self._ledger_arg = ledger
        self._ledger_obj: Ledger | None = ledger if not isinstance(ledger, str | None) else None
        self.flush_interval_s, self.max_queue, self.batch_size = flush_interval_s, max_queue, batch_size
        self.on_tick = on_tick
        self._warn = _Throttled(warn_every_s)
        self._drop_warn = _Throttled(warn_every_s)
        self.submitted = self.written = self.dropped = self.failures = 0
        self._reset()
        _writers.add(self)

    def _reset(self) -> None:
        """Fresh queue, locks and thread state: at creation, and in a forked child (the parent's belong to it)."""
        self._queue: queue.Queue[DecisionEntry | tuple[Any, ...]] = queue.Queue(maxsize=self.max_queue)
        self._retry: list[DecisionEntry] = []
        self._flush_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._ticked_at = 0.0
        self._backoff = False  # the last write failed: wait the whole interval before the next

    def __repr__(self) -> str:
        return (f"DecisionWriter(queued={self.queued}, written={self.written}, dropped={self.dropped}, "
                f"failures={self.failures})")

    @property
    def queued(self) -> int:
        """Decisions waiting to be written (queued and kept for a retry)."""
        return self._queue.qsize() + len(self._retry)

    @property
    def ledger(self) -> Ledger:
        if self._ledger_obj is None:
            self._ledger_obj = _ledger(self._ledger_arg if isinstance(self._ledger_arg, str) else None)
        return self._ledger_obj

    def submit_decision(self, decision: Decision, *, dag_id: Any, task_id: Any, run_id: Any, try_number: Any = None,
                        map_index: Any = -1, gate: CarbonGate | None = None, origin: str | None = None) -> bool:
        """Queue a gate's decision as it is (the entry is built on the writer's thread); see :func:`decision_entry`."""
        return self._put((decision, dag_id, task_id, run_id, try_number, map_index, gate, origin))

    def submit(self, entry: DecisionEntry | None) -> bool:
        """Queue a decision for the next flush; False (counted in ``dropped``) when the queue is full."""
        if entry is None:
            return False
        return self._put(entry)

    def _put(self, item: DecisionEntry | tuple[Any, ...]) -> bool:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._dropped(1, "the queue is full")
            return False
        self.submitted += 1
        if self._pid != os.getpid():
            self._start()
        if self._queue.qsize() >= self.batch_size:  # a full batch waits: write it now rather than hold it
            self._wake.set()
        return True

    def _dropped(self, count: int, why: str) -> None:
        self.dropped += count
        from carbon_sensors.plugins import metrics

        metrics.incr("decisions_dropped", count)
        self._drop_warn.warning("carbon-sensors: %d gate decision(s) not recorded (%s; %d dropped so far); the gates "
                                "are not affected", count, why, self.dropped)

    def _start(self) -> None:
        with self._start_lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._stop, self._wake = threading.Event(), threading.Event()
            self._thread = threading.Thread(target=self._run, name="carbon-sensors-decisions", daemon=True)
            self._thread.start()
            atexit.register(self.close)

    def _run(self) -> None:
        stop, wake = self._stop, self._wake
        while not stop.is_set():
            (stop if self._backoff else wake).wait(self.flush_interval_s)
            wake.clear()
            self._tick()
        self._tick()

    def _tick(self) -> None:
        try:
            self.flush()
        except Exception:  # the thread must live on
            log.exception("carbon-sensors: the decision writer failed; it goes on")
        now = time.monotonic()
        if self.on_tick is not None and now - self._ticked_at >= self.flush_interval_s * 0.9:
            self._ticked_at = now
            try:
                self.on_tick()
            except Exception:  # logged with its traceback
                log.exception("carbon-sensors: the decision writer's tick failed; it goes on")

    def flush(self) -> int:
        """Write what is queued now, in batches; return how many were written (0 when the database failed)."""
        with self._flush_lock:
            batch, self._retry = self._retry, []
            written = 0
            while True:
                while len(batch) < self.batch_size:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if (entry := self._entry(item)) is not None:
                        batch.append(entry)
                if not batch:
                    self._backoff = False
                    return written
                if not self._write(batch):
                    self._backoff = True
                    return written
                written += len(batch)
                batch = []
                time.sleep(0)  # let the event loop's thread run between batches

    def _entry(self, item: DecisionEntry | tuple[Any, ...]) -> DecisionEntry | None:
        if not isinstance(item, tuple):
            return item
        decision, dag_id, task_id, run_id, try_number, map_index, gate, origin = item
        try:
            return decision_entry(decision, dag_id=dag_id, task_id=task_id, run_id=run_id, try_number=try_number,
                                  map_index=map_index, gate=gate, origin=origin)
        except Exception as exc:  # noqa: BLE001 - one odd decision must not stop the others
            self._dropped(1, f"it cannot be read: {type(exc).__name__}: {exc}")
            return None

    def _write(self, batch: list[DecisionEntry]) -> bool:
        import sqlalchemy as sa

        from carbon_sensors.errors import ConfigurationError

        try:
            self.ledger.add_decisions(batch)
        except ConfigurationError as exc:  # a bad URL or entry: retrying cannot help
            self._dropped(len(batch), f"{exc}")
            return True
        except Exception as exc:  # noqa: BLE001 - a database failure never reaches a gate
            self.failures += 1
            if isinstance(exc.__cause__, sa.exc.DataError | sa.exc.IntegrityError):
                self._dropped(len(batch), f"the ledger refuses them: {exc}")
                return True
            keep = batch[-self.max_queue:]
            if len(keep) < len(batch):
                self._dropped(len(batch) - len(keep), "too many wait for the ledger")
            self._retry = keep
            self._warn.warning("carbon-sensors: cannot write %d gate decision(s) to the ledger (%s); retrying every "
                               "%g s, the gates are not affected", len(batch), exc, self.flush_interval_s)
            return False
        self.written += len(batch)
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the thread after a last flush, waiting at most ``timeout_s`` (the process may be exiting)."""
        thread = self._thread
        self._stop.set()
        self._wake.set()
        if thread is not None and thread.is_alive() and thread is not threading.current_thread() and \
                self._pid == os.getpid():
            thread.join(timeout_s)
        self._pid = None


_writers: weakref.WeakSet[DecisionWriter] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A lock held by the parent's writer thread at the fork would stay held forever in the child.
    global _writer_lock
    _writer_lock = threading.Lock()
    for writer in list(_writers):
        writer._reset()


os.register_at_fork(after_in_child=_after_fork_in_child)

_writer: DecisionWriter | None = None
_writer_lock = threading.Lock()


def _emit_waiting() -> None:
    from carbon_sensors.plugins import metrics

    metrics.emit_waiting()


def decision_writer() -> DecisionWriter:
    """This process's writer, writing to ``[carbon_sensors] ledger_url`` or the default ledger."""
    global _writer
    if _writer is None:
        with _writer_lock:
            if _writer is None:
                from carbon_sensors.airflow.settings import ledger_url

                _writer = DecisionWriter(ledger_url(), on_tick=_emit_waiting)
    return _writer


def set_decision_writer(writer: DecisionWriter | None) -> DecisionWriter | None:
    """Replace this process's writer (tests); return the one it had. None makes the next use build a default one."""
    global _writer
    with _writer_lock:
        previous, _writer = _writer, writer
    return previous


def submit(entry: DecisionEntry | None) -> bool:
    """Queue an entry on this process's writer; never blocks, never raises."""
    try:
        return decision_writer().submit(entry)
    except Exception as exc:  # noqa: BLE001
        log.debug("carbon-sensors: decision not queued: %s", exc)
        return False


def submit_decision(decision: Decision, **identity: Any) -> bool:
    """Queue a gate's decision on this process's writer (the triggerer's way): one tuple on the loop, never blocks."""
    try:
        return decision_writer().submit_decision(decision, **identity)
    except Exception as exc:  # noqa: BLE001
        log.debug("carbon-sensors: decision not queued: %s", exc)
        return False

