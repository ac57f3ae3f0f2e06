"""Run records as table rows and as JSON: the one codec the ledger's writer, queries and spool share."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from carbon_sensors.errors import ConfigurationError
from carbon_sensors.records import RECORD_FIELDS, RECORD_STATUSES, ComponentEnergy, RunKey, RunRecord, TokenUsage
from carbon_sensors.timeutil import as_utc

__all__ = ["record_from_json", "record_to_json"]

#: The columns of a run's key, in :class:`~carbon_sensors.records.RunKey` order.
_KEY_FIELDS = ("orchestrator", "dag_id", "task_id", "run_id", "try_number", "map_index")
_JSON_FIELDS = ("components", "tokens", "changes", "notes", "source_spec")
_DATETIME_FIELDS = (
    "submitted_at", "planned_start", "latest_start", "deadline", "started_at", "ended_at", "heartbeat_at",
    "repriced_at",
)
#: Rows per statement or page when many are read or written.
_PAGE = 500


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
