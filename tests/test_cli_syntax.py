"""The CLI speaks CLI: its errors name flags and CLI syntax, never Python calls (issue: the first hour)."""

from __future__ import annotations

import re

import pytest

from carbon_sensors.cli import main
from carbon_sensors.cli_syntax import parse_span

PYTHON_ADVICE = re.compile(r"datetime\(|tzinfo|timezone=|_column=|pendulum|Policy\(")


def error_of(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("carbon-sensors: error:") and err.count("\n") == 1
    assert not PYTHON_ADVICE.search(err), err
    return err


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["plan", "--zone", "DE", "--deadline", "2026-12-03T06:00", "--duration", "1h"],
         "--deadline 2026-12-03T06:00Z for UTC"),
        (["plan", "--zone", "DE", "--deadline", "8h", "--duration", "1h"], "write --deadline +8h"),
        (["plan", "--zone", "de", "--deadline", "+8h", "--duration", "1h"], "did you mean --zone DE?"),
        (["plan", "--zone", "DE", "--deadline", "+8h", "--duration", "+1h", "--at", "2026-01-12T18:00Z"],
         "--duration 1h"),
        (["plan", "--zone", "DE", "--deadline", "+8h", "--duration", "1h", "--at", "2026-01-12T18:00"],
         "--at 2026-01-12T18:00Z"),
        (["forecast", "--zone", "DE", "--hours", "soon"], "cannot read --hours 'soon'"),
    ],
)
def test_cli_errors_name_cli_syntax(capsys, argv, phrase):
    """Naive times, a missing '+', a zone in the wrong case: the fix is given as flags and CLI values."""
    assert phrase in error_of(capsys, argv)


def test_simulate_advises_only_flags_it_has_and_they_work(capsys, tmp_path):
    """`simulate` names --time-column/--value-column/--timezone in its advice, and those flags read the file."""
    trace = tmp_path / "DE_trace.csv"
    trace.write_text("ts,gco2\n" + "".join(f"2026-01-{1 + h // 24:02d} {h % 24:02d}:00,{300 + (h % 24) * 5}\n"
                                           for h in range(24 * 4)))
    assert "--time-column and --value-column" in error_of(capsys, ["simulate", "--trace", str(trace)])
    err = error_of(capsys, ["simulate", "--trace", str(trace), "--time-column", "ts", "--value-column", "gco2"])
    assert "--timezone UTC" in err
    assert main(["simulate", "--trace", str(trace), "--time-column", "ts", "--value-column", "gco2",
                 "--timezone", "UTC", "--workload", "nightly_enrichment", "--seeds", "1", "--workers", "1",
                 "--json"]) == 0
    assert '"nightly_enrichment"' in capsys.readouterr().out


@pytest.mark.parametrize(
    ("deadline", "duration", "phrase"),
    [
        ("+1h", "90min", "--duration 90min does not fit in the 1h before --deadline +1h"),
        ("+1h", "1h", "--duration 1h does not fit in the 1h before --deadline +1h"),
        ("+65min", "1h", "--duration 1h fits in the 65min before --deadline +65min, but its safety margin of 6min"),
    ],
)
def test_a_duration_that_does_not_fit_is_an_error_as_in_python(capsys, deadline, duration, phrase):
    """As CarbonGate refuses it at parse time, `plan` refuses a job that cannot finish, naming the margin."""
    err = error_of(capsys, ["plan", "--zone", "DE", "--deadline", deadline, "--duration", duration,
                            "--at", "2026-01-12T18:00Z"])
    assert phrase in err


def test_durations_print_as_written(capsys):
    """The plan says "the 90min window", the way the user wrote --duration."""
    assert main(["plan", "--zone", "DE", "--deadline", "+8h", "--duration", "90min", "--at", "2026-01-12T18:00Z"]) == 0
    out = capsys.readouterr().out
    assert "90min" in out and "1h30m" not in out
    assert str(parse_span("1h", "--duration")) == "1h"


def test_forecast_hours_gives_that_many_rows_and_bars_show_a_dip(capsys):
    """`--hours 24h` prints 24 rows; bars start near the lowest value, so small differences are visible."""
    assert main(["forecast", "--zone", "DE", "--hours", "24h", "--at", "2026-12-02T18:42Z"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = lines[1:]
    assert len(rows) == 24 and rows[0].startswith("2026-12-02 18:00 UTC")
    bars = [row.count("█") for row in rows]
    values = [float(row.split()[3]) for row in rows]
    assert "bars start at" in lines[0]
    lo, hi = values.index(min(values)), values.index(max(values))
    assert bars[hi] >= 2 * bars[lo]  # from zero, 450 vs 478 would be 28 vs 30 blocks


@pytest.mark.parametrize("text", ["90m", "90min", "1h30m", "2d", "1.5h", "3600", "1d2h3m"])
def test_the_cli_and_the_core_read_spans_alike(text):
    """One grammar: the CLI's span is the core's, with the spelling kept."""
    from carbon_sensors.timeutil import parse_span as core_span

    assert parse_span(text) == core_span(text) and str(parse_span(text)) == text


@pytest.mark.parametrize("text", ["soon", "8 hours", "h", ""])
def test_the_cli_and_the_core_refuse_the_same_spans(text):
    from carbon_sensors.errors import ConfigurationError
    from carbon_sensors.timeutil import parse_span as core_span

    with pytest.raises(ConfigurationError, match="90m, 90min, 1h30m, 2d or 3600"):
        core_span(text)
    with pytest.raises(ConfigurationError, match="90m, 90min, 1h30m, 2d or 3600"):
        parse_span(text)
