"""The carbon-sensors command: zones, forecast and plan, with clear errors."""

from __future__ import annotations

import json

import pytest

from carbon_sensors.cli import main, parse_span


@pytest.mark.parametrize(
    ("text", "seconds"), [("90m", 5400), ("1h30m", 5400), ("2d", 172800), ("1.5h", 5400), ("45min", 2700), ("600", 600)]
)
def test_parse_span(text, seconds):
    """Durations are read the way people write them."""
    assert parse_span(text).total_seconds() == seconds


def test_parse_span_refuses_nonsense():
    """An unreadable duration is a clear error, not a silent zero."""
    from carbon_sensors import ConfigurationError

    with pytest.raises(ConfigurationError, match="1h30m"):
        parse_span("soon")


def test_zones_lists_the_embedded_zones(capsys):
    """`zones --json` lists the ten embedded zones."""
    assert main(["zones", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 10


def test_plan_json_for_a_known_day(capsys):
    """`plan` prints the same plan the gate would make, as JSON."""
    assert main(["plan", "--zone", "GB", "--deadline", "+12h", "--duration", "2h", "--at", "2026-01-12T18:00Z", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["decision"] == "wait"
    assert result["planned_start"] == "2026-01-13T03:00:00+00:00"
    assert result["source"] == "embedded-profile" and result["signal"] == "average"


def test_plan_in_words(capsys):
    """Without --json, `plan` explains itself in words."""
    assert main(["plan", "--zone", "DE", "--zone", "GB", "--deadline", "+48h", "--duration", "6h",
                 "--at", "2026-06-15T00:00Z"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Waiting until 2026-06-15 10:00 UTC in GB")
    # Against the best start-now option (GB now, 222), not DE now (464): the saving of waiting.
    assert "vs 222 starting now in GB (464 in DE)" in out
    assert "expected saving 22.9% vs starting now in GB" in out


def test_forecast_from_a_file(capsys, shared_data):
    """`forecast --source FILE` reads a real trace with recognised column names."""
    path = shared_data / "carbon" / "DE_2021-2023_hourly.csv"
    assert main(["forecast", "--zone", "DE", "--source", str(path), "--at", "2022-06-15T00:00Z", "--hours", "3h",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["points"]) == 3 and result["source"] == "file:DE_2021-2023_hourly.csv"


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["plan", "--zone", "XX", "--deadline", "+4h", "--duration", "1h"], "no zone 'XX'"),
        (["plan", "--zone", "DE", "--deadline", "2020-01-01T00:00Z", "--duration", "1h"], "already past"),
        (["plan", "--zone", "DE", "--deadline", "2030-01-01T00:00", "--duration", "1h"], "no time zone"),
        (["forecast", "--zone", "DE", "--source", "/nonexistent/x.csv"], "cannot read"),
    ],
)
def test_errors_are_one_clear_line_and_exit_2(capsys, argv, phrase):
    """Bad input prints one line saying what to do, and exits with status 2."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("carbon-sensors: error:") and phrase in err


def test_plan_blends_with_the_measured_past_as_the_gate_does(capsys, monkeypatch):
    """`plan` on a source that serves measured history plans on the blend, as a gate would."""
    from datetime import timedelta

    import carbon_sensors.cli as cli
    from carbon_sensors.forecast import Forecast
    from carbon_sensors.signals import EmbeddedProfileSource

    class Measuring(EmbeddedProfileSource):
        async def fetch_measured(self, zone, start, end, *, now):
            hours = [start + timedelta(hours=k) for k in range(int((now - start) / timedelta(hours=1)))]
            return Forecast.from_points([(t, 250.0) for t in hours], zone=zone, source="measured",
                                        resolution=timedelta(hours=1), measured_until=now)

        async def fetch(self, zone, start, end, *, now):
            base = await super().fetch(zone, start, end, now=now)
            return Forecast(zone=base.zone, source="profile", signal=base.signal, issued_at=base.issued_at,
                            starts_s=base.starts_s, values=base.values, end_s=base.end_s, error_24h=0.1)

    monkeypatch.setattr(cli, "_source", lambda args: Measuring())
    args = ["plan", "--zone", "GB", "--deadline", "+12h", "--duration", "2h", "--at", "2026-01-12T18:00Z", "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["source"] == "profile + persistence"
