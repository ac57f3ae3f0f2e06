"""Where a ledger lives: its URL and defaults, the engine, transactions, database errors in words, and migrating on first use."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from carbon_sensors.clock import Clock, default_clock
from carbon_sensors.errors import ConfigurationError, LedgerError, LedgerSchemaError
from carbon_sensors.ledger.schema import _MIGRATIONS, SCHEMA, SCHEMA_TABLE, SCHEMA_VERSION
from carbon_sensors.renames import env_setting
from carbon_sensors.timeutil import as_utc

__all__ = ["LEDGER_URL_ENV", "SPOOL_DIR_ENV", "Store", "default_ledger_url", "default_spool_dir", "mask_url"]

log = logging.getLogger("carbon_sensors.ledger")

LEDGER_URL_ENV = "CARBON_SENSORS_LEDGER_URL"
SPOOL_DIR_ENV = "CARBON_SENSORS_SPOOL_DIR"
_DEFAULT_FILE = "carbon_sensors_ledger.db"
_DEFAULT_SPOOL = "carbon_sensors_spool"
#: ``pg_advisory_xact_lock`` key serialising migrations: the first 8 bytes of sha256(b"carbon_sensors_schema"), signed.
_PG_LOCK_KEY = 0x27B0_8EA3_A4D7_C502
#: How long an SQLite writer waits for another process's write lock.
_SQLITE_BUSY_TIMEOUT_S = 60.0
#: PostgreSQL connect timeout unless the URL sets one.
_PG_CONNECT_TIMEOUT_S = 10
_NO_LOCK = nullcontext()


def _data_dir() -> Path:
    airflow_home = os.environ.get("AIRFLOW_HOME")
    if airflow_home:
        return Path(airflow_home).expanduser()
    return Path.home() / ".local" / "share" / "carbon-sensors"


def default_ledger_url() -> str:
    """``$CARBON_SENSORS_LEDGER_URL``, else an SQLite file under ``$AIRFLOW_HOME`` or ``~/.local/share/carbon-sensors``."""
    url = (env_setting(LEDGER_URL_ENV) or "").strip()
    if url:
        return url
    return f"sqlite:///{(_data_dir() / _DEFAULT_FILE).absolute()}"


def default_spool_dir() -> Path:
    """``$CARBON_SENSORS_SPOOL_DIR``, else ``carbon_sensors_spool/`` next to the default SQLite file."""
    path = (env_setting(SPOOL_DIR_ENV) or "").strip()
    return Path(path).expanduser() if path else _data_dir() / _DEFAULT_SPOOL


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages and logs."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unreadable ledger URL>"


class Store:
    """A ledger's database: the URL, the engine (created on first use), transactions and the schema.

    The :class:`~carbon_sensors.ledger.Ledger` adds writing, reading and the decision trail.
    """

    def __init__(self, url: str | None = None, *, spool_dir: str | os.PathLike[str] | None = None,
                 clock: Clock | None = None) -> None:
        self.url = url if url is not None else default_ledger_url()
        self._default_file = url is None and not (env_setting(LEDGER_URL_ENV) or "").strip()
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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connections (the ledger reconnects if used again)."""
        if self._engine is not None:
            self._engine.dispose()
        self._engine, self._ready = None, False

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

    def _now(self) -> datetime:
        return as_utc((self._clock or default_clock()).now())


def _set_wal(cursor: Any) -> None:
    """Switch the file to WAL once. Switching needs an exclusive lock that SQLite does not wait for, so
    several workers opening a fresh ledger at once retry, within the busy timeout, instead of failing."""
    import random
    import sqlite3

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
