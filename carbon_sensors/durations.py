"""Durations written the way people write them: ``1h``, ``90min``, ``2d``, ``5min48s``, ``45 s``.

A span the user typed keeps its own spelling (a :class:`carbon_sensors.cli_syntax.Span` prints as
given); any other timedelta prints in the largest unit that divides it evenly.

>>> from datetime import timedelta
>>> format_span(timedelta(hours=1)), format_span(timedelta(minutes=90)), format_span(timedelta(days=2))
('1h', '90min', '2d')
"""

from __future__ import annotations

from datetime import timedelta

__all__ = ["format_span"]


def format_span(delta: timedelta) -> str:
    """``delta`` as ``2d``, ``8h``, ``90min``, ``5min48s`` or ``45 s``; a span that carries its spelling keeps it."""
    text = getattr(delta, "text", None)
    if isinstance(text, str) and text:
        return text
    total = round(delta.total_seconds())
    sign, total = ("-", -total) if total < 0 else ("", total)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if total and total % size == 0:
            return f"{sign}{total // size}{unit}"
    if total > 60:
        return f"{sign}{total // 60}min{total % 60:02d}s"
    return f"{sign}{total} s"
