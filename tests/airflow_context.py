"""A minimal task context, as the Airflow task runner passes to execute(), for unit tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class FakeDagRun:
    conf: dict[str, Any] = field(default_factory=dict)
    run_after: datetime | None = None


@dataclass
class FakeTI:
    start_date: datetime | None = None
    run_id: str = "manual__test"
    map_index: int = -1
    pushed: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def context_at(moment: datetime, conf: dict[str, Any] | None = None) -> dict[str, Any]:
    ti = FakeTI(start_date=moment)
    return {
        "data_interval_start": moment,
        "data_interval_end": moment,
        "logical_date": moment,
        "dag_run": FakeDagRun(conf=conf or {}, run_after=moment),
        "ti": ti,
        "task_instance": ti,
    }
