"""How the ``carbon-sensors`` command reads its arguments, and how its errors speak CLI.

A span keeps the user's spelling (``90min`` prints as ``90min``), a moment is ``+8h`` or an ISO
time with an offset, and an error raised deeper down in Python terms (``time_column=``,
``datetime(..., tzinfo=...)``) is re-worded with the flag that does the same.

>>> span = parse_span("90min", "--duration")
>>> span.total_seconds(), str(span)
(5400.0, '90min')
>>> cli_wording("name them with time_column= and value_column=", {"value_column=": "--column"})
'name them with --time-column and --column'
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from carbon_sensors import timeutil
from carbon_sensors.errors import ConfigurationError

__all__ = ["Span", "cli_wording", "parse_moment", "parse_span"]



class Span(timedelta):
    """A timedelta that prints the way the user wrote it."""

    text: str

    def __new__(cls, delta: timedelta, text: str) -> Span:
        self = super().__new__(cls, seconds=delta.total_seconds())
        self.text = text.strip()
        return self

    def __str__(self) -> str:
        return self.text

    def __reduce__(self):  # pragma: no cover - copies and pickles keep the spelling
        return (Span, (timedelta(seconds=self.total_seconds()), self.text))


def parse_span(text: str, option: str = "the duration") -> Span:
    """``90m``, ``90min``, ``1h30m``, ``2d``, ``1.5h`` or a number of seconds, keeping the spelling.

    The grammar is :func:`carbon_sensors.timeutil.parse_span`'s; this adds the CLI's hints.
    """
    try:
        return Span(timeutil.parse_span(text, option), text)
    except ConfigurationError as exc:
        if text.strip().startswith("+") and timeutil.is_span(text.strip()[1:]):
            raise ConfigurationError(f"{exc} (a duration takes no '+': {option} {text.strip()[1:]})") from None
        raise


def parse_moment(text: str | None, now: datetime, option: str) -> datetime:
    """``+8h`` from ``now``, or an ISO-8601 time with an offset (``2026-12-03T06:00Z``), in UTC."""
    if text is None:
        return now
    text = text.strip()
    if text.startswith("+"):
        return now + parse_span(text[1:], option)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        if timeutil.is_span(text):
            raise ConfigurationError(
                f"{option} {text} is a duration, not a time; for {text} from now write {option} +{text}"
            ) from None
        raise ConfigurationError(
            f"cannot read {option} {text!r}; write a time from now (+8h, +90min) or an ISO time with an offset "
            "(2026-12-03T06:00Z, 2026-12-03T06:00+01:00)"
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ConfigurationError(
            f"{option} {text} has no time zone; add one: {option} {text}Z for UTC, or {option} {text}+01:00 "
            "for an offset"
        )
    return moment.astimezone(UTC)


# Python keyword advice raised by the package's core, and the flags that do the same on the command line.
_FLAGS = {
    "time_column=": "--time-column",
    "value_column=": "--value-column",
    "zone_column=": "--zone-column",
    "timezone='UTC'": "--timezone UTC",
    "timezone=": "--timezone",
}
_DID_YOU_MEAN = re.compile(r"\(did you mean '([^']+)'\?\)")
_PY_DATETIME = re.compile(r"pass an aware datetime, e\.g\. datetime\(.*?\)(?: or pendulum\.datetime\(.*?\))?")


def cli_wording(message: str, flags: dict[str, str] | None = None) -> str:
    """``message`` with Python keyword advice replaced by the command's flags (``flags`` adds or overrides)."""
    table = {**_FLAGS, **(flags or {})}
    for python, flag in sorted(table.items(), key=lambda kv: -len(kv[0])):
        message = message.replace(python, flag)
    message = _DID_YOU_MEAN.sub(r"(did you mean --zone \1?)", message)
    return _PY_DATETIME.sub("add an offset, e.g. 2026-12-03T06:00Z or 2026-12-03T06:00+01:00", message)
