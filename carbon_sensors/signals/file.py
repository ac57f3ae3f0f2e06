"""A file source: carbon intensity from a CSV or Parquet file with a time and an intensity column.

Column names are configurable; common ones are recognised (``datetime_utc``, ``timestamp``,
``from``, ... and ``carbon_intensity``, ``ci_lifecycle_gco2eq_per_kwh``, ``forecast``, ``value``, ...).
Timestamps need an offset, unless the column name says UTC (``datetime_utc``) or ``timezone=`` says
which zone naive times are in. Values are gCO2eq/kWh. An optional zone column serves many zones.

>>> FileSource("intensity.csv", time_column="ts", value_column="gco2").to_spec()["time_column"]
'ts'
"""

from __future__ import annotations

import csv
import itertools
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from carbon_sensors.errors import (
    ConfigurationError,
    ForecastCoverageError,
    SourceDataError,
    SourceSettingsError,
    UnknownZoneError,
)
from carbon_sensors.forecast import SIGNALS, Forecast, Signal
from carbon_sensors.signals.registry import register_source_kind
from carbon_sensors.timeutil import as_utc

__all__ = ["TIME_COLUMNS", "VALUE_COLUMNS", "FileSource"]

TIME_COLUMNS = (
    "datetime_utc", "timestamp_utc", "time_utc", "datetime", "timestamp", "time", "from_utc", "from",
    "period_start", "point_time", "target_time", "start",
    "datetime (utc)",  # the Electricity Maps Data Portal's CSV download
)
VALUE_COLUMNS = (
    "carbon_intensity", "carbon_intensity_gco2eq_per_kwh", "intensity", "ci_lifecycle_gco2eq_per_kwh",
    "ci_direct_gco2eq_per_kwh", "gco2eq_per_kwh", "gco2_per_kwh", "forecast", "actual", "value", "moer",
    # the Electricity Maps Data Portal's CSV download: life cycle first, as in their API's default
    "carbon intensity gco₂eq/kwh (life cycle assessment)", "carbon intensity gco₂eq/kwh (lca)",
    "carbon intensity gco₂eq/kwh (direct)",
)
ZONE_COLUMNS = ("zone", "zone_id", "zone_key", "region")


@dataclass(frozen=True, slots=True)
class _Series:
    starts_s: tuple[float, ...]
    values: tuple[float, ...]
    step_s: float


class FileSource:
    """Intensity points read from ``path`` (``.csv`` or ``.parquet``), re-read when the file changes.

    ``measured=True`` says the file holds measured actuals (e.g. a grid operator's export), not a
    forecast: its points then count as measurements, and ``carbon-sensors reconcile`` re-prices
    runs with them.
    """

    kind = "file"
    #: What the value column holds, the names recognised for it, and the example a message gives.
    _value_what, _value_names, _value_example = "intensity", VALUE_COLUMNS, "carbon_intensity"

    def __init__(
        self,
        path: str | Path,
        *,
        time_column: str | None = None,
        value_column: str | None = None,
        zone_column: str | None = None,
        zone: str | None = None,
        timezone: str | None = None,
        signal: Signal = "average",
        refresh_interval: timedelta | None = timedelta(hours=1),
        measured: bool = False,
    ) -> None:
        if signal not in SIGNALS:
            raise ConfigurationError(f"signal must be 'average' or 'marginal', got {signal!r}")
        if timezone is not None:
            from zoneinfo import ZoneInfo

            try:
                ZoneInfo(timezone)
            except (ValueError, KeyError):
                raise ConfigurationError(f"unknown time zone {timezone!r}; use an IANA name such as 'Europe/Berlin'") from None
        self.path = Path(path)
        if self.path.suffix.lower() not in (".csv", ".parquet", ".pq"):
            raise ConfigurationError(f"{self.path} is neither .csv nor .parquet; convert it or rename it")
        self.time_column, self.value_column, self.zone_column = time_column, value_column, zone_column
        self.zone, self.timezone, self.signal = zone, timezone, signal
        self.refresh_interval = refresh_interval
        self.measured = bool(measured)
        self._cache: tuple[tuple[int, int], dict[str | None, _Series]] | None = None
        self._check_header()

    def _check_header(self) -> None:
        """Check the columns against a CSV file's header, when the file is already there (at DAG parse time).

        A file that does not exist yet (an upstream job writes it) is checked when it is read.
        Parquet is checked when read: its schema needs pyarrow, too heavy for DAG parsing.
        """
        if self.path.suffix.lower() != ".csv":
            return
        try:
            with self.path.open(newline="", encoding="utf-8-sig") as f:
                header = next(csv.reader(f), None)
        except (OSError, UnicodeDecodeError, csv.Error):
            return  # not readable yet: reading it says why
        if header:
            self._columns([h.strip() for h in header])

    def check_zone(self, zone: str) -> None:
        if self.zone is not None and zone != self.zone:
            raise UnknownZoneError(f"{self.path} holds zone {self.zone!r}, not {zone!r}; point this zone at its own file")

    async def fetch(self, zone: str, start: datetime, end: datetime, *, now: datetime) -> Forecast:
        self.check_zone(zone)
        import asyncio

        series_by_zone = await asyncio.to_thread(self._load)  # file I/O off the event loop
        return self._slice(series_by_zone, zone, as_utc(start, "start"), as_utc(end, "end"))

    def fetch_now(self, zone: str, start: datetime, end: datetime, *, now: datetime) -> Forecast:
        """The same as :meth:`fetch`, for sync callers."""
        self.check_zone(zone)
        return self._slice(self._load(), zone, as_utc(start, "start"), as_utc(end, "end"))

    def read_all(self, zone: str | None = None) -> Forecast:
        """The whole file as one forecast (for backtests): every point, for ``zone`` or the only series."""
        series_by_zone = self._load()
        key = None if None in series_by_zone else (zone if zone is not None else next(iter(series_by_zone)))
        if key not in series_by_zone:
            raise UnknownZoneError(f"{self.path} has no rows for zone {zone!r}; it holds {', '.join(map(str, series_by_zone))}")
        series = series_by_zone[key]
        return Forecast(
            zone=zone or str(key or self.path.stem), source=f"file:{self.path.name}", signal=self.signal,
            issued_at=datetime.fromtimestamp(series.starts_s[0], UTC), starts_s=series.starts_s,
            values=series.values, end_s=series.starts_s[-1] + series.step_s,
        )

    def to_spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "path": str(self.path), "time_column": self.time_column,
            "value_column": self.value_column, "zone_column": self.zone_column, "zone": self.zone,
            "timezone": self.timezone, "signal": self.signal,
            "refresh_interval_s": None if self.refresh_interval is None else self.refresh_interval.total_seconds(),
            "measured": self.measured,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> FileSource:
        refresh = spec.get("refresh_interval_s", 3600.0)
        return cls(
            spec["path"], time_column=spec.get("time_column"), value_column=spec.get("value_column"),
            zone_column=spec.get("zone_column"), zone=spec.get("zone"), timezone=spec.get("timezone"),
            signal=spec.get("signal", "average"),
            refresh_interval=None if refresh is None else timedelta(seconds=float(refresh)),
            measured=bool(spec.get("measured", False)),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FileSource) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash(str(self.path))

    def __repr__(self) -> str:
        return f"FileSource({str(self.path)!r})"

    # -- reading -------------------------------------------------------------------------------

    def _load(self) -> dict[str | None, _Series]:
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise SourceDataError(f"cannot read {self.path}: {exc.strerror}; check the path and permissions") from None
        key = (stat.st_mtime_ns, stat.st_size)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        columns, rows = self._read_rows()
        parsed = self._parse(columns, rows)
        self._cache = (key, parsed)
        return parsed

    def _read_rows(self) -> tuple[list[str], list[list[Any]]]:
        if self.path.suffix.lower() == ".csv":
            try:
                with self.path.open(newline="", encoding="utf-8-sig") as f:
                    reader = csv.reader(f)
                    header = next(reader, None)
                    if header is None:
                        raise SourceDataError(f"{self.path} is empty; it needs a header row and data rows")
                    return [h.strip() for h in header], list(reader)
            except (UnicodeDecodeError, csv.Error) as exc:
                raise SourceDataError(f"{self.path} is not a readable UTF-8 CSV file ({exc}); re-export it") from None
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ConfigurationError(
                f"reading {self.path} needs pyarrow; pip install 'carbon-sensors[parquet]'"
            ) from None
        table = pq.read_table(self.path)
        data = table.to_pydict()
        names = list(data)
        return names, [list(row) for row in zip(*(data[n] for n in names), strict=True)]

    def _pick(self, columns: list[str], given: str | None, known: tuple[str, ...], what: str) -> int | None:
        lowered = [c.lower() for c in columns]
        if given is not None:
            if given not in columns:
                import difflib

                close = difflib.get_close_matches(given, columns, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise SourceSettingsError(
                    f"{self.path} has no {what} column {given!r}; its columns are {', '.join(columns)}{hint}")
            return columns.index(given)
        for name in known:
            if name in lowered:
                return lowered.index(name)
        return None

    def _columns(self, columns: list[str]) -> tuple[int, int, int | None]:
        """The time, intensity and zone columns' positions; a missing one is a settings error."""
        t_i = self._pick(columns, self.time_column, TIME_COLUMNS, "time")
        v_i = self._pick(columns, self.value_column, self._value_names, self._value_what)
        z_i = self._pick(columns, self.zone_column, ZONE_COLUMNS, "zone")
        missing = [w for w, i in (("time", t_i), (self._value_what, v_i)) if i is None]
        if missing:
            raise SourceSettingsError(
                f"{self.path} has no {' or '.join(missing)} column among {', '.join(columns)}; name them with "
                f"time_column= and value_column=, or use a common name such as 'datetime_utc' and {self._value_example!r}"
            )
        assert t_i is not None and v_i is not None
        return t_i, v_i, z_i

    def _parse(self, columns: list[str], rows: list[list[Any]]) -> dict[str | None, _Series]:
        t_i, v_i, z_i = self._columns(columns)
        naive_zone = self.timezone or ("UTC" if "utc" in columns[t_i].lower() else None)
        by_zone: dict[str | None, list[tuple[float, float]]] = {}
        for line, row in enumerate(rows, start=2):
            if not row or all(cell in ("", None) for cell in row):
                continue
            raw_value = row[v_i] if v_i < len(row) else None
            if raw_value in ("", None):
                self._on_missing_value(line, row[t_i] if t_i < len(row) else None)
                continue  # a gap: the previous point holds until the next one
            if t_i >= len(row) or (z_i is not None and z_i >= len(row)):
                raise SourceDataError(
                    f"{self.path} line {line} has {len(row)} of the {len(columns)} columns; every row needs a time"
                    + (" and a zone" if z_i is not None else "")
                )
            when = self._parse_time(row[t_i], naive_zone, line, columns[t_i])
            value = self._number(raw_value, line, row[t_i])
            zone = None if z_i is None else str(row[z_i])
            by_zone.setdefault(zone, []).append((when, value))
        if not by_zone:
            raise SourceDataError(f"{self.path} has a header but no data rows")
        out = {}
        for zone, pairs in by_zone.items():
            pairs.sort()
            starts = tuple(p[0] for p in pairs)
            for a, b in itertools.pairwise(starts):
                if a == b:
                    raise SourceDataError(
                        f"{self.path} has two rows for {datetime.fromtimestamp(a, UTC).isoformat()}"
                        + (f" in zone {zone!r}" if zone else "") + "; keep one row per time"
                        + (" (naive local times repeat when clocks go back: write them with offsets or in UTC)"
                           if self.timezone not in (None, "UTC") else "")
                    )
            steps = [b - a for a, b in itertools.pairwise(starts)]
            step = _median(steps) if steps else 3600.0
            out[zone] = _Series(starts, tuple(p[1] for p in pairs), step)
        return out

    def _on_missing_value(self, line: int, raw_time: Any) -> None:
        """A row without a value: a gap, the previous point holds (a subclass may refuse it)."""

    def _number(self, raw_value: Any, line: int, raw_time: Any) -> float:
        """A cell's value as a float."""
        try:
            return float(raw_value)
        except (TypeError, ValueError):
            raise SourceDataError(f"{self.path} line {line}: {self._value_what} {raw_value!r} is not a number") from None

    def _parse_time(self, raw: Any, naive_zone: str | None, line: int, column: str) -> float:
        if isinstance(raw, datetime):
            moment = raw
        else:
            try:
                moment = datetime.fromisoformat(str(raw).strip().replace("Z", "+00:00"))
            except ValueError:
                raise SourceDataError(f"{self.path} line {line}: {raw!r} in {column!r} is not an ISO-8601 time") from None
        if moment.tzinfo is None:
            if naive_zone is None:
                raise SourceDataError(
                    f"{self.path} line {line}: time {raw!r} has no offset; add one (e.g. '+00:00'), name the "
                    "column '..._utc', or pass timezone='UTC' (or the zone the times are in)"
                )
            from zoneinfo import ZoneInfo

            moment = moment.replace(tzinfo=ZoneInfo(naive_zone))
        if not 1900 <= moment.year <= 2999:  # misdated; and beyond datetime's range once moved to UTC
            raise SourceDataError(f"{self.path} line {line}: time {raw!r} lies outside the years 1900-2999")
        return moment.timestamp()

    def _slice(self, series_by_zone: dict[str | None, _Series], zone: str, start: datetime, end: datetime) -> Forecast:
        # A file without a zone column serves whichever zone asks; with one, rows are per zone.
        series = series_by_zone[None] if None in series_by_zone else series_by_zone.get(zone)
        if series is None:
            raise UnknownZoneError(
                f"{self.path} has no rows for zone {zone!r}; it holds {', '.join(sorted(map(str, series_by_zone)))}"
            )
        s, e = start.timestamp(), end.timestamp()
        lo = max(0, bisect_right(series.starts_s, s) - 1)
        hi = max(lo + 1, bisect_left(series.starts_s, e))
        file_end = series.starts_s[-1] + series.step_s
        if series.starts_s[lo] > e or file_end <= s:
            raise ForecastCoverageError(
                f"{self.path} covers {_iso(series.starts_s[0])} to {_iso(file_end)}, nothing of "
                f"{start.isoformat()} to {end.isoformat()}; update the file or pick a source that reaches now"
            )
        starts, values = series.starts_s[lo:hi], series.values[lo:hi]
        end_s = series.starts_s[hi] if hi < len(series.starts_s) else file_end
        return Forecast(
            zone=zone, source=f"file:{self.path.name}", signal=self.signal,
            issued_at=datetime.fromtimestamp(self.path.stat().st_mtime, UTC),
            starts_s=starts, values=values, end_s=end_s,
            measured_until=datetime.fromtimestamp(end_s, UTC) if self.measured else None,
        )


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


def _file_source(spec: dict[str, Any]) -> FileSource:
    if not spec.get("path"):
        raise ConfigurationError("a file source needs a path: {'kind': 'file', 'path': '/data/intensity.csv'}")
    return FileSource.from_spec(spec)


register_source_kind(FileSource.kind, _file_source)
