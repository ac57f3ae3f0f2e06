"""How the planner writes moments and spans in its reasons and messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def hm(moment: datetime) -> str:
    """A moment to the minute, in UTC: ``2026-06-15 08:00 UTC``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def span(delta: timedelta | None) -> str:
    """A span as ``2h``, ``1h30m``, ``45 min`` or ``30 s``; one the user typed prints as typed."""
    if isinstance(getattr(delta, "text", None), str):
        return delta.text  # a span the user typed (carbon_sensors.cli_syntax.Span) prints as typed
    total = round((delta or timedelta(0)).total_seconds())
    hours, rest = divmod(total, 3600)
    minutes = rest // 60
    if hours and minutes:
        return f"{hours}h{minutes:02d}m"
    if hours:
        return f"{hours}h"
    return f"{minutes} min" if minutes else f"{total} s"
