"""The run ledger: one row per task try in SQL (an SQLite file by default, PostgreSQL in production).

>>> from datetime import datetime, timezone
>>> from carbon_sensors.records import RunKey, RunRecord
>>> ledger = Ledger("sqlite://")                       # in memory; a file: "sqlite:////var/lib/ledger.db"
>>> key = RunKey("airflow", "nightly", "enrich", "scheduled__2026-06-15", 1)
>>> t0 = datetime(2026, 6, 15, 2, tzinfo=timezone.utc)
>>> ledger.start(RunRecord(key=key, started_at=t0))
>>> ledger.finish(RunRecord(key=key, status="success", started_at=t0, ended_at=t0.replace(hour=3), energy_kwh=1.5))
>>> ledger.get(key).status, ledger.durations("airflow", "nightly", "enrich")
('success', [datetime.timedelta(seconds=3600)])

Writes are idempotent: a key (orchestrator, DAG, task, run, try, map index) is one row however often
it is written, and a started record never replaces a finished one. The package creates and migrates
its own tables (``carbon_sensors_schema`` holds the version, ``carbon_sensors_runs`` the records,
``carbon_sensors_decisions`` each gate decision: :meth:`Ledger.add_decisions`, :meth:`Ledger.decisions`,
:meth:`Ledger.waiting`); several processes may open a fresh database at once. When the database cannot be reached, callers
keep records in the local spool (:meth:`Ledger.spool`); :meth:`Ledger.flush_spool` lands them later.

Settings (environment):

- ``CARBON_SENSORS_LEDGER_URL``: the database, e.g. ``postgresql+psycopg://user:pw@db/carbon``.
  Default: ``$AIRFLOW_HOME/carbon_sensors_ledger.db`` where Airflow runs, else
  ``~/.local/share/carbon-sensors/carbon_sensors_ledger.db``.
- ``CARBON_SENSORS_SPOOL_DIR``: the spool. Default: ``carbon_sensors_spool/`` next to the default SQLite file.

This module needs SQLAlchemy (``pip install 'carbon-sensors[ledger]'``; PostgreSQL also needs
``psycopg``: ``carbon-sensors[postgres]``). ``import carbon_sensors`` never imports it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from carbon_sensors.clock import Clock, default_clock
from carbon_sensors.errors import ConfigurationError, LedgerError, LedgerSchemaError
from carbon_sensors.records import RECORD_FIELDS, RECORD_STATUSES, ComponentEnergy, RunKey, RunRecord, TokenUsage
from carbon_sensors.timeutil import as_utc, seconds

try:
    import sqlalchemy as sa
    from sqlalchemy import event
    from sqlalchemy.engine import Connection, Engine
except ImportError:  # pragma: no cover - depends on the installation
    raise ConfigurationError(
        "the run ledger needs SQLAlchemy: pip install 'carbon-sensors[ledger]' (or '[postgres]' for PostgreSQL)"
    ) from None

__all__ = [
    "DECISION_STATUSES",
    "LEDGER_URL_ENV",
    "SCHEMA_VERSION",
    "SPOOL_DIR_ENV",
    "DecisionEntry",
    "Ledger",
    "default_ledger_url",
    "default_spool_dir",
    "mask_url",
    "record_from_json",
    "record_to_json",
]

log = logging.getLogger(__name__)

LEDGER_URL_ENV = "CARBON_SENSORS_LEDGER_URL"
SPOOL_DIR_ENV = "CARBON_SENSORS_SPOOL_DIR"
_DEFAULT_FILE = "carbon_sensors_ledger.db"
_DEFAULT_SPOOL = "carbon_sensors_spool"

SCHEMA_TABLE = "carbon_sensors_schema"
RUNS_TABLE = "carbon_sensors_runs"
DECISIONS_TABLE = "carbon_sensors_decisions"
#: The schema version this package writes; see ``_MIGRATIONS``.
SCHEMA_VERSION = 3
#: ``pg_advisory_xact_lock`` key serialising migrations: the first 8 bytes of sha256(b"carbon_sensors_schema"), signed.
_PG_LOCK_KEY = 0x27B0_8EA3_A4D7_C502
#: How long an SQLite writer waits for another process's write lock.
_SQLITE_BUSY_TIMEOUT_S = 60.0
#: PostgreSQL connect timeout unless the URL sets one.
_PG_CONNECT_TIMEOUT_S = 10
#: A claimed spool file untouched for this long belongs to a flusher that died; another flush takes it over.
_STALE_CLAIM_S = 600.0
_PAGE = 500

_KEY_FIELDS = ("orchestrator", "dag_id", "task_id", "run_id", "try_number", "map_index")
_JSON_FIELDS = ("components", "tokens", "changes", "notes", "source_spec")
_DATETIME_FIELDS = (
    "submitted_at", "planned_start", "latest_start", "deadline", "started_at", "ended_at", "heartbeat_at",
    "repriced_at",
)
_FINISHED = tuple(s for s in RECORD_STATUSES if s != "started")
_OPERATIONS = ("start", "finish")
_NO_LOCK = nullcontext()


# -- settings ----------------------------------------------------------------------------------------


def _data_dir() -> Path:
    airflow_home = os.environ.get("AIRFLOW_HOME")
    if airflow_home:
        return Path(airflow_home).expanduser()
    return Path.home() / ".local" / "share" / "carbon-sensors"


def default_ledger_url() -> str:
    """``$CARBON_SENSORS_LEDGER_URL``, else an SQLite file under ``$AIRFLOW_HOME`` or ``~/.local/share/carbon-sensors``."""
    url = os.environ.get(LEDGER_URL_ENV, "").strip()
    if url:
        return url
    return f"sqlite:///{(_data_dir() / _DEFAULT_FILE).absolute()}"


def default_spool_dir() -> Path:
    """``$CARBON_SENSORS_SPOOL_DIR``, else ``carbon_sensors_spool/`` next to the default SQLite file."""
    path = os.environ.get(SPOOL_DIR_ENV, "").strip()
    return Path(path).expanduser() if path else _data_dir() / _DEFAULT_SPOOL


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages and logs."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unreadable ledger URL>"


# -- the tables --------------------------------------------------------------------------------------


class _UTCDateTime(sa.types.TypeDecorator):
    """Aware UTC datetimes: ``timestamptz`` on PostgreSQL; fixed-width ISO-8601 text on SQLite (sorts by time)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(32))
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = as_utc(value)
        return value.isoformat(timespec="microseconds") if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:  # written by hand without an offset: the ledger's times are UTC
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _record_columns() -> list[sa.Column]:
    """The v1 columns: the key, every RunRecord field, and bookkeeping."""
    text, flag, number, moment = sa.Text, sa.Boolean, sa.Double, _UTCDateTime
    return [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("orchestrator", sa.String(32), nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("task_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("try_number", sa.Integer, nullable=False),
        sa.Column("map_index", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("team", text), sa.Column("project", text), sa.Column("cost_centre", text),
        *(sa.Column(name, moment()) for name in _DATETIME_FIELDS if name != "repriced_at"),
        sa.Column("zone", sa.String(64)),
        sa.Column("forced", flag, nullable=False, default=False),
        sa.Column("forced_reason", text), sa.Column("fallback", text), sa.Column("decision_reason", text),
        sa.Column("error", text),
        sa.Column("energy_kwh", number), sa.Column("energy_measured", flag),
        sa.Column("components", text, nullable=False), sa.Column("tokens", text, nullable=False),
        sa.Column("carbon_signal", sa.String(16)), sa.Column("carbon_source", text),
        sa.Column("source_spec", text), sa.Column("carbon_basis", sa.String(16)),
        sa.Column("intensity_g_per_kwh", number), sa.Column("counterfactual_intensity_g_per_kwh", number),
        sa.Column("carbon_g", number), sa.Column("counterfactual_carbon_g", number),
        sa.Column("saved_carbon_g", number),
        sa.Column("cost_energy_usd", number), sa.Column("cost_tokens_usd", number),
        sa.Column("cost_gpu_usd", number), sa.Column("cost_usd", number),
        sa.Column("repriced_at", moment()),
        sa.Column("changes", text, nullable=False), sa.Column("notes", text, nullable=False),
        sa.Column("updated_at", moment(), nullable=False),
    ]


#: v2: denormalised figures for reports, so SQL can sum and filter them without reading JSON.
_REPORT_COLUMNS: tuple[tuple[str, type[sa.types.TypeEngine]], ...] = (
    ("prompt_tokens", sa.BigInteger), ("completion_tokens", sa.BigInteger), ("total_tokens", sa.BigInteger),
    ("duration_s", sa.Double), ("delay_s", sa.Double),
)
_REPORT_INDEXES = ("ix_carbon_sensors_runs_dag_task", "ix_carbon_sensors_runs_status")


def _runs_table(metadata: sa.MetaData, version: int) -> sa.Table:
    """``carbon_sensors_runs`` as schema ``version`` has it."""
    columns = _record_columns()
    extras: list[Any] = [
        sa.UniqueConstraint(*_KEY_FIELDS, name="uq_carbon_sensors_runs_key"),
        sa.Index("ix_carbon_sensors_runs_started_at", "started_at"),
    ]
    if version >= 2:
        columns += [sa.Column(name, kind()) for name, kind in _REPORT_COLUMNS]
        extras += [
            sa.Index(_REPORT_INDEXES[0], "dag_id", "task_id", "status", "ended_at"),
            sa.Index(_REPORT_INDEXES[1], "status", "started_at"),
        ]
    return sa.Table(RUNS_TABLE, metadata, *columns, *extras)


def _schema_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        SCHEMA_TABLE, metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("migrated_at", _UTCDateTime(), nullable=False),
    )


#: v3: the columns of a decision after the key; see :class:`DecisionEntry`.
_DECISION_DATETIMES = ("decided_at", "planned_start", "latest_start", "deadline", "next_check", "submitted_at")
_DECISION_NUMBERS = ("expected_duration_s", "intensity", "intensity_at_submission", "saving_pct")


def _decisions_table(metadata: sa.MetaData) -> sa.Table:
    """``carbon_sensors_decisions`` (v3): the run key, when and what a gate decided, and the plan behind it."""
    text, moment = sa.Text, _UTCDateTime
    return sa.Table(
        DECISIONS_TABLE, metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("orchestrator", sa.String(32), nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("task_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("try_number", sa.Integer, nullable=False),
        sa.Column("map_index", sa.Integer, nullable=False),
        sa.Column("decided_at", moment(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", text, nullable=False),
        sa.Column("zone", sa.String(64)),
        *(sa.Column(name, moment()) for name in _DECISION_DATETIMES if name != "decided_at"),
        *(sa.Column(name, sa.Double) for name in _DECISION_NUMBERS),
        sa.Column("signal", sa.String(16)), sa.Column("source", text), sa.Column("source_spec", text),
        sa.Column("forced_reason", text), sa.Column("fallback", text), sa.Column("origin", sa.String(16)),
        sa.UniqueConstraint(*_KEY_FIELDS, "decided_at", "status", name="uq_carbon_sensors_decisions_key"),
        sa.Index("ix_carbon_sensors_decisions_status", "status", "latest_start"),
        sa.Index("ix_carbon_sensors_decisions_decided_at", "decided_at"),
    )


_METADATA = sa.MetaData()
RUNS = _runs_table(_METADATA, SCHEMA_VERSION)
SCHEMA = _schema_table(_METADATA)
DECISIONS = _decisions_table(_METADATA)


def _migrate_to_v1(conn: Connection) -> None:
    """v1: the version table and the record table (every RunRecord field, the key's unique constraint)."""
    metadata = sa.MetaData()
    _schema_table(metadata)
    _runs_table(metadata, 1)
    metadata.create_all(conn, checkfirst=True)


def _migrate_to_v2(conn: Connection) -> None:
    """v2: token, duration and delay columns for reports (filled in from the stored records), report indexes."""
    for name, kind in _REPORT_COLUMNS:
        conn.exec_driver_sql(f"ALTER TABLE {RUNS_TABLE} ADD COLUMN {name} {kind().compile(dialect=conn.dialect)}")
    rows = conn.execute(sa.select(RUNS.c.id, RUNS.c.tokens, RUNS.c.submitted_at, RUNS.c.started_at, RUNS.c.ended_at))
    updates = []
    for row in rows:
        record = RunRecord(
            key=RunKey("", "", "", ""), tokens=_tokens(json.loads(row.tokens)),
            submitted_at=row.submitted_at, started_at=row.started_at, ended_at=row.ended_at,
        )
        updates.append({"row_id": row.id, **_report_values(record)})
    if updates:
        conn.execute(
            RUNS.update().where(RUNS.c.id == sa.bindparam("row_id")),
            [{**u} for u in updates],
        )
    for index in RUNS.indexes:
        if index.name in _REPORT_INDEXES:
            index.create(conn)


def _migrate_to_v3(conn: Connection) -> None:
    """v3: the decision trail, one row per gate decision (each re-plan), next to the run records."""
    metadata = sa.MetaData()
    _decisions_table(metadata)
    metadata.create_all(conn, checkfirst=True)


#: ``_MIGRATIONS[n]`` takes the schema from version n to n + 1, inside one transaction.
_MIGRATIONS: tuple[Callable[[Connection], None], ...] = (_migrate_to_v1, _migrate_to_v2, _migrate_to_v3)
assert len(_MIGRATIONS) == SCHEMA_VERSION


# -- records as rows and as JSON -----------------------------------------------------------------------


def _tokens(items: Sequence[Mapping[str, Any]]) -> tuple[TokenUsage, ...]:
    return tuple(TokenUsage(**item) for item in items)


def _components(items: Sequence[Mapping[str, Any]]) -> tuple[ComponentEnergy, ...]:
    return tuple(ComponentEnergy(**item) for item in items)


def _report_values(record: RunRecord) -> dict[str, Any]:
    return {
        "prompt_tokens": record.prompt_tokens, "completion_tokens": record.completion_tokens,
        "total_tokens": record.total_tokens, "duration_s": record.duration_s, "delay_s": record.delay_s,
    }


def _check(record: RunRecord) -> None:
    if not isinstance(record, RunRecord):
        raise ConfigurationError(f"the ledger stores RunRecord objects, got {type(record).__name__}")
    if record.status not in RECORD_STATUSES:
        raise ConfigurationError(f"unknown record status {record.status!r}; use one of {', '.join(RECORD_STATUSES)}")


def _record_dict(record: RunRecord) -> dict[str, Any]:
    """The record's fields as plain values (datetimes kept), with the JSON fields as lists and dicts."""
    _check(record)
    data: dict[str, Any] = {}
    for name in RECORD_FIELDS:
        if name == "key":
            continue
        value = getattr(record, name)
        if name in _DATETIME_FIELDS and value is not None:
            value = as_utc(value, name)
        elif name in ("components", "tokens"):
            value = [item.to_dict() for item in value]
        elif name == "notes":
            value = list(value)
        elif name == "changes":
            value = dict(value)
        data[name] = value
    return data


def _dumps(value: Any, name: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"the record's {name} cannot be stored as JSON ({exc}); keep it to plain values") from exc


def _to_row(record: RunRecord, now: datetime) -> dict[str, Any]:
    row: dict[str, Any] = {name: getattr(record.key, name) for name in _KEY_FIELDS}
    for name, value in _record_dict(record).items():
        row[name] = _dumps(value, name) if name in _JSON_FIELDS and value is not None else value
    row["forced"] = bool(row["forced"])
    row["updated_at"] = now
    row.update(_report_values(record))
    return row


def _from_row(row: Mapping[str, Any]) -> RunRecord:
    values = {name: row[name] for name in RECORD_FIELDS if name != "key"}
    values["components"] = _components(json.loads(row["components"]))
    values["tokens"] = _tokens(json.loads(row["tokens"]))
    values["notes"] = tuple(json.loads(row["notes"]))
    values["changes"] = json.loads(row["changes"])
    values["source_spec"] = None if row["source_spec"] is None else json.loads(row["source_spec"])
    return RunRecord(key=RunKey(*(row[name] for name in _KEY_FIELDS)), **values)


def record_to_json(record: RunRecord) -> dict[str, Any]:
    """The record as a JSON-able dict: datetimes as ISO-8601 UTC strings, the key as a nested dict.

    >>> from datetime import datetime, timezone
    >>> data = record_to_json(RunRecord(RunKey("python", "d", "t", "r"), started_at=datetime(2026, 1, 1, tzinfo=timezone.utc)))
    >>> data["key"]["dag_id"], data["started_at"]
    ('d', '2026-01-01T00:00:00+00:00')
    """
    data = _record_dict(record)
    for name in _DATETIME_FIELDS:
        if data[name] is not None:
            data[name] = data[name].isoformat()
    _dumps(data, "content")
    return {"key": {name: getattr(record.key, name) for name in _KEY_FIELDS}, **data}


def record_from_json(data: Mapping[str, Any] | str) -> RunRecord:
    """The record :func:`record_to_json` made (from the dict or its JSON text); unknown fields are ignored."""
    if isinstance(data, str | bytes):
        data = json.loads(data)
    try:
        values = {name: data[name] for name in RECORD_FIELDS if name != "key" and name in data}
        for name in _DATETIME_FIELDS:
            if values.get(name) is not None:
                values[name] = as_utc(datetime.fromisoformat(values[name]), name)
        values["components"] = _components(values.get("components", ()))
        values["tokens"] = _tokens(values.get("tokens", ()))
        values["notes"] = tuple(values.get("notes", ()))
        values["changes"] = dict(values.get("changes") or {})
        key = RunKey(**{name: data["key"][name] for name in _KEY_FIELDS if name in data["key"]})
        return RunRecord(key=key, **values)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigurationError(f"not a run record in JSON ({exc!r}); it should come from record_to_json()") from exc


# -- the decision trail ------------------------------------------------------------------------------

#: ``wait`` (until a planned start), ``go`` (the forecast says start), ``forced`` (something else does), ``error``.
DECISION_STATUSES: tuple[str, ...] = ("wait", "go", "forced", "error")


@dataclass(frozen=True, slots=True)
class DecisionEntry:
    """One decision a gate made for one task try; a try's decision trail is its entries, oldest first.

    Times are aware UTC. Intensities are window means in gCO2eq/kWh of ``signal``. ``origin`` says
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


# -- the ledger ----------------------------------------------------------------------------------------


class Ledger:
    """Run records in SQL: ``sqlite:///path/ledger.db`` (default) or ``postgresql+psycopg://...``.

    ``url``: the database (default: :func:`default_ledger_url`). ``spool_dir``: where :meth:`spool`
    keeps records while the database is unreachable (default: :func:`default_spool_dir`). ``clock``
    stamps ``updated_at``. Nothing connects until the first read or write, which also creates or
    migrates the tables.

    >>> ledger = Ledger("sqlite://")
    >>> ledger.records()
    []
    """

    def __init__(self, url: str | None = None, *, spool_dir: str | os.PathLike[str] | None = None,
                 clock: Clock | None = None) -> None:
        self.url = url if url is not None else default_ledger_url()
        self._default_file = url is None and not os.environ.get(LEDGER_URL_ENV, "").strip()
        try:
            self._url = sa.engine.make_url(self.url)
        except sa.exc.ArgumentError:
            raise ConfigurationError(
                f"cannot read the ledger URL {self.url!r}; write e.g. sqlite:////var/lib/carbon/ledger.db "
                "or postgresql+psycopg://user:password@host/database"
            ) from None
        self.dialect = self._url.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ConfigurationError(
                f"the ledger supports SQLite and PostgreSQL, not {self.dialect!r} ({mask_url(self.url)}); "
                "use sqlite:///path/ledger.db or postgresql+psycopg://user:password@host/database"
            )
        self.spool_dir = Path(spool_dir).expanduser() if spool_dir is not None else default_spool_dir()
        self._clock = clock
        self._engine: Engine | None = None
        self._pid: int | None = None
        self._ready = False
        self._lock = threading.RLock()  # engine creation and migration; every transaction for in-memory SQLite
        database = self._url.database or ""
        self._in_memory = self.dialect == "sqlite" and (
            database in ("", ":memory:") or database.startswith("file::memory:") or "mode=memory" in database
        )

    def __repr__(self) -> str:
        return f"Ledger({mask_url(self.url)!r})"

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connections (the ledger reconnects if used again)."""
        if self._engine is not None:
            self._engine.dispose()
        self._engine, self._ready = None, False

    # -- connections ------------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, created on first use (and again in a forked child process)."""
        with self._lock:
            if self._engine is not None and self._pid != os.getpid():
                self._engine.dispose(close=False)  # the parent's connections belong to the parent
                self._engine, self._ready = None, False
            if self._engine is None:
                self._engine = self._create_engine()
                self._pid = os.getpid()
            return self._engine

    def _create_engine(self) -> Engine:
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            database = self._url.database or ""
            connect_args: dict[str, Any] = {"timeout": _SQLITE_BUSY_TIMEOUT_S}
            if self._in_memory:  # one shared connection, or every thread would see its own empty database
                connect_args["check_same_thread"] = False
                kwargs["poolclass"] = sa.pool.StaticPool
            elif self._default_file:
                try:
                    Path(database).parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise LedgerError(f"cannot create the ledger's directory for {database} ({exc}); set "
                                      f"{LEDGER_URL_ENV} to a writable place") from exc
            kwargs["connect_args"] = connect_args
        else:
            kwargs["pool_pre_ping"] = True
            if "connect_timeout" not in self._url.query:
                kwargs["connect_args"] = {"connect_timeout": _PG_CONNECT_TIMEOUT_S}
        try:
            engine = sa.create_engine(self._url, **kwargs)
        except (ImportError, sa.exc.NoSuchModuleError) as exc:
            extra = "postgres" if self.dialect == "postgresql" else "ledger"
            raise ConfigurationError(
                f"the ledger at {mask_url(self.url)} needs a database driver that is not installed ({exc}); "
                f"pip install 'carbon-sensors[{extra}]'"
            ) from None
        if self.dialect == "sqlite":
            _sqlite_events(engine, wal=not self._in_memory)
        return engine

    @contextmanager
    def _transaction(self, *, write: bool, migrate: bool = True) -> Iterator[Connection]:
        """One transaction; on SQLite a writing one takes the write lock at BEGIN (no upgrade deadlocks)."""
        if migrate and not self._ready:
            self.migrate()
        try:
            with self._lock if self._in_memory else _NO_LOCK, self.engine.connect() as conn:
                if write:
                    conn = conn.execution_options(carbon_sensors_write=True)
                with conn.begin():
                    yield conn
        except sa.exc.DBAPIError as exc:
            raise self._error(exc) from exc
        except sa.exc.TimeoutError as exc:
            raise LedgerError(f"no free connection to the ledger at {mask_url(self.url)} ({exc}); this process holds "
                              "too many at once: use fewer threads per process") from exc

    def _error(self, exc: sa.exc.DBAPIError) -> LedgerError:
        reason = (str(exc.orig) if exc.orig is not None else str(exc)).strip().splitlines()
        reason_text = reason[0] if reason else type(exc).__name__
        if self._url.password:
            reason_text = reason_text.replace(str(self._url.password), "***")
        where = mask_url(self.url)
        if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
            if self.dialect == "sqlite":
                advice = "check that the file's directory exists and is writable, and that no process holds a long lock"
            else:
                advice = ("check that the server is running and reachable from here, and the URL and credentials "
                          f"(--ledger or {LEDGER_URL_ENV})")
            return LedgerError(f"cannot reach the ledger at {where}: {reason_text}; {advice}. Records that cannot be "
                               f"written wait in the spool ({self.spool_dir}) for `carbon-sensors reconcile`")
        return LedgerError(f"cannot write to the ledger at {where}: {reason_text}; check that the database user may "
                           "write the carbon_sensors_* tables, then run `carbon-sensors reconcile`")

    # -- the schema -------------------------------------------------------------------------------

    def schema_version(self) -> int:
        """The schema version of the database (0 when the tables do not exist yet); does not migrate."""
        with self._transaction(write=False, migrate=False) as conn:
            return self._version(conn)

    @staticmethod
    def _version(conn: Connection) -> int:
        if not sa.inspect(conn).has_table(SCHEMA_TABLE):
            return 0
        version = conn.execute(sa.select(sa.func.max(SCHEMA.c.version))).scalar()
        return int(version or 0)

    def migrate(self) -> int:
        """Create or upgrade the tables to this package's schema; return the version found before.

        Runs on first use. Safe when many processes open a fresh database at once: PostgreSQL
        serialises them with a transaction-level advisory lock, SQLite with its write lock.
        Raises :class:`LedgerSchemaError` when the database is newer than this package.
        """
        with self._lock:
            return self._migrate()

    def _migrate(self) -> int:
        with self._transaction(write=False, migrate=False) as conn:
            found = self._version(conn)
        if found < SCHEMA_VERSION:
            with self._transaction(write=True, migrate=False) as conn:
                if self.dialect == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
                found = self._version(conn)  # again, under the lock: another process may have migrated
                for step in range(found, SCHEMA_VERSION):
                    _MIGRATIONS[step](conn)
                if found < SCHEMA_VERSION:
                    values = {"version": SCHEMA_VERSION, "migrated_at": self._now()}
                    if conn.execute(SCHEMA.update().where(SCHEMA.c.id == 1).values(values)).rowcount == 0:
                        conn.execute(SCHEMA.insert().values(id=1, **values))
                    log.info("carbon-sensors ledger at %s migrated from schema v%d to v%d",
                             mask_url(self.url), found, SCHEMA_VERSION)
        if found > SCHEMA_VERSION:
            raise LedgerSchemaError(
                f"the ledger at {mask_url(self.url)} has schema v{found}, this carbon-sensors understands up to "
                f"v{SCHEMA_VERSION}: upgrade carbon-sensors (pip install -U carbon-sensors) on this machine"
            )
        self._ready = True
        return found

    # -- writing ----------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return as_utc((self._clock or default_clock()).now())

    def _insert(self):
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(RUNS)

    def _upsert(self, conn: Connection, record: RunRecord, *, only_over_started: bool) -> None:
        row = _to_row(record, self._now())
        conn.execute(self._upsert_statement(only_over_started, tuple(row)), row)

    def _upsert_statement(self, only_over_started: bool, columns: tuple[str, ...]) -> Any:
        # Built once per column set: building the ~50-column ON CONFLICT clause was a quarter of a write's CPU.
        cache = self.__dict__.setdefault("_upserts", {})
        key = (only_over_started, columns)
        if key not in cache:
            stmt = self._insert()
            update = {name: stmt.excluded[name] for name in columns if name not in _KEY_FIELDS}
            cache[key] = stmt.on_conflict_do_update(
                index_elements=list(_KEY_FIELDS), set_=update,
                where=(RUNS.c.status == "started") if only_over_started else None,
            )
        return cache[key]

    def start(self, record: RunRecord) -> None:
        """Store a started record; a try already stored is updated in place, unless it has finished.

        A resumed or re-executed try never makes a second row, and never turns a finished record
        back into a started one.

        >>> from carbon_sensors.records import RunKey, RunRecord
        >>> ledger = Ledger("sqlite://")
        >>> ledger.start(RunRecord(RunKey("python", "nightly", "enrich", "2026-06-15")))
        """
        _check(record)
        if record.status != "started":
            raise ConfigurationError(f"start() stores started records, this one is {record.status!r}; call finish()")
        with self._transaction(write=True) as conn:
            self._upsert(conn, record, only_over_started=True)

    def finish(self, record: RunRecord) -> None:
        """Store a completed record (``success``, ``failed`` or ``abandoned``), whether or not start() landed.

        >>> from carbon_sensors.records import RunKey, RunRecord
        >>> ledger = Ledger("sqlite://")
        >>> ledger.finish(RunRecord(RunKey("python", "nightly", "enrich", "2026-06-15"), status="success"))
        """
        _check(record)
        if record.status == "started":
            raise ConfigurationError("finish() stores completed records, this one is still 'started'; call start()")
        with self._transaction(write=True) as conn:
            self._upsert(conn, record, only_over_started=False)

    def heartbeat(self, key: RunKey, at: datetime) -> bool:
        """Note that a started try was alive at ``at``; False when no started record has that key.

        >>> from datetime import datetime, timezone
        >>> Ledger("sqlite://").heartbeat(RunKey("python", "d", "t", "r"), datetime.now(timezone.utc))
        False
        """
        at = as_utc(at, "at")
        with self._transaction(write=True) as conn:
            result = conn.execute(
                RUNS.update().where(_key_clause(key), RUNS.c.status == "started")
                .values(heartbeat_at=at, updated_at=self._now())
            )
            return result.rowcount > 0

    # -- reading ----------------------------------------------------------------------------------

    def get(self, key: RunKey) -> RunRecord | None:
        """The record of one try, or None.

        >>> Ledger("sqlite://").get(RunKey("python", "d", "t", "r")) is None
        True
        """
        with self._transaction(write=False) as conn:
            row = conn.execute(sa.select(RUNS).where(_key_clause(key))).mappings().first()
        return None if row is None else _from_row(row)

    def records(self, since: datetime | None = None, until: datetime | None = None,
                status: str | Sequence[str] | None = None, dag_id: str | None = None,
                task_id: str | None = None) -> list[RunRecord]:
        """Records that started in ``[since, until)``, oldest first; optionally of some statuses, a DAG, a task.

        >>> from datetime import datetime, timezone
        >>> Ledger("sqlite://").records(since=datetime(2026, 1, 1, tzinfo=timezone.utc), status="success")
        []
        """
        query = sa.select(RUNS)
        if since is not None:
            query = query.where(RUNS.c.started_at >= as_utc(since, "since"))
        if until is not None:
            query = query.where(RUNS.c.started_at < as_utc(until, "until"))
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            unknown = [s for s in statuses if s not in RECORD_STATUSES]
            if unknown:
                raise ConfigurationError(f"unknown status {unknown[0]!r}; use one of {', '.join(RECORD_STATUSES)}")
            query = query.where(RUNS.c.status.in_(statuses))
        if dag_id is not None:
            query = query.where(RUNS.c.dag_id == dag_id)
        if task_id is not None:
            query = query.where(RUNS.c.task_id == task_id)
        with self._transaction(write=False) as conn:
            rows = conn.execute(query.order_by(RUNS.c.started_at, RUNS.c.id)).mappings().all()
        return [_from_row(row) for row in rows]

    def durations(self, orchestrator: str, dag_id: str, task_id: str, limit: int = 20) -> list[timedelta]:
        """How long the last ``limit`` successful tries of a task took, newest first.

        >>> Ledger("sqlite://").durations("airflow", "nightly", "enrich")
        []
        """
        query = (
            sa.select(RUNS.c.duration_s)
            .where(RUNS.c.orchestrator == orchestrator, RUNS.c.dag_id == dag_id, RUNS.c.task_id == task_id,
                   RUNS.c.status == "success", RUNS.c.duration_s.is_not(None))
            .order_by(RUNS.c.ended_at.desc(), RUNS.c.id.desc())
            .limit(max(0, int(limit)))
        )
        with self._transaction(write=False) as conn:
            return [timedelta(seconds=s) for s in conn.execute(query).scalars()]

    # -- the decision trail -----------------------------------------------------------------------

    def add_decisions(self, entries: Iterable[DecisionEntry]) -> None:
        """Store gate decisions in one transaction; an entry already stored (same key, time and status) is skipped.

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

    # -- reconciling ------------------------------------------------------------------------------

    def abandon_stale(self, stale_after: timedelta | float, now: datetime) -> list[RunKey]:
        """Close started tries silent for longer than ``stale_after`` as ``abandoned``; return their keys.

        A try is silent since its last heartbeat (its start when it never beat). Its ``ended_at``
        becomes that last sign of life, and a note says why it was closed.

        >>> from datetime import datetime, timedelta, timezone
        >>> Ledger("sqlite://").abandon_stale(timedelta(minutes=15), datetime.now(timezone.utc))
        []
        """
        now = as_utc(now, "now")
        stale_after = timedelta(seconds=seconds(stale_after, "stale_after"))
        cutoff = now - stale_after
        last_seen = sa.func.coalesce(RUNS.c.heartbeat_at, RUNS.c.started_at, RUNS.c.updated_at)
        stale = sa.and_(RUNS.c.status == "started", last_seen < cutoff)
        abandoned: list[RunKey] = []
        with self._transaction(write=True) as conn:
            rows = conn.execute(sa.select(RUNS).where(stale).order_by(RUNS.c.id)).mappings().all()
            for row in rows:
                record = _from_row(row)
                last = record.heartbeat_at or record.started_at
                seen = "no heartbeat since " + (last.isoformat() if last else "its row was written")
                note = (f"abandoned at {now.isoformat()}: {seen}, more than {stale_after} before; "
                        "the worker probably died")
                record = replace(record, status="abandoned", ended_at=last, notes=(*record.notes, note))
                # the same condition again: a heartbeat or finish that landed meanwhile wins
                result = conn.execute(RUNS.update().where(RUNS.c.id == row["id"], stale).values(_to_row(record, self._now())))
                if result.rowcount:
                    abandoned.append(record.key)
        return abandoned

    def reprice(self, update: Callable[[RunRecord], RunRecord | None], since: datetime | None = None) -> int:
        """Offer each finished, forecast-priced record to ``update``; store what it returns; return how many.

        ``update`` returns the re-priced record (with ``changes`` and ``repriced_at`` set) or None to
        leave it. Records started before ``since`` are skipped. Each stored record is committed at once,
        unless the record changed in the ledger while ``update`` ran (that newer write wins).

        >>> Ledger("sqlite://").reprice(lambda record: None)
        0
        """
        query = sa.select(RUNS).where(RUNS.c.status.in_(_FINISHED), RUNS.c.carbon_basis == "forecast")
        if since is not None:
            query = query.where(RUNS.c.started_at >= as_utc(since, "since"))
        count, last_id = 0, 0
        while True:
            with self._transaction(write=False) as conn:
                rows = conn.execute(query.where(RUNS.c.id > last_id).order_by(RUNS.c.id).limit(_PAGE)).mappings().all()
            if not rows:
                return count
            last_id = rows[-1]["id"]
            for row in rows:
                record = _from_row(row)
                new = update(record)
                if new is None or new == record:
                    continue
                _check(new)
                if new.key != record.key:
                    raise ConfigurationError(f"reprice's update changed the record's key ({record.key} -> {new.key}); "
                                             "return a record with the same key")
                unchanged = sa.and_(RUNS.c.id == row["id"], RUNS.c.updated_at == row["updated_at"])
                with self._transaction(write=True) as conn:  # a write that landed meanwhile wins; next reconcile retries
                    count += conn.execute(RUNS.update().where(unchanged).values(_to_row(new, self._now()))).rowcount

    # -- the spool --------------------------------------------------------------------------------

    def spool(self, record: RunRecord, operation: str | None = None) -> Path:
        """Keep a record in the local spool, as one JSON line in a file of its own; return the file.

        ``operation`` (``start`` or ``finish``; default: by the record's status) says how
        :meth:`flush_spool` will store it. Used when the database cannot be reached.
        """
        operation = operation or ("start" if record.status == "started" else "finish")
        if operation not in _OPERATIONS:
            raise ConfigurationError(f"unknown spool operation {operation!r}; use 'start' or 'finish'")
        if (operation == "start") != (record.status == "started"):
            raise ConfigurationError(f"cannot spool a {record.status!r} record for {operation}(): start() takes started "
                                     "records and finish() completed ones")
        line = json.dumps({"operation": operation, "spooled_at": self._now().isoformat(),
                           "record": record_to_json(record)}, separators=(",", ":"))
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl"
        try:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.spool_dir / f".{name}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            path = self.spool_dir / name
            os.replace(tmp, path)  # readers never see half a record
        except OSError as exc:
            raise LedgerError(f"cannot write the spool at {self.spool_dir} ({exc}); set {SPOOL_DIR_ENV} "
                              "to a writable directory") from exc
        return path

    def spooled(self) -> list[Path]:
        """The spool's files waiting to be flushed, oldest first."""
        if not self.spool_dir.is_dir():
            return []
        return sorted(self.spool_dir.glob("*.jsonl"))

    def flush_spool(self) -> int:
        """Store the spooled records (start or finish, as spooled) and delete the ones that landed; return how many.

        Each file is claimed by renaming it first, so two processes flushing at once never store
        a record twice. A file that holds no valid record, or one the database refuses, is renamed
        ``*.bad`` and left for a person.
        Raises :class:`LedgerError` when the database is still unreachable (the files stay).
        """
        if not self.spool_dir.is_dir():
            return 0
        token = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        now = time.time()
        candidates = self.spooled() + [
            p for p in sorted(self.spool_dir.glob("*.jsonl.claimed-*")) if _older_than(p, now - _STALE_CLAIM_S)
        ]
        claimed: list[tuple[Path, Path]] = []
        for path in candidates:
            original = self.spool_dir / (path.name.split(".claimed-")[0])
            target = self.spool_dir / f"{original.name}.claimed-{token}"
            try:
                os.rename(path, target)
                os.utime(target)
            except FileNotFoundError:
                continue  # another process claimed it first
            claimed.append((original, target))
        claimed.sort()
        landed = 0
        for i, (original, target) in enumerate(claimed):
            try:
                entries = _read_spool_file(target)
                for operation, record in entries:
                    if operation == "start":
                        self.start(record)
                    else:
                        self.finish(record)
            except LedgerError as exc:
                if not isinstance(exc.__cause__, sa.exc.DataError | sa.exc.IntegrityError):
                    for back, claim in claimed[i:]:  # unreachable: unclaim the rest, the next flush tries again
                        os.replace(claim, back)
                    raise
                problem: Exception = exc  # the database refuses this record (e.g. a value too long): set it aside
            except (OSError, ValueError) as exc:  # ConfigurationError is a ValueError
                problem = exc
            else:
                target.unlink()
                landed += len(entries)
                continue
            log.warning("carbon-sensors: spool file %s cannot be stored (%s); kept as %s.bad", original, problem,
                        original.name)
            os.replace(target, original.with_name(original.name + ".bad"))
        return landed


def _key_clause(key: RunKey):
    return sa.and_(*(RUNS.c[name] == getattr(key, name) for name in _KEY_FIELDS))


def _older_than(path: Path, moment: float) -> bool:
    try:
        return path.stat().st_mtime < moment
    except FileNotFoundError:
        return False


def _read_spool_file(path: Path) -> list[tuple[str, RunRecord]]:
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            operation, record = data["operation"], record_from_json(data["record"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a spooled record ({exc!r})") from exc
        if operation not in _OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}")
        entries.append((operation, record))
    return entries


def _set_wal(cursor: Any) -> None:
    """Switch the file to WAL once. Switching needs an exclusive lock that SQLite does not wait for, so
    several workers opening a fresh ledger at once retry, within the busy timeout, instead of failing."""
    import random
    import sqlite3
    import time

    give_up = time.monotonic() + _SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > give_up:
                raise
            time.sleep(random.uniform(0.02, 0.1))


def _sqlite_events(engine: Engine, *, wal: bool) -> None:
    """WAL (readers never block the writer), a busy timeout, and BEGIN IMMEDIATE for writing transactions."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's BEGIN below, not the driver's implicit one
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(_SQLITE_BUSY_TIMEOUT_S * 1000)}")
            if wal:
                _set_wal(cursor)
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("carbon_sensors_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
