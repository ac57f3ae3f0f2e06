"""The decision trail: one entry per gate decision (each re-plan), stored next to the run records."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from carbon_sensors.errors import ConfigurationError
from carbon_sensors.ledger.rows import _KEY_FIELDS, _PAGE, _dumps
from carbon_sensors.ledger.schema import _DECISION_DATETIMES, _DECISION_NUMBERS, DECISIONS, DECISIONS_TABLE, RUNS
from carbon_sensors.ledger.store import Store
from carbon_sensors.records import RunKey
from carbon_sensors.timeutil import as_utc, seconds

__all__ = ["DECISION_STATUSES", "DecisionEntry", "Trail"]

#: ``wait`` (until a planned start), ``go`` (the forecast says start), ``forced`` (something else does), ``error``.
DECISION_STATUSES: tuple[str, ...] = ("wait", "go", "forced", "error")


@dataclass(frozen=True, slots=True)
class DecisionEntry:
    """One decision a gate made for one task try; a try's decision trail is its entries, oldest first.

    Times are aware UTC. Intensities are window means in gCO2eq/kWh of ``signal``; prices, where the
    gate had a price source, window means per MWh in ``price_currency``. ``origin`` says
    which process decided (``worker`` or ``triggerer``). ``source_spec`` is the gate's source as
    JSON (a connection id at most, never a key), so a page can draw the forecast the gate planned on.

    >>> from datetime import datetime, timezone
    >>> key = RunKey("airflow", "nightly", "enrich", "scheduled__2026-06-15", 1)
    >>> entry = DecisionEntry.from_event(key, {"status": "wait", "reason": "waiting for 03:00",
    ...     "decided_at": "2026-06-15T00:00:00+00:00", "planned_start": "2026-06-15T03:00:00+00:00"})
    >>> entry.status, entry.planned_start.hour
    ('wait', 3)
    """

    key: RunKey
    decided_at: datetime
    status: str
    reason: str = ""
    zone: str | None = None
    planned_start: datetime | None = None
    latest_start: datetime | None = None
    deadline: datetime | None = None
    next_check: datetime | None = None
    submitted_at: datetime | None = None
    expected_duration_s: float | None = None
    intensity: float | None = None
    intensity_at_submission: float | None = None
    saving_pct: float | None = None
    signal: str | None = None
    source: str | None = None
    source_spec: dict[str, Any] | None = None
    forced_reason: str | None = None
    fallback: str | None = None
    origin: str | None = None
    #: the planned window's mean price and starting-at-submission's, per MWh in ``price_currency``
    price: float | None = None
    price_at_submission: float | None = None
    cost_change_pct: float | None = None
    price_currency: str | None = None

    @classmethod
    def from_event(cls, key: RunKey, event: Mapping[str, Any], **extra: Any) -> DecisionEntry:
        """An entry from a decision event (``Decision.to_event()``); ISO strings become datetimes, unknown keys are ignored.

        ``extra`` sets fields the event does not carry (``next_check``, ``expected_duration_s``,
        ``source_spec``, ``origin``) or overrides the event's.
        """
        values = {name: event[name] for name in _DECISION_FIELDS if name in event}
        values.update(extra)
        for name in _DECISION_DATETIMES:
            if isinstance(values.get(name), str):
                values[name] = datetime.fromisoformat(values[name])
        if values.get("decided_at") is None:
            raise ConfigurationError("a decision needs decided_at, the time it was made")
        return cls(key=key, **values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: the key as a nested dict, datetimes as ISO-8601 UTC strings."""
        out: dict[str, Any] = {"key": {name: getattr(self.key, name) for name in _KEY_FIELDS}}
        for name in _DECISION_FIELDS:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        return out


_DECISION_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(DecisionEntry) if f.name != "key")


#: The decision table's columns in the order :func:`_decision_params` gives them.
_DECISION_COLUMNS: tuple[str, ...] = (*_KEY_FIELDS, *_DECISION_FIELDS)


def _decision_params(entry: DecisionEntry, sqlite: bool, specs: dict[int, str | None]) -> tuple[Any, ...]:
    """One row of parameters for the driver, in :data:`_DECISION_COLUMNS` order.

    A triggerer writes thousands of these at once, so this skips SQLAlchemy's per-value processing:
    datetimes are stored as :class:`_UTCDateTime` stores them, and each distinct source spec is
    turned into JSON once per call (``specs``).
    """
    if not isinstance(entry, DecisionEntry):
        raise ConfigurationError(f"add_decisions() stores DecisionEntry objects, got {type(entry).__name__}")
    if entry.status not in DECISION_STATUSES:
        raise ConfigurationError(f"unknown decision status {entry.status!r}; use one of {', '.join(DECISION_STATUSES)}")
    key = entry.key
    params: list[Any] = [key.orchestrator, key.dag_id, key.task_id, key.run_id, int(key.try_number), int(key.map_index)]
    for name in _DECISION_FIELDS:
        value = getattr(entry, name)
        if value is None:
            pass
        elif name in _DECISION_DATETIMES:
            if value.tzinfo is not UTC:
                value = as_utc(value, name)
            if sqlite:
                value = value.isoformat(timespec="microseconds")
        elif name in _DECISION_NUMBERS:
            value = float(value)
        elif name == "source_spec":
            text = specs.get(id(value), False)
            if text is False:
                text = specs[id(value)] = _dumps(value, name)
            value = text
        elif name == "reason":
            value = str(value)
        params.append(value)
    if params[_REASON_AT] is None:
        params[_REASON_AT] = ""
    return tuple(params)


_REASON_AT = _DECISION_COLUMNS.index("reason")


def _decision_from_row(row: Mapping[str, Any]) -> DecisionEntry:
    values = {name: row[name] for name in _DECISION_FIELDS}
    values["source_spec"] = None if row["source_spec"] is None else json.loads(row["source_spec"])
    return DecisionEntry(key=RunKey(*(row[name] for name in _KEY_FIELDS)), **values)


class Trail(Store):
    """Stores and reads decisions, and finds the tries whose gate is waiting now."""

    def add_decisions(self, entries: Iterable[DecisionEntry]) -> None:
        """Store gate decisions in one transaction; an entry already stored (same key, time and status) is skipped.

        >>> from carbon_sensors.ledger import Ledger
        >>> from datetime import datetime, timezone
        >>> ledger = Ledger("sqlite://")
        >>> key = RunKey("airflow", "nightly", "enrich", "scheduled__2026-06-15")
        >>> ledger.add_decisions([DecisionEntry(key, datetime(2026, 6, 15, tzinfo=timezone.utc), "wait")] * 2)
        >>> len(ledger.decisions(key))
        1
        """
        sqlite = self.dialect == "sqlite"
        specs: dict[int, str | None] = {}
        entries = list(entries)  # the specs memo is keyed by id(): the entries must live until the rows are built
        rows = [_decision_params(entry, sqlite, specs) for entry in entries]
        if not rows:
            return
        with self._transaction(write=True) as conn:
            mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            sql = (f"INSERT INTO {DECISIONS_TABLE} ({', '.join(_DECISION_COLUMNS)}) "
                   f"VALUES ({', '.join([mark] * len(_DECISION_COLUMNS))}) "
                   f"ON CONFLICT ({', '.join([*_KEY_FIELDS, 'decided_at', 'status'])}) DO NOTHING")
            for start in range(0, len(rows), _PAGE):
                conn.exec_driver_sql(sql, rows[start:start + _PAGE])

    def decisions(self, key: RunKey | None = None, *, dag_id: str | None = None, task_id: str | None = None,
                  run_id: str | None = None, map_index: int | None = None, try_number: int | None = None,
                  status: str | Sequence[str] | None = None, since: datetime | None = None,
                  limit: int | None = None) -> list[DecisionEntry]:
        """The decision trail, oldest first: of one try (``key``), or filtered by DAG, task, run, map index, try.

        ``since`` keeps decisions made at or after it; ``limit`` keeps the newest ``limit``.

        >>> from carbon_sensors.ledger import Ledger
        >>> Ledger("sqlite://").decisions(dag_id="nightly", run_id="scheduled__2026-06-15")
        []
        """
        query = sa.select(DECISIONS)
        if key is not None:
            query = query.where(*(DECISIONS.c[name] == getattr(key, name) for name in _KEY_FIELDS))
        for name, value in (("dag_id", dag_id), ("task_id", task_id), ("run_id", run_id), ("map_index", map_index),
                            ("try_number", try_number)):
            if value is not None:
                query = query.where(DECISIONS.c[name] == value)
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            unknown = [s for s in statuses if s not in DECISION_STATUSES]
            if unknown:
                raise ConfigurationError(f"unknown decision status {unknown[0]!r}; use one of {', '.join(DECISION_STATUSES)}")
            query = query.where(DECISIONS.c.status.in_(statuses))
        if since is not None:
            query = query.where(DECISIONS.c.decided_at >= as_utc(since, "since"))
        newest_first = query.order_by(DECISIONS.c.decided_at.desc(), DECISIONS.c.id.desc())
        if limit is not None:
            newest_first = newest_first.limit(max(0, int(limit)))
        with self._transaction(write=False) as conn:
            rows = conn.execute(newest_first).mappings().all()
        return [_decision_from_row(row) for row in reversed(rows)]

    def waiting(self, now: datetime, *, grace: timedelta | float = timedelta(hours=1)) -> list[DecisionEntry]:
        """Tries whose gate is waiting: their latest decision is ``wait``, and no run record has their key yet.

        A gate never waits past its latest start, so a ``wait`` whose latest start is more than
        ``grace`` before ``now`` is stale (its task was cleared, marked or killed while deferred)
        and left out. Sorted by planned start.

        >>> from carbon_sensors.ledger import Ledger
        >>> from datetime import datetime, timezone
        >>> Ledger("sqlite://").waiting(datetime(2026, 6, 15, tzinfo=timezone.utc))
        []
        """
        cutoff = as_utc(now, "now") - timedelta(seconds=seconds(grace, "grace"))
        key_columns = [DECISIONS.c[name] for name in _KEY_FIELDS]
        candidates = (
            sa.select(*key_columns).distinct()
            .where(DECISIONS.c.status == "wait", DECISIONS.c.latest_start >= cutoff)
        )
        rank = sa.func.row_number().over(
            partition_by=key_columns, order_by=(DECISIONS.c.decided_at.desc(), DECISIONS.c.id.desc())
        ).label("rank")
        ranked = sa.select(DECISIONS, rank).where(sa.tuple_(*key_columns).in_(candidates)).subquery()
        has_record = sa.exists().where(*(RUNS.c[name] == ranked.c[name] for name in _KEY_FIELDS))
        query = (
            sa.select(ranked)
            .where(ranked.c.rank == 1, ranked.c.status == "wait", ranked.c.latest_start >= cutoff, ~has_record)
            .order_by(ranked.c.planned_start, ranked.c.dag_id, ranked.c.task_id, ranked.c.id)
        )
        with self._transaction(write=False) as conn:
            rows = conn.execute(query).mappings().all()
        return [_decision_from_row(row) for row in rows]
