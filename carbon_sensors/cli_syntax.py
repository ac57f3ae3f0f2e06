"""How the ``carbon-sensors`` command reads its arguments, and how its errors speak CLI.

A span keeps the user's spelling (``90min`` prints as ``90min``), a moment is ``+8h`` or an ISO
time with an offset, and an error raised deeper down in Python terms (``time_column=``,
``datetime(..., tzinfo=...)``) is re-worded with the flag that does the same.

>>> span = parse_span("90min", "--duration")
>>> span.total_seconds(), str(span)
(5400.0, '90min')
>>> cli_wording("name them with time_column= and value_column=", {"value_column=": "--column"})
'name them with --time-column and --column'
>>> cli_wording("min_saving_pct must be in [0, 100), got 150.0")
'--min-saving-pct must be in [0, 100), got 150.0'
>>> str(parse_span("24", "--hours", bare="hours")), parse_span("24", "--hours", bare="hours").total_seconds()
('24', 86400.0)
"""

from __future__ import annotations

import math
import re
import shlex
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


def parse_span(text: str, option: str = "the duration", *, bare: str = "seconds") -> Span:
    """``90m``, ``90min``, ``1h30m``, ``2d``, ``1.5h`` or a bare number, keeping the spelling.

    The grammar is :func:`carbon_sensors.timeutil.parse_span`'s; this adds the CLI's hints. ``bare``
    says what a bare number is: ``"seconds"`` (the core grammar), ``"hours"`` (for an option named
    in hours, ``--hours 24``), or ``"refuse"``: a unit is needed, as ``--duration 6`` could be six
    seconds or six hours (zero needs none).
    """
    return _span(text, option, bare, "")


def _span(text: str, option: str, bare: str, prefix: str) -> Span:
    """:func:`parse_span`, for a value the user wrote after ``prefix`` (``+`` in ``--deadline +8h``)."""
    stripped = text.strip()
    try:
        number = float(stripped)
    except ValueError:
        number = None
    if number is not None and bare != "seconds":
        if not (math.isfinite(number) and number >= 0):
            example = "24" if bare == "hours" else f"{prefix}1h"
            raise ConfigurationError(f"{option} {prefix}{stripped} must be zero or longer, e.g. {option} {example}")
        if bare == "hours":
            return Span(timedelta(hours=number), text)
        if number == 0:
            return Span(timedelta(0), text)
        written = prefix + stripped
        raise ConfigurationError(
            f"{option} {written} has no unit; add one: {option} {written}min, {written}h or {written}d")
    try:
        return Span(timeutil.parse_span(text, option), text)
    except ConfigurationError as exc:
        message = str(exc)
        if bare != "seconds":  # a bare number is not seconds here: do not advise one
            message = message.replace(timeutil.SPAN_EXAMPLES,
                                      ("24 (hours), " if bare == "hours" else "") + "90m, 90min, 1h30m or 2d")
        if not prefix and stripped.startswith("+") and timeutil.is_span(stripped[1:]):
            message += f" (a duration takes no '+': {option} {stripped[1:]})"
        raise ConfigurationError(message) from None


def parse_moment(text: str | None, now: datetime, option: str) -> datetime:
    """``+8h`` from ``now``, or an ISO-8601 time with an offset (``2026-12-03T06:00Z``), in UTC."""
    if text is None:
        return now
    text = text.strip()
    if text.startswith("+"):
        return now + _span(text[1:], option, "refuse", "+")
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
    "sigma24 and exact_h must be >= 0 and rho within": "--sigma24 must be >= 0 and --rho within",
    "the policy sets": "the settings give",
    "pass a price trace": "pass a --price-trace",
}
# Policy and backtest settings named in Python (``min_saving_pct must be ...``), and their flags. The
# names with an underscore are replaced wherever they stand alone; one-word names only before "must".
_SETTINGS = re.compile(
    r"(?<![-\w])(max_delay|safety_margin|min_saving_pct|max_cost_increase_pct|max_intensity|carbon_price_per_tonne"
    r"|price_sigma24|power_kw)\b|(?<![-\w])(threshold|objective|currency)(?= must\b)"
)
_DID_YOU_MEAN = re.compile(r"\(did you mean '([^']+)'\?\)")
# What a hint is about: the zone (``no zone 'de' (did you mean 'DE'?)``) or a file's column
# (``no intensity column 'gco' ... (did you mean 'gco2'?)``), and the flag that takes the value.
_HINT_SUBJECT = re.compile(r"no zone '|no (\w+) column '")
_COLUMN_FLAGS = {"time": "--time-column", "intensity": "--value-column", "price": "--price-column"}
_PY_DATETIME = re.compile(r"pass an aware datetime, e\.g\. datetime\(.*?\)(?: or pendulum\.datetime\(.*?\))?")


def _hint(message: str, match: re.Match[str]) -> str:
    """A did-you-mean as the flag and value to write, judged by what the message says is missing."""
    subjects = list(_HINT_SUBJECT.finditer(message, 0, match.start()))
    value = shlex.quote(match[1])
    if subjects and subjects[-1][0] == "no zone '":
        return f"(did you mean --zone {value}?)"
    flag = _COLUMN_FLAGS.get(subjects[-1][1]) if subjects else None
    return f"(did you mean {flag} {value}?)" if flag else match[0]


def cli_wording(message: str, flags: dict[str, str] | None = None) -> str:
    """``message`` with Python keyword advice replaced by the command's flags (``flags`` adds or overrides)."""
    message = _DID_YOU_MEAN.sub(lambda m: _hint(message, m), message)
    table = {**_FLAGS, **(flags or {})}
    for python, flag in sorted(table.items(), key=lambda kv: -len(kv[0])):
        message = message.replace(python, flag)
    message = _SETTINGS.sub(lambda m: "--" + (m[1] or m[2]).replace("_", "-"), message)
    return _PY_DATETIME.sub("add an offset, e.g. 2026-12-03T06:00Z or 2026-12-03T06:00+01:00", message)
