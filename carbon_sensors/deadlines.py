"""Deadlines as DAG authors write them: absolute, templated, or relative to the DAG run.

- an aware ``datetime`` (any time zone): absolute;
- an ISO-8601 string with an offset, or a Jinja template that renders to one (Airflow renders it);
- :class:`After`: a span after an anchor of the run (``data_interval_end`` by default), computed with
  calendar arithmetic in the author's time zone, so ``After(days=1, timezone="Europe/Berlin")`` keeps
  the wall-clock time across a DST change;
- :class:`NextLocalTime`: the first given wall-clock time after the anchor, e.g. "by 06:00 Berlin time".

>>> from datetime import datetime, timezone
>>> end = datetime(2026, 3, 28, 23, 0, tzinfo=timezone.utc)   # the night Berlin springs forward
>>> resolve_deadline(NextLocalTime("06:00", timezone="Europe/Berlin"), {"data_interval_end": end}).isoformat()
'2026-03-29T04:00:00+00:00'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Union

from carbon_sensors.errors import DeadlineError
from carbon_sensors.timeutil import as_utc, parse_utc

__all__ = ["ANCHORS", "After", "DeadlineSpec", "NextLocalTime", "does_not_fit", "is_template", "resolve_deadline"]

#: Moments of a run a relative deadline may hang from; ``run_after`` always exists in Airflow 3.
ANCHORS = ("data_interval_end", "data_interval_start", "logical_date", "run_after")


def _check_anchor(anchor: str) -> None:
    if anchor not in ANCHORS:
        raise DeadlineError(f"unknown deadline anchor {anchor!r}; use one of {', '.join(ANCHORS)}")


def _check_timezone(name: str | None) -> None:
    if name is None:
        return
    import pendulum

    try:
        pendulum.timezone(name)
    except (ValueError, KeyError):  # InvalidTimezone, ZoneInfoNotFoundError
        raise DeadlineError(f"unknown time zone {name!r}; use an IANA name such as 'Europe/Berlin'") from None


@dataclass(frozen=True, slots=True)
class After:
    """A deadline a span after an anchor of the run, e.g. ``After(hours=8)``.

    With ``timezone``, days and weeks are calendar days in that zone (DST-aware); hours and
    minutes are always elapsed time.
    """

    weeks: float = 0
    days: float = 0
    hours: float = 0
    minutes: float = 0
    anchor: str = "data_interval_end"
    timezone: str | None = None

    def __post_init__(self) -> None:
        _check_anchor(self.anchor)
        _check_timezone(self.timezone)
        parts = {"weeks": self.weeks, "days": self.days, "hours": self.hours, "minutes": self.minutes}
        if any(not isinstance(v, int | float) or v < 0 for v in parts.values()):
            raise DeadlineError(f"every part of {self!r} must be a number, zero or positive; e.g. After(days=1, hours=6)")
        if self.min_span <= timedelta(0):
            raise DeadlineError(f"{self!r} must lie after its anchor; give a positive span, e.g. After(hours=8)")

    @property
    def min_span(self) -> timedelta:
        """The shortest time from anchor to deadline (a DST day can be 23 h long)."""
        day_loss = timedelta(hours=1) * (self.days + 7 * self.weeks > 0) if self.timezone else timedelta(0)
        return timedelta(weeks=self.weeks, days=self.days, hours=self.hours, minutes=self.minutes) - day_loss

    def from_anchor(self, anchor: datetime) -> datetime:
        import pendulum

        moment = pendulum.instance(as_utc(anchor, self.anchor)).in_timezone(self.timezone or "UTC")
        moment = moment.add(weeks=int(self.weeks), days=int(self.days))
        extra = timedelta(weeks=self.weeks % 1, days=self.days % 1, hours=self.hours, minutes=self.minutes)
        return as_utc(moment + extra)

    def to_dict(self) -> dict:
        return {"kind": "after", "weeks": self.weeks, "days": self.days, "hours": self.hours,
                "minutes": self.minutes, "anchor": self.anchor, "timezone": self.timezone}


@dataclass(frozen=True, slots=True)
class NextLocalTime:
    """The first ``at`` wall-clock time in ``timezone`` strictly after the anchor, e.g. "by 06:00".

    A time that a spring-forward night skips (02:30 in Berlin) moves forward by the gap (03:30
    CEST). A time that a fall-back night repeats is its first occurrence after the anchor: the
    earlier one (summer time) unless the anchor lies between the two.
    """

    at: str
    timezone: str = "UTC"
    anchor: str = "data_interval_end"

    def __post_init__(self) -> None:
        _check_anchor(self.anchor)
        _check_timezone(self.timezone)
        try:
            time.fromisoformat(self.at)
        except (TypeError, ValueError):
            raise DeadlineError(f"at={self.at!r} is not a wall-clock time; write e.g. '06:00'") from None

    def from_anchor(self, anchor: datetime) -> datetime:
        import pendulum

        wall = time.fromisoformat(self.at)
        local = pendulum.instance(as_utc(anchor, self.anchor)).in_timezone(self.timezone)

        def on(day: Any) -> list[Any]:
            # fold=1 moves a wall time that falls in a DST gap forward by the gap (02:30 on a
            # spring-forward night becomes 03:30), never backward. On a fall-back night the wall
            # time comes twice: fold=0 is the first occurrence, fold=1 the second.
            # Compared in UTC: datetimes sharing a tzinfo compare by wall time, whatever their fold.
            first, second = (pendulum.datetime(day.year, day.month, day.day, wall.hour, wall.minute, wall.second,
                                               tz=self.timezone, fold=fold) for fold in (0, 1))
            repeated = (first.hour, first.minute, first.second) == (wall.hour, wall.minute, wall.second)
            return [as_utc(first), as_utc(second)] if repeated else [as_utc(second)]

        after = as_utc(anchor, self.anchor)
        return min(c for day in (local, local.add(days=1)) for c in on(day) if c > after)

    def to_dict(self) -> dict:
        return {"kind": "next_local_time", "at": self.at, "timezone": self.timezone, "anchor": self.anchor}


DeadlineSpec = Union[datetime, str, After, NextLocalTime]  # noqa: UP007 - a runtime alias for old typing


def is_template(value: object) -> bool:
    """Whether ``value`` is a Jinja template string that must be rendered before use."""
    return isinstance(value, str) and any(mark in value for mark in ("{{", "{%"))


def check_deadline_spec(
    spec: DeadlineSpec, expected_duration: timedelta | None, now: datetime | None = None,
    safety_margin: timedelta | None = None,
) -> None:
    """Refuse what can never work, before any run starts; with ``now``, also an absolute deadline already past.

    ``expected_duration=None`` (learned from the ledger at run time) skips the duration check;
    ``safety_margin`` (kept free before the deadline) must fit too, and the error says when it is
    the margin that does not.
    """
    if isinstance(spec, After | NextLocalTime):
        if isinstance(spec, After) and expected_duration is not None:
            margin = safety_margin or timedelta(0)
            problem = does_not_fit(expected_duration, margin, spec.min_span, f"between {spec.anchor} and the deadline")
            if problem:
                raise DeadlineError(
                    f"{problem}; lengthen the deadline or shorten expected_duration"
                    + ("" if spec.min_span <= expected_duration else
                       ", or pass a smaller margin: policy=Policy(safety_margin=timedelta(minutes=...))")
                )
        return
    if is_template(spec):
        return
    if isinstance(spec, datetime | str):
        moment = parse_utc(spec, "deadline")
        if now is not None and moment <= as_utc(now):
            raise DeadlineError(
                f"the deadline {moment.isoformat()} is already past; use a relative deadline such as "
                "After(hours=8) for a recurring DAG, or a future time"
            )
        return
    raise DeadlineError(
        f"deadline must be an aware datetime, an ISO-8601 string, a template, After(...) or NextLocalTime(...); "
        f"got {type(spec).__name__}"
    )


def does_not_fit(duration: timedelta, margin: timedelta, slack: timedelta, where: str = "") -> str | None:
    """Why a job of ``duration`` plus its safety ``margin`` cannot finish within ``slack``, or None if it can.

    ``where`` names the slack (e.g. "before the deadline"); durations print as written.

    >>> does_not_fit(timedelta(hours=1), timedelta(minutes=6), timedelta(minutes=65), "before the deadline")
    'the expected duration 1h fits in the 65min before the deadline, but its safety margin of 6min does not'
    >>> does_not_fit(timedelta(hours=2), timedelta(minutes=12), timedelta(hours=2))  # exactly: the margin is what is short
    'the expected duration 2h fits in the 2h, but its safety margin of 12min does not'
    """
    from carbon_sensors.durations import format_span

    where = f" {where}" if where else ""
    if slack < duration or (slack == duration and not margin):  # exactly equal with no margin: no room at all
        return f"the expected duration {format_span(duration)} does not fit in the {format_span(slack)}{where}"
    if slack < duration + margin:
        return (f"the expected duration {format_span(duration)} fits in the {format_span(slack)}{where}, but its "
                f"safety margin of {format_span(margin)} does not")
    return None


def resolve_deadline(spec: DeadlineSpec, anchors: Mapping[str, datetime | None]) -> datetime:
    """The deadline in UTC for a run whose anchor moments are ``anchors``.

    A missing ``data_interval_*`` or ``logical_date`` (manual and asset-triggered runs in Airflow 3)
    falls back to ``run_after``.
    """
    if isinstance(spec, After | NextLocalTime):
        anchor = anchors.get(spec.anchor) or anchors.get("run_after")
        if anchor is None:
            raise DeadlineError(
                f"the deadline hangs from {spec.anchor!r}, which this run does not have; "
                f"pass one of {', '.join(k for k, v in anchors.items() if v is not None) or 'an absolute deadline'}"
            )
        return spec.from_anchor(anchor)
    if is_template(spec):
        raise DeadlineError(f"the deadline template {spec!r} was not rendered; render it before resolving")
    return parse_utc(spec, "deadline")


def deadline_from_dict(data: dict) -> After | NextLocalTime:
    """Rebuild a relative deadline written by ``to_dict()``."""
    kind = data.get("kind")
    fields = {k: v for k, v in data.items() if k != "kind"}
    if kind == "after":
        return After(**fields)
    if kind == "next_local_time":
        return NextLocalTime(**fields)
    raise DeadlineError(f"unknown deadline kind {kind!r}")
