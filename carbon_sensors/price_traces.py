"""Price traces for backtests: hourly market prices read from a file, matched to the carbon traces by zone.

A price trace is a CSV or Parquet file of evenly spaced prices per MWh in one stated currency
(never converted). Its zone is the file name up to the first underscore, as for carbon traces, or
a ``zone`` column (one trace per zone then). Its currency comes from the value column's name
(``price_usd_per_mwh``), a ``currency`` column, the file name (``DE_2023_eur_per_mwh.csv``), or is
given. Negative prices are real and kept; a missing (NaN) price is an error, not a gap.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "DE_2023_hourly_usd_per_mwh.csv"
>>> _ = path.write_text("datetime_utc,price_usd_per_mwh\\n2023-01-01 00:00:00,-3.5\\n2023-01-01 01:00:00,40\\n")
>>> (trace,) = load_price_traces(path)
>>> trace.zone, trace.actual.currency, trace.actual.values
('DE', 'USD', (-3.5, 40.0))
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from carbon_sensors.errors import ConfigurationError, ForecastCoverageError, SourceDataError
from carbon_sensors.prices import PriceForecast, check_currency

__all__ = ["COST_POLICY_FIELDS", "PriceTrace", "cost_knobs", "load_price_traces", "match_price_traces", "policy_currency"]

#: The Policy fields that need a price forecast to mean anything.
COST_POLICY_FIELDS = ("max_cost_increase_pct", "carbon_price_per_tonne")

_PRICE_COLUMN = re.compile(r"^(?:day_ahead_)?price(?:_([a-z]{3}))?(?:_per_[mk]wh)?$")
_FILE_CURRENCY = re.compile(r"_([a-z]{3})_per_mwh$", re.IGNORECASE)
_ZONE_COLUMNS = ("zone", "zone_id", "zone_key", "region")


@dataclass(frozen=True)
class PriceTrace:
    """The actual price series for one zone, read from a file (``actual``: currency per MWh)."""

    name: str
    zone: str
    actual: PriceForecast


def load_price_traces(
    path: str | Path, *, zone: str | None = None, currency: str | None = None, time_column: str | None = None,
    value_column: str | None = None, timezone: str | None = None,
) -> list[PriceTrace]:
    """Read the price trace(s) in ``path``: one per zone (a ``zone`` column may hold several)."""
    from carbon_sensors.signals.file import TIME_COLUMNS

    path = Path(path)
    columns, rows = _read_rows(path)
    lowered = [c.lower() for c in columns]
    t_i = _pick(path, columns, time_column, [lowered.index(c) for c in TIME_COLUMNS if c in lowered], "time")
    v_i = _pick(path, columns, value_column, [i for i, c in enumerate(lowered) if _PRICE_COLUMN.match(c)]
                or ([lowered.index("value")] if "value" in lowered else []), "price")
    if "kwh" in lowered[v_i]:
        raise SourceDataError(f"{path}: column {columns[v_i]!r} is per kWh; backtests take prices per MWh "
                              "(multiply by 1000 and name the column e.g. 'price_usd_per_mwh')")
    z_i = next((lowered.index(c) for c in _ZONE_COLUMNS if c in lowered), None) if zone is None else None
    c_i = lowered.index("currency") if "currency" in lowered else None
    named = _PRICE_COLUMN.match(lowered[v_i])
    from_name = (named.group(1) if named and named.group(1) else None) or (
        m.group(1) if (m := _FILE_CURRENCY.search(path.stem)) else None)
    naive = timezone or ("UTC" if "utc" in lowered[t_i] else None)
    by_zone: dict[str, list[tuple[float, float]]] = {}
    currencies: dict[str, set[str]] = {}
    for line, row in enumerate(rows, start=2):
        if not row or all(cell in ("", None) for cell in row):
            continue
        where = zone or (str(row[z_i]) if z_i is not None else path.stem.split("_")[0])
        when = _parse_time(path, line, row[t_i], naive)
        value = _parse_price(path, line, row[v_i] if v_i < len(row) else None, when)
        by_zone.setdefault(where, []).append((when, value))
        if c_i is not None and row[c_i] not in ("", None):
            currencies.setdefault(where, set()).add(str(row[c_i]).strip().upper())
    if not by_zone:
        raise SourceDataError(f"{path} has a header but no price rows")
    out = []
    for name, pairs in sorted(by_zone.items()):
        found = currencies.get(name, set()) | ({from_name.upper()} if from_name else set())
        if currency is not None:
            if found - {currency}:
                raise ConfigurationError(
                    f"{path} quotes {', '.join(sorted(found))}, not {currency}; prices are never converted: "
                    f"pass a trace in {currency} or state the currency the file quotes")
            found = {currency}
        if len(found) != 1:
            raise SourceDataError(
                f"{path} does not say its currency unambiguously (found {sorted(found) or 'none'}); name the column "
                "e.g. 'price_usd_per_mwh', add a 'currency' column with one value, or state the currency")
        out.append(PriceTrace(name=path.name, zone=name, actual=_series(path, name, sorted(pairs), found.pop())))
    return out


def match_price_traces(
    trace_groups: Sequence[Sequence[Any]], price_traces: Iterable[PriceTrace], currency: str | None = None,
) -> dict[str, PriceTrace]:
    """The price trace of every carbon trace's zone, checked: one per zone, one currency, the span covered."""
    by_zone: dict[str, PriceTrace] = {}
    for trace in price_traces:
        if trace.zone in by_zone:
            raise ConfigurationError(f"two price traces for zone {trace.zone!r} ({by_zone[trace.zone].name} and "
                                     f"{trace.name}); pass one per zone")
        by_zone[trace.zone] = trace
    if not by_zone:
        return {}
    zones = {t.zone for group in trace_groups for t in group}
    extra, missing = sorted(set(by_zone) - zones), sorted(zones - set(by_zone))
    if extra:
        raise ConfigurationError(f"price trace(s) for zone(s) {', '.join(extra)} but no carbon trace there; "
                                 "pass the zone's carbon trace too, or drop its price trace")
    if missing:
        raise ConfigurationError(f"no price trace for zone(s) {', '.join(missing)}; with any price trace every "
                                 "carbon trace needs one (or drop that zone's carbon trace)")
    found = sorted({t.actual.currency for t in by_zone.values()})
    if len(found) > 1:
        raise ConfigurationError(f"the price traces quote {', '.join(found)}; prices are never converted, so pass "
                                 "traces in one currency")
    if currency is not None and found != [check_currency(currency)]:
        raise ConfigurationError(f"the price traces quote {found[0]} but the policy's currency is {currency}; "
                                 f"pass traces in {currency} or set the policy's currency to {found[0]}")
    for group in trace_groups:
        start_s = max(t.actual.starts_s[0] for t in group)
        end_s = min(t.actual.end_s for t in group)
        for t in group:
            price = by_zone[t.zone].actual
            if not price.covers(start_s, end_s):
                raise ForecastCoverageError(
                    f"price trace {by_zone[t.zone].name} ({t.zone}) covers {_iso(price.starts_s[0])} to "
                    f"{_iso(price.end_s)}, not all of the carbon trace's {_iso(start_s)} to {_iso(end_s)}; pass a "
                    "price trace covering the whole span, or cut the carbon trace to the price trace's span")
    return by_zone


def policy_currency(policy: Any) -> str | None:
    """The policy's currency, where this planner's Policy has one."""
    return getattr(policy, "currency", None)


def cost_knobs(policy: Any) -> list[str]:
    """The names of the price-dependent settings a policy has set (a cost cap, a carbon price, objective cost)."""
    names = {f.name for f in fields(policy)}
    set_ = [n for n in COST_POLICY_FIELDS if n in names and getattr(policy, n) is not None]
    return set_ + (["objective='cost'"] if getattr(policy, "objective", "carbon") == "cost" else [])


def _read_rows(path: Path) -> tuple[list[str], list[list[Any]]]:
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ConfigurationError(f"reading {path} needs pyarrow; pip install 'carbon-sensors[parquet]'") from None
        data = pq.read_table(path).to_pydict()
        return list(data), [list(r) for r in zip(*data.values(), strict=True)]
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise SourceDataError(f"{path} is empty; it needs a header row and price rows")
            return [h.strip() for h in header], list(reader)
    except OSError as exc:
        raise SourceDataError(f"cannot read price trace {path}: {exc.strerror}; check the path") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SourceDataError(f"{path} is not a readable UTF-8 CSV file ({exc}); re-export it") from None


def _pick(path: Path, columns: list[str], given: str | None, candidates: list[int], what: str) -> int:
    if given is not None:
        if given not in columns:
            raise SourceDataError(f"{path} has no {what} column {given!r}; its columns are {', '.join(columns)}")
        return columns.index(given)
    if not candidates:
        raise SourceDataError(f"{path} has no {what} column among {', '.join(columns)}; name it (e.g. "
                              f"'{'datetime_utc' if what == 'time' else 'price_usd_per_mwh'}') or say which it is")
    return candidates[0]


def _parse_time(path: Path, line: int, raw: Any, naive: str | None) -> float:
    moment = raw if isinstance(raw, datetime) else None
    if moment is None:
        try:
            moment = datetime.fromisoformat(str(raw).strip().replace("Z", "+00:00"))
        except ValueError:
            raise SourceDataError(f"{path} line {line}: {raw!r} is not an ISO-8601 time") from None
    if moment.tzinfo is None:
        if naive is None:
            raise SourceDataError(f"{path} line {line}: time {raw!r} has no offset; add one, name the column "
                                  "'..._utc', or give the time zone of naive times")
        from zoneinfo import ZoneInfo

        moment = moment.replace(tzinfo=ZoneInfo(naive))
    return moment.timestamp()


def _parse_price(path: Path, line: int, raw: Any, when: float) -> float:
    try:
        value = float(raw) if raw not in ("", None) else math.nan
    except (TypeError, ValueError):
        raise SourceDataError(f"{path} line {line}: price {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise SourceDataError(
            f"{path} line {line}: the price at {_iso(when)} is missing (NaN); fill the hour (e.g. with the "
            "previous hour's price) or cut the trace before it: a backtest cannot price a window with a hole")
    return value


def _series(path: Path, zone: str, pairs: list[tuple[float, float]], currency: str) -> PriceForecast:
    starts = [p[0] for p in pairs]
    steps = {round(b - a) for a, b in pairwise(starts)}
    if 0 in steps:
        raise SourceDataError(f"{path} has two prices for one time in zone {zone!r}; keep one row per time")
    if len(steps) > 1:
        raise SourceDataError(f"{path} is not evenly spaced for zone {zone!r} (steps {sorted(steps)[:5]} s); "
                              "backtests need a regular price trace")
    if len(pairs) < 2:
        raise SourceDataError(f"{path} has a single price for zone {zone!r}; a trace needs a series")
    return PriceForecast(zone=zone, source=f"file:{path.name}", currency=check_currency(currency),
                         issued_at=datetime.fromtimestamp(starts[0], UTC), starts_s=tuple(starts),
                         values=tuple(p[1] for p in pairs), end_s=starts[-1] + (starts[1] - starts[0]))


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()
