"""The ledger's tables and their migrations: what schema version N looks like, and how to get from N to N + 1."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carbon_sensors.ledger.rows import _DATETIME_FIELDS, _KEY_FIELDS, _report_values, _tokens
from carbon_sensors.records import RunKey, RunRecord
from carbon_sensors.timeutil import as_utc

__all__ = ["DECISIONS", "RUNS", "SCHEMA", "SCHEMA_VERSION"]

SCHEMA_TABLE = "carbon_sensors_schema"
RUNS_TABLE = "carbon_sensors_runs"
DECISIONS_TABLE = "carbon_sensors_decisions"
#: The schema version this package writes; see ``_MIGRATIONS``.
SCHEMA_VERSION = 4


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

#: v4: the market energy price next to carbon, on runs and on decisions (figures per MWh in ``price_currency``).
_RUN_PRICE_COLUMNS: tuple[tuple[str, type[sa.types.TypeEngine]], ...] = (
    ("price_currency", sa.Text), ("price_source", sa.Text),
    *((name, sa.Double) for name in (
        "expected_price_per_mwh", "price_per_mwh", "counterfactual_price_per_mwh", "expected_energy_cost",
        "energy_cost", "counterfactual_energy_cost", "saved_energy_cost",
    )),
)
_DECISION_PRICE_COLUMNS: tuple[tuple[str, type[sa.types.TypeEngine]], ...] = (
    ("price", sa.Double), ("price_at_submission", sa.Double), ("cost_change_pct", sa.Double),
    ("price_currency", sa.Text),
)


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
    if version >= 4:
        columns += [sa.Column(name, kind()) for name, kind in _RUN_PRICE_COLUMNS]
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
_DECISION_NUMBERS = ("expected_duration_s", "intensity", "intensity_at_submission", "saving_pct", "price",
                     "price_at_submission", "cost_change_pct")


def _decisions_table(metadata: sa.MetaData, version: int = SCHEMA_VERSION) -> sa.Table:
    """``carbon_sensors_decisions`` (v3): the run key, when and what a gate decided, and the plan behind it; v4 adds price."""
    text, moment = sa.Text, _UTCDateTime
    prices = [sa.Column(name, kind()) for name, kind in _DECISION_PRICE_COLUMNS] if version >= 4 else []
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
        *(sa.Column(name, sa.Double) for name in _DECISION_NUMBERS[:4]),
        sa.Column("signal", sa.String(16)), sa.Column("source", text), sa.Column("source_spec", text),
        sa.Column("forced_reason", text), sa.Column("fallback", text), sa.Column("origin", sa.String(16)),
        *prices,
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
    _decisions_table(metadata, 3)
    metadata.create_all(conn, checkfirst=True)


def _migrate_to_v4(conn: Connection) -> None:
    """v4: market price and energy cost columns on runs and decisions (empty for older rows: no price was known)."""
    for table, columns in ((RUNS_TABLE, _RUN_PRICE_COLUMNS), (DECISIONS_TABLE, _DECISION_PRICE_COLUMNS)):
        for name, kind in columns:
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} {kind().compile(dialect=conn.dialect)}")


#: ``_MIGRATIONS[n]`` takes the schema from version n to n + 1, inside one transaction.
_MIGRATIONS: tuple[Callable[[Connection], None], ...] = (_migrate_to_v1, _migrate_to_v2, _migrate_to_v3,
                                                         _migrate_to_v4)
assert len(_MIGRATIONS) == SCHEMA_VERSION


def _key_clause(key: RunKey):
    return sa.and_(*(RUNS.c[name] == getattr(key, name) for name in _KEY_FIELDS))
