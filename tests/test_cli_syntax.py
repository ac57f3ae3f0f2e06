"""The CLI speaks CLI: its errors name flags and CLI syntax, never Python calls (issue: the first hour)."""

from __future__ import annotations

import json
import re
from dataclasses import fields

import pytest

from carbon_sensors.cli import main
from carbon_sensors.cli_syntax import parse_span
from carbon_sensors.planning import Policy

# Python in an error: a call, a keyword, or a setting's Python name where the command line has a flag
# (``min_saving_pct must be in [0, 100)``: any snake_case name that "must", any Policy field's name).
SNAKE_FIELDS = "|".join(f.name for f in fields(Policy) if "_" in f.name)
WORD_FIELDS = "|".join(f.name for f in fields(Policy) if "_" not in f.name)
PYTHON_ADVICE = re.compile(
    r"datetime\(|tzinfo|timezone=|_column=|pendulum|Policy\("
    r"|(?<![-\w])[a-z][a-z0-9]*(?:_[a-z0-9]+)+ must\b"
    rf"|(?<![-\w])(?:{SNAKE_FIELDS})\b|(?<![-\w])(?:{WORD_FIELDS}) must\b"
)


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
        # exactly as long as the slack: the job itself fits, its safety margin is what does not
        ("+1h", "1h", "--duration 1h fits in the 1h before --deadline +1h, but its safety margin of 6min does not"),
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


@pytest.fixture
def gco2_csv(tmp_path):
    """A forecast file whose columns are `ts` and `gco2` (neither a recognised name)."""
    path = tmp_path / "x.csv"
    path.write_text("ts,gco2\n2026-01-12T18:00Z,300\n2026-01-12T19:00Z,310\n")
    return path


@pytest.mark.parametrize(
    ("flag", "given", "phrase"),
    [("--value-column", "gco", "(did you mean --value-column gco2?)"),
     ("--time-column", "tss", "(did you mean --time-column ts?)")],
)
def test_a_column_hint_names_the_column_flag_not_zone(capsys, gco2_csv, flag, given, phrase):
    """A misspelt column is hinted with the flag that takes it; only a zone hint says --zone."""
    err = error_of(capsys, ["forecast", "--zone", "DE", "--source", str(gco2_csv), flag, given,
                            "--at", "2026-01-12T18:00Z"])
    assert phrase in err and "--zone" not in err


def test_a_hint_about_nothing_the_cli_sets_names_the_value_itself():
    from carbon_sensors.cli_syntax import cli_wording

    message = "x.csv has no zone column 'zn'; its columns are ts, zone (did you mean 'zone'?)"
    assert cli_wording(message).endswith("(did you mean 'zone'?)")
    assert cli_wording("the embedded profile has no zone 'de' (did you mean 'DE'?); it knows DE") == (
        "the embedded profile has no zone 'de' (did you mean --zone DE?); it knows DE")


PLAN = ["plan", "--zone", "DE", "--deadline", "+8h", "--duration", "1h", "--at", "2026-01-12T18:00Z"]


@pytest.mark.parametrize(
    ("extra", "phrase"),
    [
        (["--min-saving-pct", "150"], "--min-saving-pct must be in [0, 100), got 150"),
        (["--min-saving-pct", "-1"], "--min-saving-pct must be in [0, 100)"),
        (["--threshold", "-5"], "--threshold must be a non-negative number of gCO2eq/kWh"),
        (["--max-delay", "4"], "--max-delay 4 has no unit; add one: --max-delay 4min, 4h or 4d"),
        (["--max-delay=-5"], "--max-delay -5 must be zero or longer"),
        (["--safety-margin", "10"], "--safety-margin 10 has no unit"),
        (["--safety-margin", "soon"], "cannot read --safety-margin 'soon'; write e.g. 90m, 90min, 1h30m or 2d"),
    ],
)
def test_plan_settings_are_named_by_their_flags(capsys, extra, phrase):
    """A policy setting out of range names its flag (--min-saving-pct), never the Python name."""
    err = error_of(capsys, [*PLAN, *extra])
    assert phrase in err and "3600 (seconds)" not in err


@pytest.fixture
def trace(tmp_path):
    path = tmp_path / "DE_trace.csv"
    path.write_text("datetime_utc,carbon_intensity\n" + "".join(
        f"2026-01-{1 + h // 24:02d} {h % 24:02d}:00,{300 + (h % 24) * 5}\n" for h in range(24 * 4)))
    return path


@pytest.mark.parametrize(
    ("extra", "phrase"),
    [
        (["--min-saving-pct", "150"], "--min-saving-pct must be in [0, 100)"),
        (["--max-cost-increase-pct", "-200"], "--max-cost-increase-pct must be a number >= -100"),
        (["--max-intensity", "-1"], "--max-intensity must be a number >= 0"),
        (["--carbon-price-per-tonne", "-5"], "--carbon-price-per-tonne must be a number >= 0"),
        (["--power-kw", "0"], "--power-kw positive"),
        (["--price-sigma24", "-1"], "--price-sigma24 must be >= 0"),
        (["--sigma24", "-1"], "--sigma24 must be >= 0 and --rho within (-1, 1)"),
        (["--max-cost-increase-pct", "10"], "--max-cost-increase-pct but there is no price trace; pass a --price-trace"),
    ],
)
def test_simulate_settings_are_named_by_their_flags(capsys, trace, extra, phrase):
    err = error_of(capsys, ["simulate", "--trace", str(trace), "--workload", "nightly_enrichment", "--seeds", "1",
                            "--workers", "1", *extra])
    assert phrase in err


@pytest.mark.parametrize(("hours", "rows"), [("24", 24), ("24h", 24), ("2", 2), ("1.5", 2), ("90min", 2), ("2d", 48)])
def test_forecast_hours_is_hours_and_spans_still_work(capsys, hours, rows):
    """`--hours 24` is 24 hours (24 rows), not 24 seconds; `24h`, `90min` and `2d` read as before."""
    assert main(["forecast", "--zone", "DE", "--hours", hours, "--at", "2026-12-02T18:42Z"]) == 0
    assert len(capsys.readouterr().out.splitlines()[1:]) == rows


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["forecast", "--zone", "DE", "--hours=-3"], "--hours -3 must be zero or longer, e.g. --hours 24"),
        (["forecast", "--zone", "DE", "--hours", "0"], "--hours 0 must be longer than zero, e.g. --hours 24"),
        (["forecast", "--zone", "DE", "--hours", "soon"], "write e.g. 24 (hours), 90m"),
        (["plan", "--zone", "DE", "--deadline", "+8h", "--duration", "6"], "--duration 6 has no unit"),
        (["plan", "--zone", "DE", "--deadline", "+8", "--duration", "1h"],
         "--deadline +8 has no unit; add one: --deadline +8min, +8h or +8d"),
        (["plan", "--zone", "DE", "--deadline", "+8h", "--duration", "1h", "--at", "+2"], "--at +2 has no unit"),
        (["report", "--since", "30"], "--since 30 has no unit; add one: --since 30min, 30h or 30d"),
        (["report", "--since", "2d", "--until", "12"], "--until 12 has no unit"),
    ],
)
def test_a_bare_number_is_never_silently_seconds(capsys, argv, phrase):
    """`--duration 6` could be six seconds or six hours: the CLI asks for the unit instead of guessing."""
    assert phrase in error_of(capsys, argv)


@pytest.mark.parametrize(
    ("extra", "status"),
    [([], "wait"), (["--max-delay", "0"], "go"), (["--threshold", "900"], "go"), (["--deadline", "+66min"], "forced")],
)
def test_plan_in_words_says_status_as_json_does(capsys, extra, status):
    """The text output speaks the decision's vocabulary: `status  wait|go|forced`, as `--json` does."""
    assert main([*PLAN, *extra]) == 0
    text = capsys.readouterr().out
    assert main([*PLAN, *extra, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == status
    assert re.search(rf"^  status +{status}$", text, re.MULTILINE), text
    assert "decision" not in text and "run_now" not in text
