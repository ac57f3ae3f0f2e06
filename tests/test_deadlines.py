"""Tests for carbon_sensors.deadlines: relative deadlines across DST, resolution against run anchors, checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from carbon_sensors.deadlines import (
    ANCHORS,
    After,
    NextLocalTime,
    check_deadline_spec,
    deadline_from_dict,
    is_template,
    resolve_deadline,
)
from carbon_sensors.errors import ConfigurationError, DeadlineError

H = timedelta(hours=1)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- NextLocalTime across DST ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "anchor", "expected"),
    [
        # Berlin springs forward 2026-03-29 01:00 UTC: 06:00 is CEST (+02:00)
        ("Europe/Berlin", utc(2026, 3, 28, 23), utc(2026, 3, 29, 4)),
        # Berlin falls back 2026-10-25 01:00 UTC: 06:00 is CET (+01:00); the anchor is 01:00 CEST
        ("Europe/Berlin", utc(2026, 10, 24, 23), utc(2026, 10, 25, 5)),
        # New York springs forward 2026-03-08 07:00 UTC: 06:00 is EDT (-04:00)
        ("America/New_York", utc(2026, 3, 8, 5), utc(2026, 3, 8, 10)),
        # New York falls back 2026-11-01 06:00 UTC: 06:00 is EST (-05:00); the anchor is 01:00 EDT
        ("America/New_York", utc(2026, 11, 1, 5), utc(2026, 11, 1, 11)),
        # ordinary days either side, for contrast
        ("Europe/Berlin", utc(2026, 3, 27, 23), utc(2026, 3, 28, 5)),
        ("America/New_York", utc(2026, 11, 2, 5), utc(2026, 11, 2, 11)),
    ],
)
def test_next_local_time_across_dst(tz, anchor, expected):
    """NextLocalTime('06:00') lands on 06:00 local wall-clock time with the offset valid on that day."""
    deadline = NextLocalTime("06:00", timezone=tz).from_anchor(anchor)
    assert deadline == expected
    assert deadline.tzinfo == UTC
    assert deadline.astimezone(ZoneInfo(tz)).strftime("%H:%M") == "06:00"


def test_next_local_time_via_resolve_deadline_matches_docstring():
    """resolve_deadline resolves the documented Berlin spring-forward example to 04:00 UTC."""
    spec = NextLocalTime("06:00", timezone="Europe/Berlin")
    assert resolve_deadline(spec, {"data_interval_end": utc(2026, 3, 28, 23)}) == utc(2026, 3, 29, 4)


def test_next_local_time_is_strictly_after_the_anchor():
    """An anchor exactly at the wall-clock time gives the next day's occurrence, a later one the same day's."""
    spec = NextLocalTime("06:00", timezone="Europe/Berlin")
    assert spec.from_anchor(utc(2026, 6, 15, 4)) == utc(2026, 6, 16, 4)  # 06:00 CEST exactly
    assert spec.from_anchor(utc(2026, 6, 15, 3, 59)) == utc(2026, 6, 15, 4)
    assert spec.from_anchor(utc(2026, 6, 15, 5)) == utc(2026, 6, 16, 4)


def test_next_local_time_with_seconds_and_default_utc():
    """'at' may carry seconds, and the default time zone is UTC."""
    assert NextLocalTime("18:30:15").from_anchor(utc(2026, 1, 1, 12)) == datetime(2026, 1, 1, 18, 30, 15, tzinfo=UTC)


def test_next_local_time_accepts_non_utc_anchor():
    """An aware anchor in another zone means the same instant."""
    anchor = datetime(2026, 6, 15, 1, tzinfo=ZoneInfo("America/New_York"))  # 05:00 UTC
    assert NextLocalTime("06:00", timezone="Europe/Berlin").from_anchor(anchor) == utc(2026, 6, 16, 4)


def test_next_local_time_in_the_spring_gap_is_not_earlier_than_requested():
    """A wall-clock time inside the spring-forward gap resolves to the gap's end or later, never before it."""
    deadline = NextLocalTime("02:30", timezone="Europe/Berlin").from_anchor(utc(2026, 3, 28, 23))
    # The clocks jump from 02:00 CET (01:00 UTC) to 03:00 CEST; 02:30 shifts forward to between 03:00 and 03:30 CEST.
    assert utc(2026, 3, 29, 1) <= deadline <= utc(2026, 3, 29, 1, 30)


# -- After across DST -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "anchor", "calendar_day", "elapsed_hours"),
    [
        ("Europe/Berlin", utc(2026, 3, 28, 12), utc(2026, 3, 29, 11), 23),  # 13:00 CET -> 13:00 CEST
        ("Europe/Berlin", utc(2026, 10, 24, 12), utc(2026, 10, 25, 13), 25),  # 14:00 CEST -> 14:00 CET
        ("America/New_York", utc(2026, 3, 7, 17), utc(2026, 3, 8, 16), 23),  # 12:00 EST -> 12:00 EDT
        ("America/New_York", utc(2026, 10, 31, 16), utc(2026, 11, 1, 17), 25),  # 12:00 EDT -> 12:00 EST
    ],
)
def test_after_days_keeps_wall_clock_while_hours_are_elapsed(tz, anchor, calendar_day, elapsed_hours):
    """After(days=1, timezone=...) keeps the local wall-clock time across DST; After(hours=24) is 24 elapsed hours."""
    by_day = After(days=1, timezone=tz).from_anchor(anchor)
    assert by_day == calendar_day
    assert by_day - anchor == timedelta(hours=elapsed_hours)
    local = ZoneInfo(tz)
    assert by_day.astimezone(local).time() == anchor.astimezone(local).time()
    assert After(hours=24, timezone=tz).from_anchor(anchor) == anchor + 24 * H
    assert After(hours=24).from_anchor(anchor) == anchor + 24 * H


def test_after_days_without_timezone_is_utc_days():
    """Without a time zone, days are UTC calendar days, i.e. 24 elapsed hours even across Berlin DST."""
    anchor = utc(2026, 3, 28, 12)
    assert After(days=1).from_anchor(anchor) == anchor + 24 * H


def test_after_week_and_extra_hours_across_dst():
    """A calendar week plus elapsed hours: wall clock for the week, elapsed time for the hours."""
    anchor = utc(2026, 3, 25, 12)  # 13:00 CET
    deadline = After(weeks=1, hours=2, minutes=30, timezone="Europe/Berlin").from_anchor(anchor)
    assert deadline == utc(2026, 4, 1, 11) + timedelta(hours=2, minutes=30)  # 15:30 CEST


def test_after_fractional_days_add_elapsed_remainder():
    """The fractional part of days is added as elapsed time (1.5 days = one calendar day + 12 h)."""
    anchor = utc(2026, 3, 28, 12)
    assert After(days=1.5, timezone="Europe/Berlin").from_anchor(anchor) == utc(2026, 3, 29, 11) + 12 * H


@pytest.mark.parametrize("parts", [{"days": -0.5, "hours": 24}, {"weeks": -1, "days": 8}, {"hours": 9, "minutes": -30}])
def test_after_refuses_negative_parts(parts):
    """Negative parts (After(days=-0.5, hours=24)) are refused: spans add up, they never subtract."""
    with pytest.raises(DeadlineError, match="zero or positive"):
        After(**parts)


def test_after_min_span_allows_for_a_short_dst_day():
    """min_span is the nominal span, minus 1 h when calendar days in a time zone may be 23 h long."""
    assert After(hours=8).min_span == 8 * H
    assert After(days=1).min_span == 24 * H
    assert After(days=1, timezone="Europe/Berlin").min_span == 23 * H
    assert After(weeks=1, timezone="Europe/Berlin").min_span == 7 * 24 * H - H
    assert After(hours=30, timezone="Europe/Berlin").min_span == 30 * H


# -- resolve_deadline -----------------------------------------------------------------------------


def test_resolve_after_uses_data_interval_end_by_default():
    """After(hours=8) hangs from data_interval_end unless told otherwise."""
    anchors = {"data_interval_start": utc(2026, 6, 14), "data_interval_end": utc(2026, 6, 15),
               "logical_date": utc(2026, 6, 14), "run_after": utc(2026, 6, 15, 0, 5)}
    assert resolve_deadline(After(hours=8), anchors) == utc(2026, 6, 15, 8)
    assert resolve_deadline(After(hours=8, anchor="logical_date"), anchors) == utc(2026, 6, 14, 8)
    assert resolve_deadline(After(hours=8, anchor="run_after"), anchors) == utc(2026, 6, 15, 8, 5)


@pytest.mark.parametrize("anchors", [
    {"data_interval_end": None, "run_after": utc(2026, 6, 15, 9, 30)},
    {"run_after": utc(2026, 6, 15, 9, 30)},
])
def test_resolve_falls_back_to_run_after(anchors):
    """A manual run without data_interval_end (None or absent) falls back to run_after."""
    assert resolve_deadline(After(hours=2), anchors) == utc(2026, 6, 15, 11, 30)
    assert resolve_deadline(NextLocalTime("12:00"), anchors) == utc(2026, 6, 15, 12)


def test_resolve_without_any_anchor_raises_deadline_error_listing_what_exists():
    """With neither the anchor nor run_after, resolve_deadline says which anchors the run has."""
    with pytest.raises(DeadlineError, match="'data_interval_end', which this run does not have") as info:
        resolve_deadline(After(hours=2), {"data_interval_end": None, "logical_date": utc(2026, 6, 15)})
    assert "pass one of logical_date" in str(info.value)
    with pytest.raises(DeadlineError, match="an absolute deadline"):
        resolve_deadline(NextLocalTime("06:00"), {})


def test_resolve_absolute_deadlines_to_utc():
    """Aware datetimes and ISO strings with an offset or Z resolve to the same UTC instant."""
    expected = utc(2026, 6, 15, 4)
    assert resolve_deadline(datetime(2026, 6, 15, 6, tzinfo=ZoneInfo("Europe/Berlin")), {}) == expected
    assert resolve_deadline("2026-06-15T06:00:00+02:00", {}) == expected
    assert resolve_deadline("2026-06-15T04:00:00Z", {}) == expected


def test_resolve_unrendered_template_raises_deadline_error():
    """A template that Airflow did not render is refused with a hint to render it."""
    with pytest.raises(DeadlineError, match="was not rendered; render it"):
        resolve_deadline("{{ data_interval_end + macros.timedelta(hours=8) }}", {"run_after": utc(2026, 1, 1)})
    with pytest.raises(DeadlineError, match="not rendered"):
        resolve_deadline("{% if true %}2026-01-01T00:00Z{% endif %}", {})


def test_resolve_naive_or_malformed_absolute_deadline_raises_configuration_error():
    """A naive or non-ISO absolute deadline is a ConfigurationError suggesting an offset."""
    with pytest.raises(ConfigurationError, match="no time zone"):
        resolve_deadline("2026-06-15T06:00:00", {})
    with pytest.raises(ConfigurationError, match="not an ISO-8601 datetime"):
        resolve_deadline("tomorrow at six", {})


# -- check_deadline_spec --------------------------------------------------------------------------


def test_check_naive_datetime_raises_configuration_error():
    """A naive datetime deadline is refused before any run."""
    with pytest.raises(ConfigurationError, match="no time zone; pass an aware datetime"):
        check_deadline_spec(datetime(2026, 6, 15, 6), H)


def test_check_past_absolute_deadline_with_now_raises_deadline_error():
    """An absolute deadline at or before now is refused, suggesting a relative deadline."""
    now = utc(2026, 6, 15, 12)
    with pytest.raises(DeadlineError, match="already past; use a relative deadline such as After"):
        check_deadline_spec(utc(2026, 6, 15, 6), H, now=now)
    with pytest.raises(DeadlineError, match="already past"):
        check_deadline_spec("2026-06-15T12:00:00Z", H, now=now)
    check_deadline_spec(utc(2026, 6, 15, 13), H, now=now)
    check_deadline_spec(utc(2026, 6, 15, 6), H)  # without now there is nothing to compare against


@pytest.mark.parametrize(
    ("spec", "duration"),
    [
        (After(hours=1), 2 * H),
        (After(hours=2), 2 * H),  # exactly equal leaves no room at all
        (After(days=1, timezone="Europe/Berlin"), timedelta(hours=23, minutes=30)),  # a DST day has 23 h
    ],
)
def test_check_relative_span_shorter_than_duration_raises_deadline_error(spec, duration):
    """A relative deadline whose shortest span does not exceed the duration is refused with a fix."""
    with pytest.raises(DeadlineError, match="lengthen the deadline or shorten expected_duration"):
        check_deadline_spec(spec, duration)


def test_check_accepts_workable_specs():
    """Relative, templated and future absolute deadlines pass the check (it returns None)."""
    assert check_deadline_spec(After(hours=8), 2 * H) is None
    assert check_deadline_spec(After(days=1), timedelta(hours=23, minutes=30)) is None
    assert check_deadline_spec(NextLocalTime("06:00", timezone="Europe/Berlin"), 2 * H) is None
    assert check_deadline_spec("{{ data_interval_end }}", 2 * H, now=utc(2026, 1, 1)) is None


def test_check_refuses_other_types():
    """A deadline of the wrong type is a DeadlineError naming the accepted forms."""
    with pytest.raises(DeadlineError, match=r"After\(\.\.\.\) or NextLocalTime\(\.\.\.\); got int"):
        check_deadline_spec(3600, H)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "make",
    [lambda: After(hours=1, anchor="start_date"), lambda: NextLocalTime("06:00", anchor="execution_date")],
    ids=["After", "NextLocalTime"],
)
def test_bad_anchor_raises_deadline_error(make):
    """An unknown anchor is refused, listing the valid anchors."""
    with pytest.raises(DeadlineError, match="unknown deadline anchor") as info:
        make()
    assert all(anchor in str(info.value) for anchor in ANCHORS)


@pytest.mark.parametrize(
    "make",
    [lambda: After(days=1, timezone="Europe/Atlantis"), lambda: NextLocalTime("06:00", timezone="CEST+1")],
    ids=["After", "NextLocalTime"],
)
def test_bad_timezone_raises_deadline_error(make):
    """An unknown time zone is refused with a hint to use an IANA name."""
    with pytest.raises(DeadlineError, match=r"unknown time zone .*IANA name such as 'Europe/Berlin'"):
        make()


@pytest.mark.parametrize("at", ["25:00", "6am", "06h00", "", None])
def test_bad_at_raises_deadline_error(at):
    """A malformed wall-clock time is refused with an example of the right form."""
    with pytest.raises(DeadlineError, match=r"is not a wall-clock time; write e\.g\. '06:00'"):
        NextLocalTime(at)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{}, {"hours": -1}, {"hours": 1, "minutes": -60}])
def test_after_without_positive_span_raises_deadline_error(kwargs):
    """After() needs a positive span."""
    with pytest.raises(DeadlineError, match="positive"):
        After(**kwargs)


# -- serialisation and helpers --------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [After(hours=8), After(days=1, minutes=15, anchor="logical_date", timezone="Europe/Berlin"),
     NextLocalTime("06:00", timezone="America/New_York", anchor="run_after")],
)
def test_relative_deadlines_round_trip_through_to_dict(spec):
    """to_dict/deadline_from_dict round-trips a relative deadline to an equal one."""
    import json

    assert deadline_from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_deadline_from_dict_unknown_kind_raises_deadline_error():
    """An unknown serialised kind is a DeadlineError."""
    with pytest.raises(DeadlineError, match="unknown deadline kind 'cron'"):
        deadline_from_dict({"kind": "cron"})


def test_is_template():
    """Only strings with Jinja markers are templates."""
    assert is_template("{{ ds }}") and is_template("{% raw %}x{% endraw %}")
    assert not is_template("2026-06-15T06:00:00Z")
    assert not is_template(After(hours=1))
