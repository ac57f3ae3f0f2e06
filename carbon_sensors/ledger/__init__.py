"""The run ledger: one row per task try in SQL (an SQLite file by default, PostgreSQL in production).
Core: the adapters, the CLI and the UI import it; it never imports Airflow or Prefect.

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

from carbon_sensors.errors import ConfigurationError

try:
    import sqlalchemy  # noqa: F401
except ImportError:  # pragma: no cover - depends on the installation
    raise ConfigurationError(
        "the run ledger needs SQLAlchemy: pip install 'carbon-sensors[ledger]' (or '[postgres]' for PostgreSQL)"
    ) from None

# The rooms: schema (tables, migrations), rows (the record codec), store (URL, engine, transactions),
# writer (upserts, reconciling, spool), queries (records for reports and the UI), trail (decisions).
from carbon_sensors.ledger.queries import Queries
from carbon_sensors.ledger.rows import _to_row, record_from_json, record_to_json
from carbon_sensors.ledger.schema import (
    _MIGRATIONS,
    DECISIONS,
    DECISIONS_TABLE,
    RUNS,
    RUNS_TABLE,
    SCHEMA,
    SCHEMA_VERSION,
    _runs_table,
)
from carbon_sensors.ledger.store import LEDGER_URL_ENV, SPOOL_DIR_ENV, default_ledger_url, default_spool_dir, mask_url
from carbon_sensors.ledger.trail import DECISION_STATUSES, DecisionEntry, Trail
from carbon_sensors.ledger.writer import Writer

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
# Kept importable from here for tests that build older schemas by hand.
_INTERNALS = (DECISIONS, DECISIONS_TABLE, RUNS, RUNS_TABLE, SCHEMA, _MIGRATIONS, _runs_table, _to_row)


class Ledger(Writer, Queries, Trail):
    """Run records in SQL: ``sqlite:///path/ledger.db`` (default) or ``postgresql+psycopg://...``.

    ``url``: the database (default: :func:`default_ledger_url`). ``spool_dir``: where :meth:`spool`
    keeps records while the database is unreachable (default: :func:`default_spool_dir`). ``clock``
    stamps ``updated_at``. Nothing connects until the first read or write, which also creates or
    migrates the tables.

    >>> ledger = Ledger("sqlite://")
    >>> ledger.records()
    []
    """
