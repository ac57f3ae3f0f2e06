"""The price file source: the real price traces, currency from the user or the column name, NaN refused."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from carbon_sensors import ConfigurationError, FilePrices, ForecastCoverageError, SourceDataError, SourceSettingsError
from carbon_sensors.signals import price_source_from_spec
from carbon_sensors.signals.prices import FilePrices as Same


def write(tmp_path, text, name="prices.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_every_shared_price_trace(shared_data):
    """All nine zones' files read as USD/MWh with 26,280 hourly points; negative hours are kept."""
    files = sorted((shared_data / "prices").glob("*.csv"))
    assert len(files) == 9
    for path in files:
        prices = FilePrices(path).read_all(path.name.split("_")[0])
        assert prices.currency == "USD" and prices.unit == "USD/MWh"
        assert len(prices.values) == 26_280
        assert prices.start == datetime(2021, 1, 1, tzinfo=UTC) and prices.end == datetime(2024, 1, 1, tzinfo=UTC)
    de = FilePrices(shared_data / "prices" / "DE_2021-2023_hourly_usd_per_mwh.csv").read_all("DE")
    assert sum(v < 0 for v in de.values) == 501


def test_fetch_slices_the_window(shared_data):
    """fetch returns the points covering [start, end] only."""
    source = FilePrices(shared_data / "prices" / "DE_2021-2023_hourly_usd_per_mwh.csv", zone="DE")
    start = datetime(2023, 6, 1, 10, 30, tzinfo=UTC)
    prices = asyncio.run(source.fetch("DE", start, start + timedelta(hours=5), now=start))
    assert prices.start == datetime(2023, 6, 1, 10, tzinfo=UTC) and prices.end == datetime(2023, 6, 1, 16, tzinfo=UTC)
    assert prices.zone == "DE" and prices.source.startswith("file:")
    with pytest.raises(ForecastCoverageError, match="update the file"):
        source.fetch_now("DE", datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 2, tzinfo=UTC), now=start)


def test_stated_currency_and_other_columns(tmp_path):
    """A plain 'price' column needs currency=; a stated one must agree with a currency-named column."""
    plain = write(tmp_path, "timestamp,price\n2023-01-01T00:00:00+01:00,80\n2023-01-01T01:00:00+01:00,90\n")
    with pytest.raises(ConfigurationError, match="currency='EUR'"):
        FilePrices(plain)
    prices = FilePrices(plain, currency="EUR").read_all()
    assert prices.currency == "EUR" and prices.start == datetime(2022, 12, 31, 23, tzinfo=UTC)
    usd = write(tmp_path, "datetime_utc,price_usd_per_mwh\n2023-01-01 00:00:00,1\n", "usd.csv")
    with pytest.raises(SourceSettingsError, match="says USD"):
        FilePrices(usd, currency="EUR")
    kwh = write(tmp_path, "datetime_utc,price_eur_per_kwh\n2023-01-01 00:00:00,0.1\n", "kwh.csv")
    with pytest.raises(SourceSettingsError, match="per kWh"):
        FilePrices(kwh)


@pytest.mark.parametrize("cell", ["NaN", "nan", "", "inf"])
def test_a_missing_or_nan_price_names_its_line_and_hour(tmp_path, cell):
    """A NaN, empty or infinite price is an error naming the line and the time, never a zero or a gap."""
    path = write(tmp_path, f"datetime_utc,price_usd_per_mwh\n2023-01-01 00:00:00,10\n2023-01-01 01:00:00,{cell}\n")
    with pytest.raises(SourceDataError, match=r"line 3 \(2023-01-01 01:00:00\)"):
        FilePrices(path).read_all()


def test_zone_column_and_parquet(tmp_path):
    """A zone column serves several zones; Parquet reads the same way."""
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    table = pa.table({"datetime_utc": ["2023-01-01 00:00:00", "2023-01-01 00:00:00", "2023-01-01 01:00:00"],
                      "zone": ["DE", "FR", "DE"], "price_eur_per_mwh": [50.0, -3.0, 60.0]})
    path = tmp_path / "prices.parquet"
    pq.write_table(table, path)
    source = FilePrices(path, currency="EUR")
    assert source.read_all("FR").values == (-3.0,) and source.read_all("DE").values == (50.0, 60.0)


def test_spec_round_trip(tmp_path):
    """A price spec of kind 'file' builds FilePrices (not the carbon file source), equal to the original."""
    path = write(tmp_path, "datetime_utc,price_usd_per_mwh\n2023-01-01 00:00:00,1\n2023-01-01 01:00:00,2\n")
    source = FilePrices(path, error_24h=0.1)
    rebuilt = price_source_from_spec(source.to_spec())
    assert isinstance(rebuilt, Same) and rebuilt == source and rebuilt.currency == "USD"
    assert rebuilt.read_all().error_24h == 0.1
