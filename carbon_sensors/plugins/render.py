"""The pages' HTML, the forecast chart's SVG and the CSV files, rendered on the server.

Everything goes through one Jinja2 environment with autoescaping on, so a DAG id, a task id or a
team name such as ``<script>`` is always shown as text. The chart is inline SVG drawn here: no
JavaScript, no CDN, nothing fetched by the browser, so the page works air-gapped. CSV cells that a
spreadsheet would run as a formula are neutralised (:func:`carbon_sensors.report.neutralise_csv_cell`).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

from carbon_sensors.ledger import DecisionEntry
from carbon_sensors.records import RunRecord
from carbon_sensors.report import neutralise_csv_cell
from carbon_sensors.units import Unit, carbon_unit, energy_unit, format_carbon, format_energy, plain_number

__all__ = [
    "RUN_COLUMNS",
    "TOTAL_COLUMNS",
    "ChartWindow",
    "ZoneChart",
    "chart_svg",
    "environment",
    "parse_since",
    "render_page",
    "run_rows",
    "task_href",
    "totals",
    "write_csv",
]

#: Chart size in SVG user units; it scales to the page's width.
WIDTH, HEIGHT = 960, 300
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 20, 16, 48
LANE_HEIGHT = 15
MAX_LANES = 4
CHAR_WIDTH = 6.6  # of the 11 px label font, for lane assignment
_HOUR = timedelta(hours=1)
#: What a page shows for an unknown value (an en dash).
UNKNOWN = "\u2013"
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$", re.IGNORECASE)
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
MAX_PERIOD = timedelta(days=366)


# -- formatting -------------------------------------------------------------------------------------


def fmt_time(value: datetime | None) -> str:
    """``2026-06-15 03:00 UTC``; an en dash when unknown."""
    if value is None:
        return UNKNOWN
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _unknown(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def fmt_number(value: float | int | None, digits: int = 2) -> str:
    """A number for people: thousands separated, ``digits`` decimals (fewer for large values, two
    significant digits for tiny ones, never e-notation); en dash when unknown."""
    if _unknown(value):
        return UNKNOWN
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value != 0 and abs(value) < 10 ** -digits:
        return plain_number(value, 2)
    return f"{value:,.{digits}f}"


def fmt_energy(kwh: float | None) -> str:
    """One energy in the unit it needs (``12.3 Wh``); en dash when unknown."""
    return UNKNOWN if _unknown(kwh) else format_energy(kwh)


def fmt_carbon(grams: float | None) -> str:
    """One carbon mass in the unit it needs (``450 mg``); en dash when unknown."""
    return UNKNOWN if _unknown(grams) else format_carbon(grams)


def fmt_in(value: float | None, unit: Unit) -> str:
    """``value`` (base units) as a number in a column's ``unit``, without the symbol; en dash when unknown."""
    return UNKNOWN if _unknown(value) else unit.number(value)


def fmt_duration(value: float | timedelta | None) -> str:
    """``2 h 05 min``, ``45 min``, ``12 s``; en dash when unknown."""
    if value is None:
        return UNKNOWN
    total = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if total < 60:
        return f"{total:.0f} s"
    minutes = round(total / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} d {hours % 24} h"


def parse_since(text: str | None, now: datetime, default: str = "7d") -> tuple[datetime, str]:
    """``(start, label)`` of a period: ``24h``, ``7d``, ``2w``, ``90m``, or an ISO date or time (UTC when naive).

    Raises ValueError with a message for people when ``text`` is neither, or reaches back more than a year.
    """
    text = (text or default).strip()
    match = _SINCE.match(text)
    if match:
        span = float(match.group(1)) * _UNITS[match.group(2).lower()]
        start = now - span
    else:
        try:
            start = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"cannot read the period {text!r}: write e.g. 24h, 7d, 2w or a date such as 2026-06-01") from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        start = start.astimezone(UTC)
    if now - start > MAX_PERIOD:
        raise ValueError(f"the period {text!r} reaches back more than a year: choose a shorter one")
    return start, text


def task_href(dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> str:
    """The task view's address, relative to the app's root (so it works framed and on its own)."""
    query = {"dag_id": dag_id, "task_id": task_id, "run_id": run_id}
    if map_index >= 0:
        query["map_index"] = str(map_index)
    return "task?" + urlencode(query)


# -- the chart --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChartWindow:
    """A waiting task's planned window in a zone, and its latest start."""

    label: str
    start: datetime
    end: datetime
    latest_start: datetime | None = None
    href: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ZoneChart:
    """What one zone's chart shows: intensity slots ``(start, end, gCO2e/kWh)``, planned windows, now."""

    zone: str
    now: datetime
    start: datetime
    end: datetime
    slots: Sequence[tuple[datetime, datetime, float]] = ()
    windows: Sequence[ChartWindow] = ()
    source: str = ""
    signal: str = ""
    note: str = ""

    @property
    def intensity_now(self) -> float | None:
        for start, end, value in self.slots:
            if start <= self.now < end:
                return value
        return None


@dataclass(slots=True)
class _Layout:
    chart: ZoneChart
    x0: float
    x1: float
    y0: float
    y1: float
    vmax: float
    x_ticks: list[dict[str, Any]] = field(default_factory=list)
    y_ticks: list[dict[str, Any]] = field(default_factory=list)
    line: str = ""
    area: str = ""
    windows: list[dict[str, Any]] = field(default_factory=list)
    latest: list[dict[str, Any]] = field(default_factory=list)
    now_x: float | None = None
    hidden_labels: int = 0

    def x(self, moment: datetime) -> float:
        span = (self.chart.end - self.chart.start).total_seconds() or 1.0
        share = (moment - self.chart.start).total_seconds() / span
        return round(self.x0 + (self.x1 - self.x0) * min(1.0, max(0.0, share)), 2)

    def y(self, value: float) -> float:
        return round(self.y1 - (self.y1 - self.y0) * min(1.0, max(0.0, value / self.vmax)), 2)


def _nice_max(value: float) -> tuple[float, float]:
    """An axis maximum at or above ``value`` and a tick step giving 4 to 6 ticks."""
    if value <= 0:
        return 100.0, 20.0
    raw = value / 5
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return step * math.ceil(value / step), step


def _hour_step(span: timedelta) -> int:
    hours = span.total_seconds() / 3600
    return next((s for s in (1, 2, 3, 6, 12, 24, 48) if hours / s <= 14), 96)


def _lanes(chart: ZoneChart, windows: list[ChartWindow]) -> tuple[dict[int, int | None], int]:
    """A label lane for each window (None: no room, the label is left out), and how many were left out."""
    span = (chart.end - chart.start).total_seconds() or 1.0
    plot = WIDTH - MARGIN_RIGHT - MARGIN_LEFT
    free_at: list[float] = []
    lane_of: dict[int, int | None] = {}
    for i, window in enumerate(windows):
        x = MARGIN_LEFT + plot * max(0.0, (window.start - chart.start).total_seconds() / span)
        lane = next((n for n, free in enumerate(free_at) if free <= x), None)
        if lane is None and len(free_at) < MAX_LANES:
            free_at.append(0.0)
            lane = len(free_at) - 1
        if lane is not None:
            free_at[lane] = x + len(window.label) * CHAR_WIDTH + 8
        lane_of[i] = lane
    return lane_of, sum(1 for lane in lane_of.values() if lane is None)


def _layout(chart: ZoneChart) -> _Layout:
    values = [v for _, _, v in chart.slots]
    vmax, step = _nice_max(max(values) if values else 0.0)
    visible = sorted((w for w in chart.windows if w.end > chart.start and w.start < chart.end),
                     key=lambda w: (w.start, w.label))
    lane_of, hidden = _lanes(chart, visible)
    top = MARGIN_TOP + LANE_HEIGHT * max(1, len(set(lane_of.values()) - {None}))
    lay = _Layout(chart, MARGIN_LEFT, WIDTH - MARGIN_RIGHT, top, HEIGHT - MARGIN_BOTTOM, vmax, hidden_labels=hidden)
    # y ticks
    for i in range(round(vmax / step) + 1):
        v = step * i
        lay.y_ticks.append({"y": lay.y(v), "label": fmt_number(v, 0 if step >= 1 else 1)})
    # x ticks on whole hours (UTC); a date under midnight, and under the first tick
    hours = _hour_step(chart.end - chart.start)
    tick = chart.start.replace(minute=0, second=0, microsecond=0)
    if tick < chart.start:
        tick += _HOUR
    while tick.hour % hours and tick <= chart.end:
        tick += _HOUR
    first = True
    while tick <= chart.end:
        lay.x_ticks.append({"x": lay.x(tick), "label": tick.strftime("%H:%M"),
                            "date": tick.strftime("%a %d %b") if first or tick.hour < hours else ""})
        first = False
        tick += hours * _HOUR
    # the intensity as steps
    points: list[tuple[float, float]] = []
    for start, end, value in chart.slots:
        if end <= chart.start or start >= chart.end:
            continue
        xs, xe, y = lay.x(max(start, chart.start)), lay.x(min(end, chart.end)), lay.y(value)
        if points and points[-1][0] == xs:
            points.append((xs, y))
        elif points:  # a gap in the data: lift the pen
            points.append((float("nan"), float("nan")))
            points.append((xs, y))
        else:
            points.append((xs, y))
        points.append((xe, y))
    segments: list[list[tuple[float, float]]] = [[]]
    for point in points:
        if math.isnan(point[0]):
            segments.append([])
        else:
            segments[-1].append(point)
    segments = [s for s in segments if s]
    lay.line = " ".join("M" + " L".join(f"{x:g},{y:g}" for x, y in seg) for seg in segments)
    lay.area = " ".join(
        f"M{seg[0][0]:g},{lay.y1:g} L" + " L".join(f"{x:g},{y:g}" for x, y in seg) + f" L{seg[-1][0]:g},{lay.y1:g} Z"
        for seg in segments
    )
    # planned windows, their labels stacked in lanes above the plot so they never overlap
    for i, window in enumerate(visible):
        xs, xe = lay.x(window.start), lay.x(window.end)
        lane = lane_of[i]
        lay.windows.append({
            "window": window, "x": xs, "width": max(2.0, round(xe - xs, 2)),
            "label_y": None if lane is None else MARGIN_TOP + LANE_HEIGHT * lane + 11,
            "title": f"{window.label}: planned {fmt_time(window.start)} to {fmt_time(window.end)}"
                     + (f"; {window.detail}" if window.detail else ""),
        })
        if window.latest_start is not None and chart.start <= window.latest_start <= chart.end:
            lay.latest.append({"window": window, "x": lay.x(window.latest_start),
                               "title": f"latest start of {window.label}: {fmt_time(window.latest_start)}"})
    if chart.start <= chart.now <= chart.end:
        lay.now_x = lay.x(chart.now)
    return lay


def chart_svg(chart: ZoneChart) -> str:
    """The zone's chart as an inline ``<svg>`` element (escaped; safe to put in a page as is)."""
    return environment().get_template("chart.svg.j2").render(lay=_layout(chart), width=WIDTH, height=HEIGHT)


# -- tables and CSV ---------------------------------------------------------------------------------

#: The columns of the recent-runs table and of ``runs.csv``, in order.
RUN_COLUMNS: tuple[str, ...] = (
    "started_at", "ended_at", "dag_id", "task_id", "run_id", "try_number", "map_index", "status", "team", "project",
    "cost_centre", "zone", "duration_s", "delay_s", "energy_kwh", "energy_measured", "carbon_g", "saved_carbon_g",
    "carbon_signal", "carbon_basis", "tokens", "cost_usd", "energy_cost", "saved_energy_cost", "price_currency", "forced",
    "forced_reason",
)
#: The columns of the totals tables and of ``totals.csv`` after the group column.
TOTAL_COLUMNS: tuple[str, ...] = (
    "carbon_signal", "runs", "energy_kwh", "carbon_g", "saved_carbon_g", "saved_pct", "tokens", "cost_usd", "energy_cost",
    "saved_energy_cost", "price_currency", "forced",
)


def run_rows(records: Iterable[RunRecord]) -> list[dict[str, Any]]:
    """One dict per record with :data:`RUN_COLUMNS`, newest start first."""
    rows = []
    for r in records:
        rows.append({
            "started_at": r.started_at, "ended_at": r.ended_at, "dag_id": r.key.dag_id, "task_id": r.key.task_id,
            "run_id": r.key.run_id, "try_number": r.key.try_number, "map_index": r.key.map_index, "status": r.status,
            "team": r.team, "project": r.project, "cost_centre": r.cost_centre, "zone": r.zone,
            "duration_s": r.duration_s, "delay_s": r.delay_s, "energy_kwh": r.energy_kwh,
            "energy_measured": r.energy_measured, "carbon_g": r.carbon_g, "saved_carbon_g": r.saved_carbon_g,
            "carbon_signal": r.carbon_signal, "carbon_basis": r.carbon_basis, "tokens": r.total_tokens,
            "cost_usd": r.cost_usd, "energy_cost": r.energy_cost, "saved_energy_cost": r.saved_energy_cost,
            "price_currency": r.price_currency, "forced": r.forced, "forced_reason": r.forced_reason,
        })
    epoch = datetime.min.replace(tzinfo=UTC)
    rows.sort(key=lambda row: row["started_at"] or epoch, reverse=True)
    return rows


def _add(total: float | None, value: float | None) -> float | None:
    if value is None:
        return total
    return value if total is None else total + value


def totals(records: Iterable[RunRecord], by: str) -> list[dict[str, Any]]:
    """Sums per DAG (``by="dag"``) or team (``by="team"``) and carbon signal, as ``carbon-sensors report`` groups.

    Grams of average and marginal intensity are never added up: each signal is a row of its own.
    An unknown team or signal is ``unknown``. ``saved_pct`` is saved / (carbon + saved) over the
    records that know both. Energy cost is summed in the price source's currency; a group whose runs
    were priced in more than one has ``price_currency`` ``mixed`` and no cost figure.
    """
    if by not in ("dag", "team"):
        raise ValueError(f"totals are by 'dag' or 'team', not {by!r}")
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        name = r.key.dag_id if by == "dag" else (r.team or "unknown")
        signal = r.carbon_signal or "unknown"
        g = groups.setdefault((name, signal), {
            by: name, "carbon_signal": signal, "runs": 0, "energy_kwh": None, "carbon_g": None, "saved_carbon_g": None,
            "tokens": 0, "cost_usd": None, "energy_cost": None, "saved_energy_cost": None, "forced": 0, "_saved": 0.0,
            "_base": 0.0, "_currencies": set(),
        })
        g["runs"] += 1
        g["energy_kwh"] = _add(g["energy_kwh"], r.energy_kwh)
        g["carbon_g"] = _add(g["carbon_g"], r.carbon_g)
        g["saved_carbon_g"] = _add(g["saved_carbon_g"], r.saved_carbon_g)
        g["tokens"] += r.total_tokens
        g["cost_usd"] = _add(g["cost_usd"], r.cost_usd)
        if r.price_currency is not None:
            g["_currencies"].add(r.price_currency)
            g["energy_cost"] = _add(g["energy_cost"], r.energy_cost)
            g["saved_energy_cost"] = _add(g["saved_energy_cost"], r.saved_energy_cost)
        g["forced"] += int(bool(r.forced))
        if r.carbon_g is not None and r.saved_carbon_g is not None:
            g["_saved"] += r.saved_carbon_g
            g["_base"] += r.carbon_g + r.saved_carbon_g
    out = []
    for key in sorted(groups):
        g = groups[key]
        saved, base, currencies = g.pop("_saved"), g.pop("_base"), g.pop("_currencies")
        g["saved_pct"] = saved / base * 100 if base > 0 else None
        g["price_currency"] = None if not currencies else currencies.pop() if len(currencies) == 1 else "mixed"
        if g["price_currency"] == "mixed":
            g["energy_cost"] = g["saved_energy_cost"] = None
        out.append(g)
    return out


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, float):  # 12 significant digits: no float noise, and a µWh run is not rounded away
        return repr(float(f"{value:.12g}"))
    return neutralise_csv_cell(value)


def write_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> str:
    """CSV text with a header; formula-like text cells (``=``, ``+``, ``-``, ``@``...) get a leading ``'``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_value(row.get(name)) for name in columns])
    return buffer.getvalue()


# -- pages ------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def environment() -> Any:
    """The Jinja2 environment of the pages: autoescaping on for every template, strict about undefined names."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("carbon_sensors.plugins", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(time=fmt_time, number=fmt_number, duration=fmt_duration, energy=fmt_energy, carbon=fmt_carbon,
                       in_unit=fmt_in)
    env.globals.update(task_href=task_href, chart_svg=chart_svg, energy_unit=energy_unit, carbon_unit=carbon_unit)
    return env


def render_page(template: str, **context: Any) -> str:
    """A page from its template, every value escaped."""
    return environment().get_template(template).render(**context)


def decision_detail(entry: DecisionEntry) -> str:
    """One line about a waiting decision's intensities, for tooltips."""
    parts = []
    if entry.intensity is not None:
        parts.append(f"{fmt_number(entry.intensity, 0)} gCO2e/kWh planned")
    if entry.intensity_at_submission is not None:
        parts.append(f"{fmt_number(entry.intensity_at_submission, 0)} at submission")
    if entry.saving_pct is not None:
        parts.append(f"{fmt_number(entry.saving_pct, 1)} % saving")
    return ", ".join(parts)
