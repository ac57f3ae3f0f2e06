"""Tests for carbon_sensors.signals.file.FileSource on real data files and on small hand-written files."""

from __future__ import annotations

import asyncio
import csv
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from carbon_sensors.errors import (
    CarbonSensorsError,
    ConfigurationError,
    ForecastCoverageError,
    InvalidForecastError,
    SourceDataError,
    UnknownZoneError,
)
from carbon_sensors.forecast import Forecast
from carbon_sensors.signals import EmbeddedProfileSource, FileSource, Source, run_sync, source_from_spec

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
DE_CSV = DATA / "carbon" / "DE_2021-2023_hourly.csv"
GB_FORECAST_CSV = DATA / "forecasts" / "GB_national_2023-03-15_fw48h_vs_actual.csv"
GB_FORECAST_COLUMN = "forecast_issued_2023-03-15T01:01Z"

H = timedelta(hours=1)
M = timedelta(minutes=1)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"real data file {path} is absent (expected the shared/data folder next to the repository)")
    return path


def fetch(source: FileSource, zone: str, start: datetime, end: datetime) -> Forecast:
    return run_sync(source.fetch(zone, start, end, now=end))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def de_source() -> FileSource:
    return FileSource(need(DE_CSV))


@pytest.fixture(scope="module")
def de_rows() -> dict[str, dict[str, str]]:
    with need(DE_CSV).open(newline="") as f:
        return {row["datetime_utc"]: row for row in csv.DictReader(f)}


# -- the real DE hourly CSV -----------------------------------------------------------------------


def test_de_csv_autodetects_datetime_utc_and_prefers_lifecycle_column(de_source, de_rows):
    """The DE CSV is read via datetime_utc (naive, taken as UTC) and ci_lifecycle_gco2eq_per_kwh, not the direct one."""
    start = utc(2022, 7, 1, 12)
    f = fetch(de_source, "DE", start, start + 4 * H)
    expected = [float(de_rows[f"2022-07-01 {h}:00:00"]["ci_lifecycle_gco2eq_per_kwh"]) for h in (12, 13, 14, 15)]
    direct = [float(de_rows[f"2022-07-01 {h}:00:00"]["ci_direct_gco2eq_per_kwh"]) for h in (12, 13, 14, 15)]
    assert list(f.values) == expected
    assert expected[0] == 439.49  # a known value from the file, read independently above
    assert list(f.values) != direct
    assert f.start == start and f.end == start + 4 * H
    assert [t for t, _ in f.points()] == [start + i * H for i in range(4)]
    assert (f.zone, f.source, f.signal) == ("DE", "file:DE_2021-2023_hourly.csv", "average")


def test_de_csv_covers_three_years_without_gaps(de_source, de_rows):
    """The whole 2021-2023 range comes back as 26,280 hourly points ending at 2024-01-01 00:00 UTC."""
    f = de_source.fetch_now("DE", utc(2021, 1, 1), utc(2024, 1, 1), now=utc(2024, 1, 1))
    assert len(f.values) == len(de_rows) == 26280
    assert f.start == utc(2021, 1, 1) and f.end == utc(2024, 1, 1)
    last = de_rows["2023-12-31 23:00:00"]["ci_lifecycle_gco2eq_per_kwh"]
    assert f.value_at(utc(2023, 12, 31, 23, 30)) == float(last)


def test_de_csv_unaligned_window_is_widened_to_whole_slots(de_source, de_rows):
    """A window starting and ending mid-hour gets the slots that contain its ends."""
    f = fetch(de_source, "DE", utc(2023, 3, 1, 10, 20), utc(2023, 3, 1, 12, 40))
    assert f.start == utc(2023, 3, 1, 10) and f.end == utc(2023, 3, 1, 13)
    assert f.values[0] == float(de_rows["2023-03-01 10:00:00"]["ci_lifecycle_gco2eq_per_kwh"])


def test_de_csv_direct_column_by_name(de_rows):
    """value_column= picks another column of the same file."""
    source = FileSource(need(DE_CSV), value_column="ci_direct_gco2eq_per_kwh")
    f = source.fetch_now("DE", utc(2022, 7, 1, 12), utc(2022, 7, 1, 13), now=utc(2022, 7, 1, 12))
    assert f.values == (float(de_rows["2022-07-01 12:00:00"]["ci_direct_gco2eq_per_kwh"]),)


def test_de_csv_fetch_with_asyncio_run(de_source):
    """fetch() is a coroutine that asyncio.run can drive directly."""
    f = asyncio.run(de_source.fetch("DE", utc(2021, 1, 1), utc(2021, 1, 1, 2), now=utc(2021, 1, 1)))
    assert f.values == (526.77, 533.4)


def test_run_sync_works_inside_a_running_event_loop(de_source):
    """run_sync can be called from code that already runs inside an event loop."""

    async def caller() -> Forecast:
        return run_sync(de_source.fetch("DE", utc(2021, 1, 1), utc(2021, 1, 1, 1), now=utc(2021, 1, 1)))

    assert asyncio.run(caller()).values == (526.77,)


def test_file_source_satisfies_source_protocol(de_source):
    """FileSource is a Source (runtime-checkable protocol) with kind 'file'."""
    assert isinstance(de_source, Source)
    assert de_source.kind == "file" and de_source.refresh_interval == H


# -- the real GB 30-minute forecast CSV -----------------------------------------------------------


@pytest.fixture(scope="module")
def gb_rows() -> list[dict[str, str]]:
    with need(GB_FORECAST_CSV).open(newline="") as f:
        return list(csv.DictReader(f))


def test_gb_forecast_csv_actual_column(gb_rows):
    """The GB file reads from_utc (with Z) and value_column='actual' in 30-minute slots."""
    source = FileSource(GB_FORECAST_CSV, value_column="actual")
    f = fetch(source, "GB", utc(2023, 3, 15, 1), utc(2023, 3, 15, 3))
    assert f.values == (184.0, 183.0, 185.0, 184.0)
    assert f.start == utc(2023, 3, 15, 1) and f.end == utc(2023, 3, 15, 3)
    assert f.window_mean(utc(2023, 3, 15, 1), H) == pytest.approx((184 + 183) / 2)
    whole = fetch(source, "GB", utc(2023, 3, 15, 1), utc(2023, 3, 17, 1))
    assert list(whole.values) == [float(r["actual"]) for r in gb_rows]
    assert whole.end == datetime.fromisoformat(gb_rows[-1]["to_utc"].replace("Z", "+00:00"))
    assert whole.end == utc(2023, 3, 17, 1)


def test_gb_forecast_csv_autodetects_from_utc_and_actual(gb_rows):
    """Without column names, from_utc and actual are the recognised columns."""
    auto = fetch(FileSource(need(GB_FORECAST_CSV)), "GB", utc(2023, 3, 15, 1), utc(2023, 3, 17, 1))
    assert list(auto.values) == [float(r["actual"]) for r in gb_rows]


def test_gb_forecast_csv_forecast_column_matches_published_error(gb_rows):
    """The 48 h forecast column reads back and misses the actual by the README's 21.6 g/kWh MAE."""
    start, end = utc(2023, 3, 15, 1), utc(2023, 3, 17, 1)
    forecast = fetch(FileSource(GB_FORECAST_CSV, value_column=GB_FORECAST_COLUMN), "GB", start, end)
    actual = fetch(FileSource(GB_FORECAST_CSV, value_column="actual"), "GB", start, end)
    assert forecast.values[:4] == (178.0, 182.0, 190.0, 198.0)
    assert list(forecast.values) == [float(r[GB_FORECAST_COLUMN]) for r in gb_rows]
    assert forecast.starts_s == actual.starts_s
    mae = sum(abs(a - b) for a, b in zip(forecast.values, actual.values, strict=True)) / len(actual.values)
    assert round(mae, 1) == 21.6


# -- Parquet --------------------------------------------------------------------------------------


def test_parquet_with_aware_timestamps(tmp_path):
    """A Parquet file with a tz-aware timestamp column and nulls (gaps) is read like a CSV."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    times = [T0 + i * 30 * M for i in range(5)]
    table = pa.table({
        "timestamp": pa.array(times, type=pa.timestamp("s", tz="UTC")),
        "carbon_intensity": pa.array([120.5, 130.0, None, 90.25, 80.0], type=pa.float64()),
    })
    path = tmp_path / "intensity.parquet"
    pq.write_table(table, path)
    f = fetch(FileSource(path), "DE", T0, T0 + 150 * M)
    assert f.values == (120.5, 130.0, 90.25, 80.0)
    assert [t for t, _ in f.points()] == [times[0], times[1], times[3], times[4]]
    assert f.end == T0 + 150 * M
    assert f.source == "file:intensity.parquet"


def test_parquet_with_naive_utc_column_and_zone_column(tmp_path):
    """A .pq file with naive datetime_utc values and a zone column serves each zone its own rows."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    naive = [datetime(2026, 1, 1, h) for h in (0, 0, 1, 1)]
    table = pa.table({
        "datetime_utc": pa.array(naive, type=pa.timestamp("ms")),
        "zone": ["DE", "FR", "DE", "FR"],
        "intensity": [400.0, 50.0, 410.0, 55.0],
    })
    path = tmp_path / "zones.pq"
    pq.write_table(table, path)
    source = FileSource(path)
    assert fetch(source, "DE", T0, T0 + 2 * H).values == (400.0, 410.0)
    assert fetch(source, "FR", T0, T0 + 2 * H).values == (50.0, 55.0)
    assert fetch(source, "FR", T0, T0 + 2 * H).start == T0


# -- hand-written CSVs ----------------------------------------------------------------------------


def test_custom_column_names_with_offsets(tmp_path):
    """time_column/value_column name unusual columns, and ISO offsets are honoured."""
    path = write(tmp_path / "custom.csv", "ts,gco2,other\n"
                 "2026-01-01T01:00:00+01:00,300,x\n2026-01-01T02:00:00+01:00,200,y\n2026-01-01T03:00:00+01:00,100,z\n")
    source = FileSource(path, time_column="ts", value_column="gco2")
    f = fetch(source, "XX", T0, T0 + 3 * H)
    assert f.start == T0 and f.values == (300.0, 200.0, 100.0)
    assert f.zone == "XX"  # a file without a zone column serves whichever zone asks


def test_named_column_that_does_not_exist_lists_the_columns(tmp_path):
    """A named column that is absent is a SourceDataError that lists the file's columns."""
    path = write(tmp_path / "custom.csv", "ts,gco2\n2026-01-01T00:00:00Z,1\n")
    with pytest.raises(SourceDataError, match="no intensity column 'co2'; its columns are ts, gco2"):
        fetch(FileSource(path, time_column="ts", value_column="co2"), "DE", T0, T0 + H)


def test_zone_column_serves_two_zones(tmp_path):
    """A zone column splits rows per zone; an absent zone is an UnknownZoneError listing the zones held."""
    path = write(tmp_path / "zones.csv", "datetime_utc,zone,carbon_intensity\n"
                 "2026-01-01 00:00:00,DE,400\n2026-01-01 00:00:00,FR,50\n"
                 "2026-01-01 01:00:00,DE,380\n2026-01-01 01:00:00,FR,60\n"
                 "2026-01-01 02:00:00,DE,360\n")
    source = FileSource(path)
    de = fetch(source, "DE", T0, T0 + 3 * H)
    fr = fetch(source, "FR", T0, T0 + 2 * H)
    assert (de.zone, de.values) == ("DE", (400.0, 380.0, 360.0))
    assert (fr.zone, fr.values) == ("FR", (50.0, 60.0))
    with pytest.raises(UnknownZoneError, match="no rows for zone 'PL'; it holds DE, FR"):
        fetch(source, "PL", T0, T0 + H)


def test_custom_zone_column_name(tmp_path):
    """zone_column= names a zone column with an unusual name."""
    path = write(tmp_path / "zones.csv", "datetime_utc,bidding_zone,carbon_intensity\n"
                 "2026-01-01 00:00:00,SE1,20\n2026-01-01 00:00:00,SE4,120\n")
    source = FileSource(path, zone_column="bidding_zone")
    assert fetch(source, "SE4", T0, T0 + H).values == (120.0,)


def test_zone_argument_refuses_other_zones(tmp_path):
    """With zone= set, asking for another zone is an UnknownZoneError before the file is read."""
    path = write(tmp_path / "de.csv", "datetime_utc,carbon_intensity\n2026-01-01 00:00:00,1\n")
    source = FileSource(path, zone="DE")
    assert fetch(source, "DE", T0, T0 + H).values == (1.0,)
    with pytest.raises(UnknownZoneError, match="holds zone 'DE', not 'FR'; point this zone at its own file"):
        fetch(source, "FR", T0, T0 + H)
    with pytest.raises(UnknownZoneError):
        source.check_zone("FR")
    source.check_zone("DE")


def test_naive_timestamps_without_utc_column_name_raise_source_data_error(tmp_path):
    """Naive times in a column not named ..._utc are refused, pointing at timezone= and the line."""
    path = write(tmp_path / "naive.csv", "timestamp,carbon_intensity\n2026-01-01 00:00:00,100\n")
    with pytest.raises(SourceDataError, match="line 2: time '2026-01-01 00:00:00' has no offset") as info:
        fetch(FileSource(path), "DE", T0, T0 + H)
    assert "timezone='UTC'" in str(info.value)


def test_timezone_argument_converts_naive_local_times(tmp_path):
    """timezone='Europe/Berlin' reads naive times as Berlin time: +01:00 in winter, +02:00 in summer."""
    path = write(tmp_path / "local.csv", "timestamp,carbon_intensity\n"
                 "2026-01-15 12:00:00,100\n2026-01-15 13:00:00,110\n"
                 "2026-07-15 12:00:00,200\n2026-07-15 13:00:00,210\n")
    source = FileSource(path, timezone="Europe/Berlin")
    winter = fetch(source, "DE", utc(2026, 1, 15, 11), utc(2026, 1, 15, 13))
    assert winter.start == utc(2026, 1, 15, 11) and winter.values[:2] == (100.0, 110.0)
    summer = fetch(source, "DE", utc(2026, 7, 15, 10), utc(2026, 7, 15, 12))
    assert summer.start == utc(2026, 7, 15, 10) and summer.values == (200.0, 210.0)


def test_timezone_argument_does_not_override_explicit_offsets(tmp_path):
    """Times that carry an offset keep it even when timezone= is given."""
    path = write(tmp_path / "mixed.csv", "timestamp,carbon_intensity\n2026-01-15T12:00:00+00:00,100\n")
    f = fetch(FileSource(path, timezone="Europe/Berlin"), "DE", utc(2026, 1, 15, 12), utc(2026, 1, 15, 13))
    assert f.start == utc(2026, 1, 15, 12)


def test_unknown_timezone_raises_a_package_error(tmp_path):
    """An unknown timezone= is reported as a carbon_sensors error, at construction or at fetch."""
    path = write(tmp_path / "local.csv", "timestamp,carbon_intensity\n2026-01-15 12:00:00,100\n")
    with pytest.raises(CarbonSensorsError, match="Europe/Atlantis"):
        fetch(FileSource(path, timezone="Europe/Atlantis"), "DE", utc(2026, 1, 15), utc(2026, 1, 16))


@pytest.mark.parametrize(
    ("header", "missing"),
    [("when,co2", "time or intensity"), ("datetime_utc,co2", "intensity"), ("when,carbon_intensity", "time")],
)
def test_missing_columns_raise_source_data_error_listing_columns(tmp_path, header, missing):
    """Without recognisable columns the error says which are missing, lists the columns and how to name them."""
    path = write(tmp_path / "bad.csv", f"{header}\n2026-01-01T00:00:00Z,1\n")
    with pytest.raises(SourceDataError, match=f"has no {missing} column among {header.replace(',', ', ')}") as info:
        fetch(FileSource(path), "DE", T0, T0 + H)
    assert "time_column= and value_column=" in str(info.value)


def test_duplicate_timestamps_raise_source_data_error(tmp_path):
    """Two rows for one time (even written with different offsets) are refused."""
    path = write(tmp_path / "dup.csv", "timestamp,carbon_intensity\n"
                 "2026-01-01T00:00:00Z,1\n2026-01-01T02:00:00+01:00,2\n2026-01-01T01:00:00+00:00,3\n")
    with pytest.raises(SourceDataError, match=r"two rows for 2026-01-01T01:00:00\+00:00; keep one row per time"):
        fetch(FileSource(path), "DE", T0, T0 + H)


def test_duplicate_timestamps_in_one_zone_name_the_zone(tmp_path):
    """A duplicate inside one zone of a multi-zone file names that zone."""
    path = write(tmp_path / "dup.csv", "datetime_utc,zone,carbon_intensity\n"
                 "2026-01-01 00:00:00,DE,1\n2026-01-01 00:00:00,FR,2\n2026-01-01 00:00:00,FR,3\n")
    with pytest.raises(SourceDataError, match="in zone 'FR'"):
        fetch(FileSource(path), "DE", T0, T0 + H)


def test_non_numeric_value_raises_source_data_error_with_line_number(tmp_path):
    """A non-numeric intensity is refused with its line number."""
    path = write(tmp_path / "bad.csv", "datetime_utc,carbon_intensity\n"
                 "2026-01-01 00:00:00,100\n2026-01-01 01:00:00,n/a\n")
    with pytest.raises(SourceDataError, match="line 3: intensity 'n/a' is not a number"):
        fetch(FileSource(path), "DE", T0, T0 + 2 * H)


def test_bad_timestamp_raises_source_data_error_with_line_number(tmp_path):
    """An unparseable time is refused with its line number and column."""
    path = write(tmp_path / "bad.csv", "datetime_utc,carbon_intensity\n"
                 "2026-01-01 00:00:00,100\n2026-01-01 01:00:00,100\nyesterday,100\n")
    with pytest.raises(SourceDataError, match="line 4: 'yesterday' in 'datetime_utc' is not an ISO-8601 time"):
        fetch(FileSource(path), "DE", T0, T0 + 2 * H)


@pytest.mark.parametrize("bad", ["nan", "NaN", "inf", "-5"])
def test_nan_or_impossible_value_raises_invalid_forecast(tmp_path, bad):
    """A NaN, infinite or negative intensity parses but is refused as an InvalidForecastError."""
    path = write(tmp_path / "nan.csv", f"datetime_utc,carbon_intensity\n2026-01-01 00:00:00,100\n"
                 f"2026-01-01 01:00:00,{bad}\n")
    with pytest.raises(InvalidForecastError, match="must be finite and within"):
        fetch(FileSource(path), "DE", T0, T0 + 2 * H)


def test_empty_value_is_a_gap_the_previous_point_fills(tmp_path):
    """A row with an empty intensity is skipped, so the previous value holds until the next point."""
    path = write(tmp_path / "gap.csv", "datetime_utc,carbon_intensity\n"
                 "2026-01-01 00:00:00,100\n2026-01-01 01:00:00,\n2026-01-01 02:00:00,300\n\n")
    f = fetch(FileSource(path), "DE", T0, T0 + 3 * H)
    assert f.values == (100.0, 300.0)
    assert f.value_at(T0 + 90 * M) == 100.0


def test_empty_file_raises_source_data_error(tmp_path):
    """A zero-byte file is refused as empty."""
    path = write(tmp_path / "empty.csv", "")
    with pytest.raises(SourceDataError, match="is empty; it needs a header row and data rows"):
        fetch(FileSource(path), "DE", T0, T0 + H)


def test_header_only_file_raises_source_data_error(tmp_path):
    """A header without data rows is refused."""
    path = write(tmp_path / "header.csv", "datetime_utc,carbon_intensity\n")
    with pytest.raises(SourceDataError, match="has a header but no data rows"):
        fetch(FileSource(path), "DE", T0, T0 + H)


def test_missing_file_raises_source_data_error(tmp_path):
    """A path that does not exist is a SourceDataError asking to check the path."""
    with pytest.raises(SourceDataError, match=r"cannot read .*check the path"):
        fetch(FileSource(tmp_path / "nope.csv"), "DE", T0, T0 + H)


def test_unsupported_suffix_or_signal_raises_configuration_error(tmp_path):
    """Only .csv/.parquet/.pq files and known signals are accepted."""
    with pytest.raises(ConfigurationError, match=r"neither \.csv nor \.parquet"):
        FileSource(tmp_path / "data.xlsx")
    with pytest.raises(ConfigurationError, match="'average' or 'marginal'"):
        FileSource(tmp_path / "data.csv", signal="moer")  # type: ignore[arg-type]


def test_marginal_signal_is_carried_into_the_forecast(tmp_path):
    """signal='marginal' marks the forecasts the source returns."""
    path = write(tmp_path / "moer.csv", "datetime_utc,moer\n2026-01-01 00:00:00,700\n")
    assert fetch(FileSource(path, signal="marginal"), "DE", T0, T0 + H).signal == "marginal"


@pytest.mark.parametrize(
    ("start", "end"),
    [(utc(2026, 1, 2), utc(2026, 1, 2, 6)), (utc(2025, 12, 31), utc(2025, 12, 31, 6)), (T0 + 3 * H, T0 + 4 * H)],
    ids=["after", "before", "from-end"],
)
def test_window_outside_the_file_raises_coverage_error(tmp_path, start, end):
    """A window the file does not reach is a ForecastCoverageError that says what the file covers."""
    path = write(tmp_path / "short.csv", "datetime_utc,carbon_intensity\n"
                 "2026-01-01 00:00:00,1\n2026-01-01 01:00:00,2\n2026-01-01 02:00:00,3\n")
    with pytest.raises(ForecastCoverageError, match=r"covers 2026-01-01T00:00:00\+00:00 to 2026-01-01T03:00:00"):
        fetch(FileSource(path), "DE", start, end)


def test_window_partly_beyond_the_file_returns_what_it_has(tmp_path):
    """A window that runs past the file's end gets the covered part, ending where the file ends."""
    path = write(tmp_path / "short.csv", "datetime_utc,carbon_intensity\n"
                 "2026-01-01 00:00:00,1\n2026-01-01 01:00:00,2\n2026-01-01 02:00:00,3\n")
    f = fetch(FileSource(path), "DE", T0 + H, T0 + 10 * H)
    assert f.values == (2.0, 3.0) and f.end == T0 + 3 * H


def test_cache_is_invalidated_when_the_file_changes(tmp_path):
    """Rewriting the file (same size, new mtime) or appending rows is picked up by the next fetch."""
    path = write(tmp_path / "live.csv", "datetime_utc,carbon_intensity\n"
                 "2026-01-01 00:00:00,100\n2026-01-01 01:00:00,200\n")
    source = FileSource(path)
    assert fetch(source, "DE", T0, T0 + 2 * H).values == (100.0, 200.0)
    assert fetch(source, "DE", T0, T0 + 2 * H).values == (100.0, 200.0)
    stat = path.stat()
    write(path, "datetime_utc,carbon_intensity\n2026-01-01 00:00:00,300\n2026-01-01 01:00:00,400\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # same size: only mtime differs
    assert path.stat().st_size == stat.st_size
    assert fetch(source, "DE", T0, T0 + 2 * H).values == (300.0, 400.0)
    with path.open("a", encoding="utf-8") as f:
        f.write("2026-01-01 02:00:00,500\n")
    grown = fetch(source, "DE", T0, T0 + 3 * H)
    assert grown.values == (300.0, 400.0, 500.0) and grown.end == T0 + 3 * H


# -- specs ----------------------------------------------------------------------------------------


def test_to_spec_and_source_from_spec_round_trip(tmp_path):
    """to_spec is JSON-able and source_from_spec rebuilds an equal FileSource, options included."""
    source = FileSource(tmp_path / "x.parquet", time_column="ts", value_column="v", zone_column="z", zone="DE",
                        timezone="Europe/Berlin", signal="marginal", refresh_interval=timedelta(minutes=5))
    spec = json.loads(json.dumps(source.to_spec()))
    assert spec == {"kind": "file", "path": str(tmp_path / "x.parquet"), "time_column": "ts", "value_column": "v",
                    "zone_column": "z", "zone": "DE", "timezone": "Europe/Berlin", "signal": "marginal",
                    "refresh_interval_s": 300.0, "measured": False}
    back = source_from_spec(spec)
    assert isinstance(back, FileSource)
    assert back == source and back.to_spec() == source.to_spec() and hash(back) == hash(source)
    assert back.refresh_interval == timedelta(minutes=5)
    assert back != FileSource(tmp_path / "x.parquet")


def test_spec_round_trip_with_defaults_and_static_file(tmp_path):
    """A default source and one with refresh_interval=None round-trip too; a bare spec gets the 1 h default."""
    plain = FileSource(tmp_path / "a.csv")
    assert source_from_spec(plain.to_spec()) == plain
    static = FileSource(tmp_path / "a.csv", refresh_interval=None)
    assert source_from_spec(static.to_spec()).refresh_interval is None
    assert source_from_spec({"kind": "file", "path": str(tmp_path / "a.csv")}).refresh_interval == H


def test_source_from_spec_other_forms_and_errors(tmp_path):
    """source_from_spec takes 'embedded', a Source itself, and refuses a file spec without path or a bad kind."""
    assert source_from_spec("embedded") == EmbeddedProfileSource()
    same = FileSource(tmp_path / "a.csv")
    assert source_from_spec(same) is same
    with pytest.raises(ConfigurationError, match="a file source needs a path"):
        source_from_spec({"kind": "file"})
    with pytest.raises(ConfigurationError, match="unknown source kind 'crystal-ball'"):
        source_from_spec("crystal-ball")
    with pytest.raises(ConfigurationError, match="got int"):
        source_from_spec(3)  # type: ignore[arg-type]


def test_measured_file_marks_its_points_as_measurements(tmp_path):
    """measured=True makes every point a measurement (reconcile re-prices with it); the default is a forecast."""
    path = tmp_path / "actuals.csv"
    path.write_text("time,intensity\n2026-06-15T00:00Z,300\n2026-06-15T01:00Z,200\n")
    t0 = datetime(2026, 6, 15, tzinfo=UTC)
    measured = FileSource(path, measured=True)
    got = fetch(measured, "DE", t0, t0 + timedelta(hours=2))
    assert got.measured_until == t0 + timedelta(hours=2)
    assert fetch(FileSource(path), "DE", t0, t0 + timedelta(hours=2)).measured_until is None
    assert source_from_spec(measured.to_spec()) == measured and source_from_spec(measured.to_spec()).measured
    old_row = {k: v for k, v in measured.to_spec().items() if k != "measured"}  # a spec stored by an older version
    assert source_from_spec(old_row).measured is False


PORTAL_HEADER = ("Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO₂eq/kWh (direct),"
                 "Carbon Intensity gCO₂eq/kWh (life cycle assessment),Low Carbon Percentage,Renewable Percentage,"
                 "Data Source,Data Estimated,Data Estimation Method")


def test_an_electricity_maps_data_portal_download_reads_as_it_is(tmp_path):
    """The portal's hourly CSV (its documented columns): naive UTC times, the life-cycle intensity."""
    path = tmp_path / "DE_2023_hourly.csv"
    path.write_text("\n".join([
        PORTAL_HEADER,
        "2023-01-01 00:00:00,Germany,Germany,DE,201.5,268.4,61.2,55.1,entsoe.eu,false,",
        "2023-01-01 01:00:00,Germany,Germany,DE,195.0,262.0,62.0,56.0,entsoe.eu,false,",
        "2023-01-01 02:00:00,Germany,Germany,DE,190.25,257.75,63.0,57.0,entsoe.eu,true,TIME_SLICER_AVERAGE",
    ]) + "\n", encoding="utf-8")
    series = FileSource(path).read_all("DE")
    assert series.values == (268.4, 262.0, 257.75)
    assert series.starts_s[0] == datetime(2023, 1, 1, tzinfo=UTC).timestamp()


def test_a_misspelt_column_fails_when_the_dag_is_parsed(tmp_path):
    """The file is there when the DAG is parsed: a misspelt column is a configuration error at once, with a hint."""
    from carbon_sensors.errors import ConfigurationError

    path = write(tmp_path / "ci.csv", "ts,intensity\n2026-01-01T00:00:00Z,1\n")
    with pytest.raises(ConfigurationError, match=r"no intensity column 'intensty'.*did you mean 'intensity'"):
        FileSource(path, time_column="ts", value_column="intensty")
    with pytest.raises(ConfigurationError, match="no time or intensity column"):
        FileSource(write(tmp_path / "odd.csv", "when,how_much\n2026-01-01T00:00:00Z,1\n"))


def test_a_file_written_later_is_checked_when_read(tmp_path):
    """A file an upstream job has not written yet builds; its wrong column fails when the gate reads it."""
    from carbon_sensors.errors import ConfigurationError

    path = tmp_path / "later.csv"
    source = FileSource(path, value_column="intensty")
    write(path, "timestamp,intensity\n2026-01-01T00:00:00Z,1\n")
    with pytest.raises(ConfigurationError, match="intensty"):
        fetch(source, "DE", T0, T0 + H)


def test_a_misspelt_column_fails_the_task_s_first_plan_instead_of_running_green(tmp_path):
    """on_source_error is for sources failing at run time: a settings error at the first plan fails the task."""
    from carbon_sensors.errors import ConfigurationError
    from carbon_sensors.gate import CarbonGate, decide

    path = tmp_path / "later.csv"
    gate = CarbonGate(zones=("DE",), deadline=T0 + 8 * H, expected_duration=H,
                      source=FileSource(path, value_column="intensty"), on_source_error="run_now")
    write(path, "timestamp,intensity\n2026-01-01T00:00:00Z,1\n")
    with pytest.raises(ConfigurationError, match="intensty"):
        asyncio.run(decide(gate, now=T0, deadline=T0 + 8 * H, submitted_at=T0))
