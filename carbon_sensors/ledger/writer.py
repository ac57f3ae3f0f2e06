"""Writing run records: idempotent upserts, heartbeats, reconciling stale and re-priced records, and the spool."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carbon_sensors.errors import ConfigurationError, LedgerError
from carbon_sensors.ledger.rows import _KEY_FIELDS, _PAGE, _check, _from_row, _to_row, record_from_json, record_to_json
from carbon_sensors.ledger.schema import RUNS, _key_clause
from carbon_sensors.ledger.store import SPOOL_DIR_ENV, Store
from carbon_sensors.records import RECORD_STATUSES, RunKey, RunRecord
from carbon_sensors.timeutil import as_utc, seconds

__all__ = ["Writer"]

log = logging.getLogger("carbon_sensors.ledger")

#: A claimed spool file untouched for this long belongs to a flusher that died; another flush takes it over.
_STALE_CLAIM_S = 600.0
_FINISHED = tuple(s for s in RECORD_STATUSES if s != "started")
_OPERATIONS = ("start", "finish")


class Writer(Store):
    """Stores run records: a key is one row however often it is written; a finished record is never downgraded."""

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

        >>> from carbon_sensors.ledger import Ledger
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

        >>> from carbon_sensors.ledger import Ledger
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

        >>> from carbon_sensors.ledger import Ledger
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

    def abandon_stale(self, stale_after: timedelta | float, now: datetime) -> list[RunKey]:
        """Close started tries silent for longer than ``stale_after`` as ``abandoned``; return their keys.

        A try is silent since its last heartbeat (its start when it never beat). Its ``ended_at``
        becomes that last sign of life, and a note says why it was closed.

        >>> from carbon_sensors.ledger import Ledger
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

        >>> from carbon_sensors.ledger import Ledger
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
