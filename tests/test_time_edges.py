"""Time at its edges: deadlines across DST changes, naive datetimes refused, and clocks that jump while a gate waits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pendulum
import pytest
from forecast_csv import write_forecast_csv
from static_source import JumpingClock, StaticSource

from carbon_sensors.deadlines import After, NextLocalTime, check_deadline_spec, is_template, resolve_deadline
from carbon_sensors.errors import ConfigurationError, DeadlineError
from carbon_sensors.forecast import Forecast
from carbon_sensors.gate import CarbonGate, decide, wait_for_window
from carbon_sensors.planning import Policy, latest_start, plan
from carbon_sensors.signals import FileSource
from carbon_sensors.testing import FrozenClock

H = timedelta(hours=1)
BERLIN, NEW_YORK = "Europe/Berlin", "America/New_York"


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def resolve(spec, anchor: datetime) -> datetime:
    return resolve_deadline(spec, {"data_interval_end": anchor})


def wall(moment: datetime, tz: str) -> str:
    return moment.astimezone(ZoneInfo(tz)).strftime("%H:%M %Z")


# -- NextLocalTime on the nights the clocks change -------------------------------------------------
# Berlin: spring forward 2026-03-29 01:00 UTC (02:00 CET -> 03:00 CEST), fall back 2026-10-25 01:00 UTC
# (03:00 CEST -> 02:00 CET). New York: spring forward 2026-03-08 07:00 UTC (02:00 EST -> 03:00 EDT), fall
# back 2026-11-01 06:00 UTC (02:00 EDT -> 01:00 EST).


@pytest.mark.parametrize(
    ("tz", "anchor", "expected", "local"),
    [
        # 02:30 does not exist that night: it moves forward by the gap, to 03:30 summer time
        (BERLIN, utc(2026, 3, 28, 22), utc(2026, 3, 29, 1, 30), "03:30 CEST"),
        (NEW_YORK, utc(2026, 3, 8, 5), utc(2026, 3, 8, 7, 30), "03:30 EDT"),
        # an anchor after the change but before 03:30: the moved time still lies ahead
        (BERLIN, utc(2026, 3, 29, 1, 15), utc(2026, 3, 29, 1, 30), "03:30 CEST"),
        # an anchor after 03:30: the next day's 02:30, which exists
        (BERLIN, utc(2026, 3, 29, 1, 45), utc(2026, 3, 30, 0, 30), "02:30 CEST"),
    ],
)
def test_a_wall_time_skipped_by_spring_forward_moves_forward_by_the_gap(tz, anchor, expected, local):
    """NextLocalTime('02:30') on a spring-forward night is 03:30 summer time, never an hour early."""
    deadline = resolve(NextLocalTime("02:30", timezone=tz), anchor)
    assert deadline == expected and wall(deadline, tz) == local and deadline > anchor


@pytest.mark.parametrize(
    ("tz", "at", "anchor", "expected", "local"),
    [
        # New York repeats 01:00-02:00 on 2026-11-01: the first 01:30 after the anchor is summer time (EDT) ...
        (NEW_YORK, "01:30", utc(2026, 11, 1, 3), utc(2026, 11, 1, 5, 30), "01:30 EDT"),
        (NEW_YORK, "01:30", utc(2026, 11, 1, 5, 15), utc(2026, 11, 1, 5, 30), "01:30 EDT"),
        # ... unless the anchor lies between the two 01:30s: then the second one (EST), 45 minutes away
        (NEW_YORK, "01:30", utc(2026, 11, 1, 5, 45), utc(2026, 11, 1, 6, 30), "01:30 EST"),
        (NEW_YORK, "01:30", utc(2026, 11, 1, 6, 15), utc(2026, 11, 1, 6, 30), "01:30 EST"),
        # after both: the next day's
        (NEW_YORK, "01:30", utc(2026, 11, 1, 6, 45), utc(2026, 11, 2, 6, 30), "01:30 EST"),
        # Berlin repeats 02:00-03:00 on 2026-10-25: the same rule
        (BERLIN, "02:30", utc(2026, 10, 24, 20), utc(2026, 10, 25, 0, 30), "02:30 CEST"),
        (BERLIN, "02:30", utc(2026, 10, 25, 0, 45), utc(2026, 10, 25, 1, 30), "02:30 CET"),
        # 01:30 is not repeated in Berlin: it happens once, in summer time
        (BERLIN, "01:30", utc(2026, 10, 24, 20), utc(2026, 10, 24, 23, 30), "01:30 CEST"),
    ],
)
def test_a_wall_time_repeated_by_fall_back_is_its_first_occurrence_after_the_anchor(tz, at, anchor, expected, local):
    """NextLocalTime on a fall-back night: the first occurrence strictly after the anchor, never a day late."""
    deadline = resolve(NextLocalTime(at, timezone=tz), anchor)
    assert deadline == expected and wall(deadline, tz) == local
    assert anchor < deadline <= anchor + 25 * H


@pytest.mark.parametrize("tz", [BERLIN, NEW_YORK])
def test_next_local_time_is_never_more_than_a_day_away_through_a_dst_year(tz):
    """Every quarter hour of 2026 as an anchor: the deadline shows the wall time asked for and comes within 25 h."""
    spec = NextLocalTime("01:30", timezone=tz)
    anchor = utc(2026, 1, 1)
    while anchor < utc(2027, 1, 1):
        deadline = resolve(spec, anchor)
        assert anchor < deadline <= anchor + 25 * H, anchor
        assert deadline.astimezone(ZoneInfo(tz)).strftime("%H:%M") == "01:30", anchor
        anchor += timedelta(minutes=15) if anchor.month in (3, 10, 11) else timedelta(hours=5, minutes=15)


# -- After across the change -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "anchor", "local_before", "local_after"),
    [
        (BERLIN, utc(2026, 3, 28, 22), "23:00 CET", "08:00 CEST"),  # 9 wall-clock hours, 8 real ones
        (BERLIN, utc(2026, 10, 24, 22), "00:00 CEST", "07:00 CET"),  # 7 wall-clock hours, 8 real ones
        (NEW_YORK, utc(2026, 3, 8, 3), "22:00 EST", "07:00 EDT"),
        (NEW_YORK, utc(2026, 11, 1, 2), "22:00 EDT", "05:00 EST"),
    ],
)
def test_after_hours_counts_elapsed_hours_not_wall_clock_hours(tz, anchor, local_before, local_after):
    """After(hours=8) across a DST change is 8 real hours later, with or without a time zone."""
    for spec in (After(hours=8), After(hours=8, timezone=tz), After(hours=7, minutes=60, timezone=tz)):
        deadline = resolve(spec, anchor)
        assert deadline - anchor == 8 * H
        assert (wall(anchor, tz), wall(deadline, tz)) == (local_before, local_after)


@pytest.mark.parametrize(
    ("tz", "anchor", "elapsed"),
    [(BERLIN, utc(2026, 3, 28, 12), 23 * H), (BERLIN, utc(2026, 10, 24, 12), 25 * H),
     (NEW_YORK, utc(2026, 3, 7, 17), 23 * H), (NEW_YORK, utc(2026, 10, 31, 16), 25 * H)],
)
def test_after_days_keeps_the_wall_clock_time_and_hours_do_not(tz, anchor, elapsed):
    """After(days=1, timezone=tz) is the same wall time tomorrow (23 or 25 h); After(hours=24) is 24 h."""
    by_day = resolve(After(days=1, timezone=tz), anchor)
    assert by_day - anchor == elapsed and wall(by_day, tz)[:5] == wall(anchor, tz)[:5]
    assert resolve(After(hours=24, timezone=tz), anchor) - anchor == 24 * H


def test_a_day_deadline_checks_its_slack_against_the_short_dst_day():
    """After(days=1, timezone=...) leaves at least 23 h: a 23.5 h job is refused when the DAG is parsed,
    and so is a 22 h job whose 2.2 h safety margin does not fit in the short day."""
    with pytest.raises(DeadlineError, match="does not fit"):
        CarbonGate(zones="DE", deadline=After(days=1, timezone=BERLIN), expected_duration=timedelta(hours=23, minutes=30))
    with pytest.raises(DeadlineError, match=r"fits in the 23h .* but its safety margin of 132min does not"):
        CarbonGate(zones="DE", deadline=After(days=1, timezone=BERLIN), expected_duration=timedelta(hours=22))
    CarbonGate(zones="DE", deadline=After(days=1, timezone=BERLIN), expected_duration=timedelta(hours=20))


# -- templated deadlines with an offset --------------------------------------------------------------


def render(template: str, **context) -> str:
    import jinja2

    return jinja2.Environment(autoescape=False).from_string(template).render(**context)


def test_a_templated_deadline_keeps_the_offset_it_renders_with():
    """A template is accepted unrendered at parse time, refused unrendered at run time, and resolved by its offset."""
    template = "{{ data_interval_end.in_timezone('Europe/Berlin').add(hours=8).isoformat() }}"
    assert is_template(template)
    check_deadline_spec(template, timedelta(hours=1))
    CarbonGate(zones="DE", deadline=template, expected_duration=timedelta(hours=1))
    with pytest.raises(DeadlineError, match="not rendered"):
        resolve(template, utc(2026, 3, 28, 22))
    rendered = render(template, data_interval_end=pendulum.instance(utc(2026, 3, 28, 22)))
    assert rendered == "2026-03-29T08:00:00+02:00"  # 23:00 CET + 8 h = 08:00 CEST
    assert resolve(rendered, utc(2026, 3, 28, 22)) == utc(2026, 3, 29, 6)


@pytest.mark.parametrize(
    ("offset", "expected"),
    [("-05:00", utc(2026, 11, 1, 11)), ("-04:00", utc(2026, 11, 1, 10)), ("Z", utc(2026, 11, 1, 6)),
     ("+05:30", utc(2026, 11, 1, 0, 30))],
)
def test_a_rendered_deadline_string_is_read_by_its_own_offset(offset, expected):
    """'{{ ds }}T06:00:00<offset>' on New York's fall-back day: the written offset decides, not a time zone guess."""
    rendered = render("{{ ds }}T06:00:00" + offset, ds="2026-11-01")
    assert resolve(rendered, utc(2026, 11, 1)) == expected


def test_a_rendered_deadline_without_an_offset_is_refused():
    """A rendered string with no offset means nothing by itself: refused, with the fix in the message."""
    rendered = render("{{ ds }}T06:00:00", ds="2026-11-01")
    with pytest.raises(ConfigurationError, match="no time zone"):
        resolve(rendered, utc(2026, 11, 1))
    with pytest.raises(ConfigurationError, match="no time zone"):
        CarbonGate(zones="DE", deadline=rendered, expected_duration=H)


# -- naive datetimes are refused wherever they can enter ----------------------------------------------

NAIVE = datetime(2026, 6, 15, 6, 0)
AWARE = utc(2026, 6, 15, 6, 0)
FORECAST = Forecast.from_points([(AWARE - 6 * H, 300.0)], zone="DE", source="t", resolution=24 * H)
GATE = CarbonGate(zones="DE", deadline=After(hours=8), expected_duration=H, source=StaticSource({"DE": FORECAST}))


def _plan(**naive):
    kwargs = {"now": AWARE, "deadline": AWARE + 8 * H, "submitted_at": AWARE, **naive}
    return plan(FORECAST, expected_duration=H, **kwargs)


def _decide(**naive):
    kwargs = {"now": AWARE, "deadline": AWARE + 8 * H, "submitted_at": AWARE, **naive}
    return asyncio.run(decide(GATE, **kwargs))


NAIVE_ENTRIES = {
    "CarbonGate deadline (datetime)": lambda: CarbonGate(zones="DE", deadline=NAIVE, expected_duration=H),
    "CarbonGate deadline (ISO string)": lambda: CarbonGate(zones="DE", deadline="2026-06-15T06:00:00", expected_duration=H),
    "CarbonGate.check_not_past now": lambda: CarbonGate(zones="DE", deadline=AWARE, expected_duration=H).check_not_past(NAIVE),
    "check_deadline_spec": lambda: check_deadline_spec(NAIVE, H),
    "plan now": lambda: _plan(now=NAIVE),
    "plan deadline": lambda: _plan(deadline=NAIVE + 8 * H),
    "plan submitted_at": lambda: _plan(submitted_at=NAIVE),
    "latest_start deadline": lambda: latest_start(NAIVE, H, Policy()),
    "resolve_deadline After anchor": lambda: resolve(After(hours=8), NAIVE),
    "resolve_deadline After anchor with a time zone": lambda: resolve(After(days=1, timezone=BERLIN), NAIVE),
    "resolve_deadline NextLocalTime anchor": lambda: resolve(NextLocalTime("06:00", timezone=BERLIN), NAIVE),
    "resolve_deadline run_after fallback": lambda: resolve_deadline(After(hours=8), {"run_after": NAIVE}),
    "resolve_deadline absolute": lambda: resolve_deadline(NAIVE, {}),
    "Forecast point": lambda: Forecast.from_points([(NAIVE, 1.0)], zone="DE", source="t", resolution=H),
    "Forecast issued_at": lambda: Forecast.from_points([(AWARE, 1.0)], zone="DE", source="t", resolution=H, issued_at=NAIVE),
    "Forecast measured_until": lambda: Forecast.from_points([(AWARE, 1.0)], zone="DE", source="t", resolution=H,
                                                            measured_until=NAIVE),
    "Forecast.window_mean start": lambda: FORECAST.window_mean(NAIVE, H),
    "Forecast.value_at": lambda: FORECAST.value_at(NAIVE),
    "decide now": lambda: _decide(now=NAIVE),
    "decide deadline": lambda: _decide(deadline=NAIVE + 8 * H),
    "decide submitted_at": lambda: _decide(submitted_at=NAIVE),
    "wait_for_window deadline": lambda: asyncio.run(wait_for_window(GATE, deadline=NAIVE + 8 * H, submitted_at=AWARE,
                                                                    clock=FrozenClock(AWARE))),
    "FrozenClock start": lambda: FrozenClock(NAIVE),
    "FrozenClock.set": lambda: FrozenClock(AWARE).set(NAIVE),
}


@pytest.mark.parametrize("entry", list(NAIVE_ENTRIES))
def test_naive_datetimes_are_refused(entry):
    """A naive datetime is refused with a ConfigurationError (DeadlineError is one) that says to add a time zone."""
    with pytest.raises(ConfigurationError, match="no time zone"):
        NAIVE_ENTRIES[entry]()


def test_a_file_source_refuses_a_naive_window(tmp_path):
    """A FileSource asked for a naive window refuses it rather than reading it in the machine's zone."""
    source = FileSource(write_forecast_csv(tmp_path / "f.csv", AWARE, [300, 200, 100]))
    with pytest.raises(ConfigurationError, match="no time zone"):
        source.fetch_now("DE", NAIVE, AWARE + H, now=AWARE)


def test_decide_refuses_a_naive_waiting_until():
    """decide(waiting_until=naive) is refused like every other naive datetime."""
    with pytest.raises(ConfigurationError):
        _decide(waiting_until=NAIVE + H)


# -- clocks that jump while a gate waits ---------------------------------------------------------------

T0 = utc(2026, 6, 15)
STEP = timedelta(minutes=10)


def dip_at(hours: float, length: float = 1.0) -> StaticSource:
    """400 g/kWh around the clock, 100 g/kWh for ``length`` hours from T0 + ``hours``; never refreshed."""
    points = [(T0 - 6 * H + i * timedelta(minutes=30), 400.0) for i in range(96)]
    low = (T0 + hours * H, T0 + (hours + length) * H)
    points = [(t, 100.0 if low[0] <= t < low[1] else v) for t, v in points]
    return StaticSource({"DE": Forecast.from_points(points, zone="DE", source="dip", resolution=timedelta(minutes=30))})


def wait(source: StaticSource, clock: FrozenClock, deadline: datetime = T0 + 8 * H):
    gate = CarbonGate(zones="DE", deadline=deadline, expected_duration=H, source=source, check_interval=STEP)
    decisions = []
    final = asyncio.run(wait_for_window(gate, deadline=deadline, submitted_at=T0, clock=clock,
                                        on_decision=decisions.append))
    return final, decisions, latest_start(deadline, H, Policy())


def test_without_a_jump_the_gate_goes_at_the_window():
    """The baseline: it waits from T0 in steps of check_interval and goes at the dip, T0 + 5 h."""
    clock = JumpingClock(T0)
    final, decisions, latest = wait(dip_at(5), clock)
    assert latest == T0 + 6 * H + timedelta(minutes=54)
    assert [d.status for d in decisions] == ["wait", "go"] and final.decided_at == T0 + 5 * H
    assert len(clock.sleeps) == 30 and max(clock.sleeps) == STEP.total_seconds()


@pytest.mark.parametrize(
    ("jump_to", "status", "reason"),
    [
        (T0 + 7 * H, "forced", "deadline_at_risk"),  # six minutes past the latest start
        (T0 + 9 * H, "forced", "deadline_at_risk"),  # past the deadline itself
        (T0 + 6 * H + timedelta(minutes=54), "forced", "latest_start"),  # onto the latest start
        (T0 + 6 * H + timedelta(minutes=54, seconds=30), "forced", "latest_start"),  # within the wake-up tolerance
        (T0 + 5 * H + timedelta(minutes=15), "go", None),  # into the window
    ],
)
def test_a_clock_jumping_forward_starts_the_gate_at_once(jump_to, status, reason):
    """The clock jumps forward during the first sleep: the gate decides at once on waking, forced past the latest start."""
    clock = JumpingClock(T0, {1: jump_to})
    final, decisions, _ = wait(dip_at(5), clock)
    assert len(clock.sleeps) == 1 and clock.jumped_at == [(T0 + STEP, jump_to)]
    assert (final.status, final.forced_reason) == (status, reason)
    assert final.decided_at == jump_to and len(decisions) == 2


@pytest.mark.parametrize("back", [timedelta(minutes=30), 3 * H, 24 * H])
def test_a_clock_jumping_back_neither_starts_early_nor_waits_past_the_window(back):
    """The clock jumps back mid-wait: the gate re-reads it, keeps waiting, and goes exactly at the planned start."""
    clock = JumpingClock(T0, {3: T0 + 3 * STEP - back})
    final, decisions, _ = wait(dip_at(5), clock)
    assert (final.status, final.decided_at) == ("go", T0 + 5 * H)
    assert [d.status for d in decisions] == ["wait", "go"]
    assert max(clock.sleeps) <= STEP.total_seconds()
    assert sum(clock.sleeps) == pytest.approx((5 * H + back).total_seconds())


def test_a_clock_jumping_back_does_not_push_the_start_past_the_latest_start():
    """Waiting for a window that opens after the latest start, a backward jump still starts it at the latest start."""
    clock = JumpingClock(T0, {2: T0 - 2 * H})
    final, decisions, latest = wait(dip_at(7, 2), clock)  # 100 g/kWh from T0 + 7 h: the best start is the latest
    assert decisions[0].status == "wait" and decisions[0].plan.planned_start == latest
    assert (final.status, final.forced_reason, final.decided_at) == ("forced", "latest_start", latest)
    assert all(d.decided_at <= latest for d in decisions)


def test_jumps_both_ways_with_a_refreshing_source_never_pass_the_latest_start():
    """Forward, back and forward again with re-plans every 30 min: every decision at or before the latest start."""
    source = dip_at(7, 2)
    source.refresh_interval = timedelta(minutes=30)
    clock = JumpingClock(T0, {2: T0 + 4 * H, 5: T0 + H, 9: T0 + 6 * H + timedelta(minutes=50)})
    final, decisions, latest = wait(source, clock)
    assert all(d.decided_at <= latest for d in decisions)
    assert all(d.plan is None or d.plan.planned_start <= latest for d in decisions)
    assert all(d.next_check is None or d.next_check <= latest for d in decisions)
    assert (final.status, final.decided_at) == ("forced", latest)
    assert max(clock.sleeps) <= STEP.total_seconds() and not clock.jumps
