"""Prices from a CSV or Parquet file: a time column, a price column (per MWh), optionally a zone column.

Read like the carbon file source (:class:`~carbon_sensors.signals.file.FileSource`): the same time
columns and time-zone rules, re-read when the file changes. Price columns recognised:
``price_usd_per_mwh`` (and ``price_<currency>_per_mwh`` for any ISO 4217 code), ``price_per_mwh``,
``price``, ``day_ahead_price``, ``value``. The currency is the one you state with ``currency=``;
when you give none, a column named ``price_<currency>_per_mwh`` states it (``price_usd_per_mwh``:
USD), and nothing else is taken as one. A column in a currency other than ``currency=``, or per kWh,
is refused. A missing or NaN price is an error naming its line and hour: fill or drop it upstream.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "DE_prices.csv"
>>> _ = path.write_text("datetime_utc,price_usd_per_mwh\\n2023-06-01 10:00:00,-5.2\\n2023-06-01 11:00:00,40.0\\n")
>>> prices = FilePrices(path)
>>> prices.currency, prices.read_all("DE").values
('USD', (-5.2, 40.0))
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from carbon_sensors.errors import ConfigurationError, ForecastCoverageError, SourceDataError, SourceSettingsError
from carbon_sensors.prices import PriceForecast, check_currency
from carbon_sensors.signals.file import FileSource, _Series
from carbon_sensors.signals.prices.base import register_price_source_kind
from carbon_sensors.timeutil import as_utc

__all__ = ["PRICE_COLUMNS", "FilePrices"]

PRICE_COLUMNS = ("price_usd_per_mwh", "price_eur_per_mwh", "price_per_mwh", "price", "day_ahead_price",
                 "price_day_ahead", "value")
_CURRENCY_COLUMN = re.compile(r"^(?:price_)?([a-z]{3})_per_(mwh|kwh)$")


class _PriceTable(FileSource):
    """The carbon file reader, reading a price column: missing and NaN values are errors, not gaps."""

    _value_what, _value_names, _value_example = "price", PRICE_COLUMNS, "price_usd_per_mwh"

    def _pick(self, columns: list[str], given: str | None, known: tuple[str, ...], what: str) -> int | None:
        found = super()._pick(columns, given, known, what)
        if found is None and what == self._value_what:  # any price_<currency>_per_<unit> column
            found = next((i for i, c in enumerate(columns) if _CURRENCY_COLUMN.match(c.lower()) and
                          c.lower().startswith("price_")), None)
        return found

    def _on_missing_value(self, line: int, raw_time: Any) -> None:
        raise SourceDataError(
            f"{self.path} line {line} ({raw_time}) has no price; fill the hour or drop the row (a missing price "
            "is never read as zero)"
        )

    def _number(self, raw_value: Any, line: int, raw_time: Any) -> float:
        value = super()._number(raw_value, line, raw_time)
        if not math.isfinite(value):
            raise SourceDataError(
                f"{self.path} line {line} ({raw_time}) has price {raw_value!r}; fill the hour or drop the row"
            )
        return value

    def header(self) -> list[str] | None:
        """The CSV header when the file is there (None otherwise, or for Parquet)."""
        import csv

        if self.path.suffix.lower() != ".csv":
            return None
        try:
            with self.path.open(newline="", encoding="utf-8-sig") as f:
                header = next(csv.reader(f), None)
        except (OSError, UnicodeDecodeError, csv.Error):
            return None
        return [h.strip() for h in header] if header else None


class FilePrices:
    """Price points (``currency`` per MWh) read from ``path`` (``.csv`` or ``.parquet``), re-read when it changes.

    ``error_24h``: the relative error (1 sigma) to assume 24 h ahead, for a file that holds a price
    forecast; 0 (the default) for published day-ahead prices or a trace of actual prices.
    """

    kind = "file"

    def __init__(
        self,
        path: str | Path,
        *,
        currency: str | None = None,
        time_column: str | None = None,
        value_column: str | None = None,
        zone_column: str | None = None,
        zone: str | None = None,
        timezone: str | None = None,
        refresh_interval: timedelta | None = timedelta(hours=1),
        error_24h: float = 0.0,
    ) -> None:
        if not (isinstance(error_24h, int | float) and 0.0 <= error_24h < 10.0):
            raise ConfigurationError(f"error_24h must be a relative error such as 0.1, got {error_24h!r}")
        self._table = _PriceTable(path, time_column=time_column, value_column=value_column, zone_column=zone_column,
                                  zone=zone, timezone=timezone, refresh_interval=refresh_interval)
        self.path = self._table.path
        self.time_column, self.value_column, self.zone_column = time_column, value_column, zone_column
        self.zone, self.timezone, self.refresh_interval = zone, timezone, refresh_interval
        self.error_24h = float(error_24h)
        self.stated_currency = None if currency is None else check_currency(currency)
        self.currency = self._currency(self._table.header())

    def _currency(self, header: list[str] | None) -> str:
        """The stated currency, checked against what the price column's name says; or the name's, if none is stated."""
        implied = None
        if header:
            _, v_i, _ = self._table._columns(header)
            found = _CURRENCY_COLUMN.match(header[v_i].lower())
            if found:
                if found.group(2) == "kwh":
                    raise SourceSettingsError(
                        f"{self.path}: column {header[v_i]!r} is per kWh; prices are per MWh here (multiply by 1,000 "
                        "into a column named per MWh)"
                    )
                implied = found.group(1).upper()
        if self.stated_currency is not None:
            if implied is not None and implied != self.stated_currency:
                raise SourceSettingsError(
                    f"{self.path}: column {header[v_i]!r} says {implied}, but currency={self.stated_currency!r} was "
                    "given; prices are never converted: state the file's own currency"
                )
            return self.stated_currency
        if implied is None:
            raise ConfigurationError(
                f"say which currency {self.path} is in: FilePrices(..., currency='EUR') (only a column named like "
                "'price_usd_per_mwh' states its own)"
            )
        return check_currency(implied)

    def check_zone(self, zone: str) -> None:
        self._table.check_zone(zone)

    async def fetch(self, zone: str, start: datetime, end: datetime, *, now: datetime) -> PriceForecast:
        import asyncio

        self.check_zone(zone)
        series_by_zone = await asyncio.to_thread(self._load)  # file I/O off the event loop
        return self._slice(series_by_zone, zone, as_utc(start, "start"), as_utc(end, "end"))

    def fetch_now(self, zone: str, start: datetime, end: datetime, *, now: datetime) -> PriceForecast:
        """The same as :meth:`fetch`, for sync callers."""
        self.check_zone(zone)
        return self._slice(self._load(), zone, as_utc(start, "start"), as_utc(end, "end"))

    def read_all(self, zone: str | None = None) -> PriceForecast:
        """The whole file as one price forecast (for backtests): every point, for ``zone`` or the only series."""
        series_by_zone = self._load()
        key = None if None in series_by_zone else (zone if zone is not None else next(iter(series_by_zone)))
        if key not in series_by_zone:
            raise SourceDataError(f"{self.path} has no rows for zone {zone!r}; it holds {', '.join(map(str, series_by_zone))}")
        series = series_by_zone[key]
        return self._forecast(zone or str(key or self.path.stem), series.starts_s, series.values,
                              series.starts_s[-1] + series.step_s, datetime.fromtimestamp(series.starts_s[0], UTC))

    def _load(self) -> dict[str | None, _Series]:
        if self.stated_currency is None or self._table._cache is None:
            header = self._table.header()
            if header is not None:
                found = self._currency(header)
                if found != self.currency:
                    raise SourceSettingsError(f"{self.path} now holds {found} prices, not {self.currency}; state currency=")
        return self._table._load()

    def _forecast(self, zone: str, starts: tuple[float, ...], values: tuple[float, ...], end_s: float,
                  issued_at: datetime) -> PriceForecast:
        return PriceForecast(zone=zone, source=f"file:{self.path.name}", currency=self.currency, issued_at=issued_at,
                             starts_s=starts, values=values, end_s=end_s, error_24h=self.error_24h)

    def _slice(self, series_by_zone: dict[str | None, _Series], zone: str, start: datetime, end: datetime) -> PriceForecast:
        series = series_by_zone[None] if None in series_by_zone else series_by_zone.get(zone)
        if series is None:
            raise SourceDataError(
                f"{self.path} has no price rows for zone {zone!r}; it holds {', '.join(sorted(map(str, series_by_zone)))}"
            )
        s, e = start.timestamp(), end.timestamp()
        lo = max(0, bisect_right(series.starts_s, s) - 1)
        hi = max(lo + 1, bisect_left(series.starts_s, e))
        file_end = series.starts_s[-1] + series.step_s
        if series.starts_s[lo] > e or file_end <= s:
            raise ForecastCoverageError(
                f"{self.path} has prices from {_iso(series.starts_s[0])} to {_iso(file_end)}, nothing of "
                f"{start.isoformat()} to {end.isoformat()}; update the file or pick a price source that reaches now"
            )
        end_s = series.starts_s[hi] if hi < len(series.starts_s) else file_end
        return self._forecast(zone, series.starts_s[lo:hi], series.values[lo:hi], end_s,
                              datetime.fromtimestamp(self.path.stat().st_mtime, UTC))

    def to_spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "path": str(self.path), "currency": self.stated_currency,
            "time_column": self.time_column, "value_column": self.value_column, "zone_column": self.zone_column,
            "zone": self.zone, "timezone": self.timezone,
            "refresh_interval_s": None if self.refresh_interval is None else self.refresh_interval.total_seconds(),
            "error_24h": self.error_24h,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> FilePrices:
        if not spec.get("path"):
            raise ConfigurationError("a price file source needs a path: {'kind': 'file', 'path': '/data/prices.csv'}")
        refresh = spec.get("refresh_interval_s", 3600.0)
        return cls(
            spec["path"], currency=spec.get("currency"), time_column=spec.get("time_column"),
            value_column=spec.get("value_column"), zone_column=spec.get("zone_column"), zone=spec.get("zone"),
            timezone=spec.get("timezone"), refresh_interval=None if refresh is None else timedelta(seconds=float(refresh)),
            error_24h=float(spec.get("error_24h") or 0.0),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FilePrices) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash(str(self.path))

    def __repr__(self) -> str:
        return f"FilePrices({str(self.path)!r}, currency={self.currency!r})"


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


register_price_source_kind(FilePrices.kind, FilePrices.from_spec)
