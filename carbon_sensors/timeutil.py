"""Small helpers that keep every datetime inside the package aware and in UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from carbon_sensors.errors import ConfigurationError

__all__ = ["as_utc", "parse_span", "parse_utc", "seconds", "to_iso"]


def as_utc(value: datetime, what: str = "datetime") -> datetime:
    """Return ``value`` in UTC; refuse naive datetimes, whose meaning depends on the machine."""
    if type(value) is datetime and value.tzinfo is UTC:
        return value  # already what we return; the planner converts several per re-plan
    if not isinstance(value, datetime):
        raise ConfigurationError(f"{what} must be a datetime, got {type(value).__name__}: {value!r}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ConfigurationError(
            f"{what} {value.isoformat()} has no time zone; pass an aware datetime, "
            "e.g. datetime(2026, 1, 1, 6, tzinfo=timezone.utc) or pendulum.datetime(..., tz='Europe/Berlin')"
        )
    return datetime.fromtimestamp(value.timestamp(), UTC)


def parse_utc(value: str | datetime, what: str = "datetime") -> datetime:
    """Parse an ISO-8601 string with an offset (or take a datetime) and return it in UTC."""
    if isinstance(value, datetime):
        return as_utc(value, what)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise ConfigurationError(
            f"{what} {value!r} is not an ISO-8601 datetime; write e.g. '2026-06-15T06:00:00+00:00'"
        ) from None
    return as_utc(parsed, what)


def to_iso(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with an explicit offset, or None."""
    return None if value is None else as_utc(value).isoformat()


def seconds(value: timedelta | float | int, what: str) -> float:
    """A duration in seconds from a timedelta or a number of seconds; refuse negatives."""
    result = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not result >= 0:
        raise ConfigurationError(f"{what} must be zero or positive, got {value!r}")
    return result


_SPAN = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m(?:in)?)?\s*$")


#: How a span may be written, for error messages.
SPAN_EXAMPLES = "90m, 90min, 1h30m, 2d or 3600 (seconds)"


def is_span(text: str) -> bool:
    """Whether ``text`` is written as a span (``90m``, ``1h30m``, ``2d``; not a bare number)."""
    match = _SPAN.match(text.lower())
    return bool(match and any(match.groups()))


def parse_span(text: str, what: str = "the duration") -> timedelta:
    """``90m``, ``90min``, ``1h30m``, ``2d``, ``1.5h`` or a number of seconds, as a timedelta.

    The one grammar of spans: the CLI, workloads and settings all read them here. ``what`` names the
    value in the error (``--duration``).
    """
    try:
        return timedelta(seconds=float(text))
    except ValueError:
        pass
    if not is_span(text):
        raise ConfigurationError(f"cannot read {what} {text!r}; write e.g. {SPAN_EXAMPLES}")
    days, hours, minutes = (float(g) if g else 0.0 for g in _SPAN.match(text.lower()).groups())
    return timedelta(days=days, hours=hours, minutes=minutes)
