"""Real forecast archives for backtests: what they refuse, and the NESO sample's archive end to end."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from carbon_sensors.errors import SourceDataError
from carbon_sensors.forecast_archive import ForecastArchive

ROOT = Path(__file__).resolve().parent.parent
HEADER = "issued_at,target_time,value\n"


def _archive(tmp_path: Path, rows: str) -> Path:
    path = tmp_path / "archive.csv"
    path.write_text(HEADER + rows)
    return path


def test_the_latest_forecast_issued_by_a_time_serves_it(tmp_path):
    path = _archive(tmp_path, "2023-03-15T01:00Z,2023-03-15T01:00Z,180\n2023-03-15T01:00Z,2023-03-15T02:00Z,170\n"
                              "2023-03-15T03:00Z,2023-03-15T03:00Z,150\n2023-03-15T03:00Z,2023-03-15T04:00Z,140\n")
    archive = ForecastArchive(path, "GB")
    at_2 = archive.issued_at(datetime(2023, 3, 15, 2, 30, tzinfo=UTC).timestamp())
    assert at_2.values == (180.0, 170.0) and at_2.issued_at == datetime(2023, 3, 15, 1, tzinfo=UTC)
    assert archive.issued_at(datetime(2023, 3, 15, 3, tzinfo=UTC).timestamp()).values == (150.0, 140.0)
    assert archive.describe() == "2 issue times (2023-03-15 01:00 UTC to 2023-03-15 03:00 UTC), 4 targets in 60 min slots"


@pytest.mark.parametrize(("rows", "phrase"), [
    ("2023-03-15T01:00Z,2023-03-15T01:00Z,180\n2023-03-15T01:00Z,2023-03-15T01:00Z,181\n",
     r"line 3: a second value for 2023-03-15 01:00 UTC issued at 2023-03-15 01:00 UTC; keep one row"),
    ("2023-03-15T01:00Z,2023-03-15T01:00Z,180\n2023-03-15T01:00Z,2023-03-15T02:00Z,170\n"
     "2023-03-15T01:00Z,2023-03-15T04:00Z,160\n", r"jumps from 2023-03-15 02:00 UTC to 2023-03-15 04:00 UTC.*fill the gap"),
    ("2023-03-15T05:00Z,2023-03-15T01:00Z,180\n2023-03-15T05:00Z,2023-03-15T02:00Z,170\n",
     r"a target at 2023-03-15 01:00 UTC, a slot that had ended when it was issued"),
    ("2023-03-15T01:00Z,2023-03-15T01:00Z,lots\n", r"line 2: .*two times and a number"),
    ("", r"has no rows"),
])
def test_an_archive_with_duplicates_gaps_hindcasts_or_junk_is_refused_saying_what_to_fix(tmp_path, rows, phrase):
    with pytest.raises(SourceDataError, match=phrase):
        ForecastArchive(_archive(tmp_path, rows), "GB")


def test_an_archive_without_its_columns_names_them(tmp_path):
    path = tmp_path / "archive.csv"
    path.write_text("issued,target,value\n2023-03-15T01:00Z,2023-03-15T01:00Z,180\n")
    with pytest.raises(SourceDataError, match=r"lacks column.*issued_at, target_time"):
        ForecastArchive(path, "GB")


@pytest.mark.integration
def test_the_neso_sample_s_archive_runs_every_strategy_without_a_caused_miss(tmp_path, shared_data):
    """bench/real_forecasts.py: the archive a gate could have known (94 half-hourly issues), every strategy, 0 caused misses."""
    spec = importlib.util.spec_from_file_location("real_forecasts", ROOT / "bench" / "real_forecasts.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    archive, actual = tmp_path / "archive.csv", tmp_path / "actual.csv"
    issues = bench.build_archive(shared_data / "forecasts" / "GB_national_2023-03-15_fw48h_vs_actual.csv",
                                 archive, actual)
    assert issues == 94
    loaded = ForecastArchive(archive, "GB")
    first = loaded.issued_at(datetime(2023, 3, 15, 1, 1, tzinfo=UTC).timestamp())
    later = loaded.issued_at(datetime(2023, 3, 16, 1, 1, tzinfo=UTC).timestamp())
    assert len(first.values) == 96 and len(later.values) == 48  # from the current slot to the sample's end
    assert later.values[-1] != first.values[-1]  # by then the final (24 h ahead) forecast replaced the 48 h one
    out = bench.run(archive, actual, seeds=1)
    assert "94 issue times" in out["forecast_model"]
    strategies = {r["strategy"] for r in out["results"]}
    assert strategies == {"now", "commit_once", "replan", "carbon_sensors", "oracle"}
    assert sum(r["caused_misses"] for r in out["results"]) == 0
    assert all(0.0 <= s["carbon_sensors"]["fraction_of_oracle"] <= 1.0 for s in out["summary"].values())
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "real_forecasts.py")], capture_output=True, text=True,
                          timeout=300, check=True)
    *document, summary = done.stdout.strip().splitlines()
    assert json.loads("\n".join(document))["issue_times"] == 94 and summary.startswith("real archive (94 issue times")
