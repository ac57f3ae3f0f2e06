"""Reading run records: one try, a time range for reports and the UI, and recent durations for learning."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa

from carbon_sensors.errors import ConfigurationError
from carbon_sensors.ledger.rows import _from_row
from carbon_sensors.ledger.schema import RUNS, _key_clause
from carbon_sensors.ledger.store import Store
from carbon_sensors.records import RECORD_STATUSES, RunKey, RunRecord
from carbon_sensors.timeutil import as_utc

__all__ = ["Queries"]

class Queries(Store):
    """Reads run records; the decision trail has its own (:class:`~carbon_sensors.ledger.trail.Trail`)."""

    def get(self, key: RunKey) -> RunRecord | None:
        """The record of one try, or None.

        >>> from carbon_sensors.ledger import Ledger
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

        >>> from carbon_sensors.ledger import Ledger
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

        >>> from carbon_sensors.ledger import Ledger
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
