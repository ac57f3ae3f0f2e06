"""Reports over run records: carbon, savings, tokens and cost per DAG, task, team, zone or project.

>>> from datetime import datetime, timezone
>>> from carbon_sensors.records import RunKey, RunRecord
>>> runs = [RunRecord(RunKey("airflow", "nightly", "enrich", f"r{i}"), status="success", energy_kwh=2.0,
...                   carbon_g=300.0, counterfactual_carbon_g=400.0, saved_carbon_g=100.0,
...                   carbon_signal="average") for i in range(2)]
>>> df = build_report(runs, by="dag")
>>> row = df.iloc[0]
>>> row.dag_id, row.carbon_signal, int(row.runs), float(row.carbon_g), float(row.saved_pct)
('nightly', 'average', 2, 600.0, 25.0)

One row per group and carbon signal: average and marginal intensities measure different things, so
their grams are never added up; records whose signal is unknown form the signal ``unknown``, and a
missing team, project or zone is the group ``unknown``. Ratios whose denominator is zero or unknown
are NaN (``null`` in JSON), never infinite. pandas is imported only here, and only when called
(``pip install 'carbon-sensors[report]'``; Parquet also needs ``carbon-sensors[parquet]``).
"""

from __future__ import annotations

import io
import json
import math
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carbon_sensors.errors import ConfigurationError
from carbon_sensors.records import RunRecord
from carbon_sensors.units import CARBON_UNITS, ENERGY_UNITS, Unit, pick_unit, plain_number

if TYPE_CHECKING:
    import pandas

__all__ = [
    "COMPACT_COLUMNS", "CURRENCY_COLUMN", "GROUPINGS", "REPORT_COLUMNS", "REPORT_FORMATS", "build_report", "neutralise_csv_cell",
    "table_text", "write_report",
]

#: ``by`` -> the columns a row is grouped by.
GROUPINGS: dict[str, tuple[str, ...]] = {
    "dag": ("dag_id",),
    "task": ("dag_id", "task_id"),
    "team": ("team",),
    "zone": ("zone",),
    "project": ("project",),
}
#: The figures of every row, after the group columns and ``carbon_signal``.
REPORT_COLUMNS: tuple[str, ...] = (
    "runs", "kwh", "carbon_g", "saved_carbon_g", "saved_pct", "prompt_tokens", "completion_tokens", "tokens",
    "g_per_1k_tokens", "cost_usd", "cost_per_run_usd", "cost_per_1k_tokens_usd", "energy_cost", "saved_energy_cost",
    "saved_cost_pct", "forced_rate", "deadline_misses", "mean_delay_s", "measured_share",
)
#: The currency of ``energy_cost`` and ``saved_energy_cost`` (the price source's, never converted):
#: ``mixed`` where a group's runs were priced in more than one, and then those figures are unknown.
CURRENCY_COLUMN = "price_currency"
MIXED = "mixed"
#: The columns of the default table, which fits a terminal; ``--wide`` (``wide=True``) shows them all.
COMPACT_COLUMNS: tuple[str, ...] = (
    "runs", "kwh", "carbon_g", "saved_carbon_g", "saved_pct", "tokens", "cost_usd", "forced_rate", "deadline_misses",
)
REPORT_FORMATS: tuple[str, ...] = ("table", "csv", "parquet", "json")
UNKNOWN = "unknown"

_NAN = float("nan")
_INT_COLUMNS = ("runs", "prompt_tokens", "completion_tokens", "tokens", "deadline_misses")
#: Cells a spreadsheet would run as a formula (OWASP's list); plain numbers such as -3 are left alone.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
#: The table's energy and carbon columns: (units, header); each column gets the unit its largest value needs.
_UNIT_COLUMNS: dict[str, tuple[tuple[Unit, ...], str]] = {
    "kwh": (ENERGY_UNITS, "energy_{}"),
    "carbon_g": (CARBON_UNITS, "carbon_{}"),
    "saved_carbon_g": (CARBON_UNITS, "saved_carbon_{}"),
    "g_per_1k_tokens": (CARBON_UNITS, "{}_per_1k_tokens"),
}


def _pandas():
    try:
        import pandas
    except ImportError:
        raise ConfigurationError("reports need pandas: pip install 'carbon-sensors[report]'") from None
    return pandas


def _value(x: float | None) -> float:
    return _NAN if x is None else float(x)


def _label(x: str | None) -> str:
    return UNKNOWN if x is None or x == "" else str(x)


def _facts(record: RunRecord, groups: tuple[str, ...]) -> dict[str, Any]:
    """One record's contribution to its group: sums, and the numerators and denominators of the ratios."""
    key_values = {"dag_id": record.key.dag_id, "task_id": record.key.task_id, "team": record.team,
                  "zone": record.zone, "project": record.project}
    carbon, saved, cost, tokens = record.carbon_g, record.saved_carbon_g, record.cost_usd, record.total_tokens
    counterfactual = record.counterfactual_carbon_g
    if counterfactual is None and carbon is not None and saved is not None:
        counterfactual = carbon + saved
    both = saved is not None and counterfactual is not None
    priced = record.price_currency is not None
    energy_cost, saved_cost = record.energy_cost, record.saved_energy_cost
    cost_both = priced and saved_cost is not None and record.counterfactual_energy_cost is not None
    delay = record.delay_s
    return {
        **{name: _label(key_values[name]) for name in groups},
        "carbon_signal": _label(record.carbon_signal),
        "kwh": _value(record.energy_kwh),
        "carbon_g": _value(carbon),
        "saved_carbon_g": _value(saved),
        "_saved_with_cf": _value(saved) if both else _NAN,
        "_counterfactual": _value(counterfactual) if both else _NAN,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "tokens": tokens,
        "_carbon_of_token_runs": _value(carbon) if tokens and carbon is not None else _NAN,
        "_tokens_with_carbon": tokens if tokens and carbon is not None else 0,
        "cost_usd": _value(cost),
        "_costed": int(cost is not None),
        "_cost_of_token_runs": _value(cost) if tokens and cost is not None else _NAN,
        "_tokens_with_cost": tokens if tokens and cost is not None else 0,
        "_currency": record.price_currency if priced else "",
        "energy_cost": _value(energy_cost) if priced else _NAN,
        "saved_energy_cost": _value(saved_cost) if priced else _NAN,
        "_saved_cost_with_cf": _value(saved_cost) if cost_both else _NAN,
        "_counterfactual_cost": _value(record.counterfactual_energy_cost) if cost_both else _NAN,
        "_forced": int(bool(record.forced)),
        "deadline_misses": int(record.deadline_missed is True),
        "_delay": _value(delay),
        "_measured": int(record.carbon_basis == "measured"),
    }


def _ratio(numerator: pandas.Series, denominator: pandas.Series, scale: float = 1.0) -> pandas.Series:
    """``numerator / denominator * scale``; NaN where the denominator is zero or unknown (never inf)."""
    den = denominator.astype("float64")
    out = numerator.astype("float64") / den.where(den != 0) * scale
    return out.mask(out.abs() == math.inf)


def build_report(records: Iterable[RunRecord], by: str = "dag") -> pandas.DataFrame:
    """A DataFrame with one row per (group, ``carbon_signal``), sorted: :data:`REPORT_COLUMNS`, then ``price_currency``.

    - ``runs``: records; ``kwh``, ``carbon_g``, ``saved_carbon_g``, ``cost_usd``: sums of the known
      values (NaN when none is known); ``prompt_tokens``, ``completion_tokens``, ``tokens``: sums.
    - ``saved_pct``: saved / counterfactual * 100 over the records that know both (the
      counterfactual is ``carbon_g + saved_carbon_g`` where only those two are stored).
    - ``g_per_1k_tokens`` and ``cost_per_1k_tokens_usd``: grams (dollars) per 1,000 tokens over the
      runs that used tokens and know their grams (dollars).
    - ``cost_per_run_usd``: the mean cost of the runs whose cost is known.
    - ``energy_cost``, ``saved_energy_cost``: the energy's market cost and what waiting saved against
      starting at submission, in ``price_currency`` (the price source's); ``saved_cost_pct``: saved /
      abs(counterfactual) * 100 (prices can be negative). Unknown where a group mixes currencies.
    - ``forced_rate``, ``measured_share`` (``carbon_basis == "measured"``): shares of ``runs``, 0..1.
    - ``deadline_misses``: runs that ended after their deadline; ``mean_delay_s``: mean wait from
      submission to start over the runs that know both.
    """
    if by not in GROUPINGS:
        raise ConfigurationError(f"cannot group a report by {by!r}; use one of {', '.join(GROUPINGS)}")
    pd = _pandas()
    groups = GROUPINGS[by]
    keys = [*groups, "carbon_signal"]
    facts = pd.DataFrame([_facts(r, groups) for r in records])
    if facts.empty:
        empty = pd.DataFrame({name: pd.Series(dtype="str") for name in keys})
        for name in REPORT_COLUMNS:
            empty[name] = pd.Series(dtype="int64" if name in _INT_COLUMNS else "float64")
        empty[CURRENCY_COLUMN] = pd.Series(dtype="str")
        return empty
    grouped = facts.groupby(keys, sort=True)
    nan_sums = grouped[["kwh", "carbon_g", "saved_carbon_g", "cost_usd", "_saved_with_cf", "_counterfactual",
                        "_carbon_of_token_runs", "_cost_of_token_runs", "energy_cost", "saved_energy_cost",
                        "_saved_cost_with_cf", "_counterfactual_cost"]].sum(min_count=1)
    int_sums = grouped[["prompt_tokens", "completion_tokens", "tokens", "_tokens_with_carbon", "_tokens_with_cost",
                        "_costed", "_forced", "deadline_misses", "_measured"]].sum()
    g = pd.concat([nan_sums, int_sums], axis=1)
    g["runs"] = grouped.size()
    g["mean_delay_s"] = grouped["_delay"].mean()
    g["saved_pct"] = _ratio(g["_saved_with_cf"], g["_counterfactual"], 100.0)
    g["g_per_1k_tokens"] = _ratio(g["_carbon_of_token_runs"], g["_tokens_with_carbon"], 1000.0)
    g["cost_per_run_usd"] = _ratio(g["cost_usd"], g["_costed"])
    g["cost_per_1k_tokens_usd"] = _ratio(g["_cost_of_token_runs"], g["_tokens_with_cost"], 1000.0)
    g["saved_cost_pct"] = _ratio(g["_saved_cost_with_cf"], g["_counterfactual_cost"].abs(), 100.0)
    currencies = grouped["_currency"].agg(lambda c: ",".join(sorted(set(c) - {""})))
    g[CURRENCY_COLUMN] = currencies.where(~currencies.str.contains(","), MIXED)
    mixed = g[CURRENCY_COLUMN] == MIXED
    g.loc[mixed, ["energy_cost", "saved_energy_cost", "saved_cost_pct"]] = _NAN
    g["forced_rate"] = _ratio(g["_forced"], g["runs"])
    g["measured_share"] = _ratio(g["_measured"], g["runs"])
    out = g.reset_index()[[*keys, *REPORT_COLUMNS, CURRENCY_COLUMN]]
    for name in REPORT_COLUMNS:
        out[name] = out[name].astype("int64" if name in _INT_COLUMNS else "float64")
    out[CURRENCY_COLUMN] = out[CURRENCY_COLUMN].astype(str)
    return out


def neutralise_csv_cell(value: Any) -> Any:
    """Prefix ``'`` to text a spreadsheet would run as a formula (``=cmd()``, ``@x``, ``-x``); numbers pass.

    >>> neutralise_csv_cell("=HYPERLINK(1)"), neutralise_csv_cell("-3.5"), neutralise_csv_cell("nightly")
    ("'=HYPERLINK(1)", '-3.5', 'nightly')
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.match(value):
        return "'" + value
    return value


def _neutralised(df: pandas.DataFrame) -> pandas.DataFrame:
    pd = _pandas()
    out = df.copy()
    for name in out.columns:
        column = out[name]
        if pd.api.types.is_string_dtype(column) or pd.api.types.is_object_dtype(column):
            out[name] = column.map(neutralise_csv_cell).astype(object)
    return out


def _cells(values: Iterable[Any], number: Any) -> list[str]:
    return ["-" if v is None or not math.isfinite(float(v)) else number(float(v)) for v in values]


def table_text(df: pandas.DataFrame, *, wide: bool = False) -> str:
    """``df`` as an aligned table for people: energy and carbon in the unit each column needs, named in
    its header (``energy_Wh``, ``carbon_mg``), plain decimals, ``-`` for unknown figures. Only the
    group columns and :data:`COMPACT_COLUMNS` unless ``wide``.

    The figures keep their base units (``kwh``, ``carbon_g``) in CSV, Parquet and JSON, every column.
    """
    if not len(df):
        return "no runs"
    if not wide:
        df = df[[c for c in df.columns if (c not in REPORT_COLUMNS and c != CURRENCY_COLUMN) or c in COMPACT_COLUMNS]]
    shown = df.copy()
    headers = {}
    for name in df.columns:
        if name in _UNIT_COLUMNS:
            units, header = _UNIT_COLUMNS[name]
            unit = pick_unit([float(v) for v in df[name]], units)
            shown[name] = _cells(df[name], unit.number)
            headers[name] = header.format(unit.symbol)
        elif df[name].dtype.kind == "f":
            shown[name] = _cells(df[name], plain_number)
        elif name == CURRENCY_COLUMN:
            shown[name] = [v or "-" for v in df[name]]
    return shown.rename(columns=headers).to_string(index=False)


def _json_rows(df: pandas.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for row in df.to_dict(orient="records"):
        clean = {}
        for name, value in row.items():
            if hasattr(value, "item"):  # numpy scalar
                value = value.item()
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            clean[str(name)] = value
        rows.append(clean)
    return rows


def write_report(df: pandas.DataFrame, format: str = "table", out: str | Path | None = None, *,
                 wide: bool = False) -> None:
    """Write ``df`` as an aligned table, CSV, Parquet or JSON to the file ``out``, or to stdout when None.

    The table shows :data:`COMPACT_COLUMNS` unless ``wide``; the other formats hold every column.

    CSV cells that a spreadsheet would run as formulas are neutralised (see
    :func:`neutralise_csv_cell`): DAG ids and team names are anyone's strings. Parquet is binary and
    needs a file.
    """
    if format not in REPORT_FORMATS:
        raise ConfigurationError(f"unknown report format {format!r}; use one of {', '.join(REPORT_FORMATS)}")
    if format == "parquet":
        if out is None:
            raise ConfigurationError("Parquet is a binary format: give a file to write, e.g. --out report.parquet")
        try:
            df.to_parquet(out, index=False)
        except ImportError:
            raise ConfigurationError("Parquet needs pyarrow: pip install 'carbon-sensors[parquet]'") from None
        except OSError as exc:
            raise ConfigurationError(f"cannot write {out} ({exc}); give a writable path with --out") from exc
        return
    if format == "csv":
        buffer = io.StringIO()
        _neutralised(df).to_csv(buffer, index=False)
        text = buffer.getvalue()
    elif format == "json":
        text = json.dumps(_json_rows(df), indent=2, allow_nan=False) + "\n"
    else:
        text = table_text(df, wide=wide) + "\n"
    if out is None:
        sys.stdout.write(text)
        return
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot write {out} ({exc}); give a writable path with --out") from exc
