"""The FastAPI app behind the "Carbon" page, mounted by the plugin at ``/carbon-sensors`` in Airflow's API server.

Routes (every one needs a signed-in Airflow user: a bearer token or the UI's session cookie):

- ``/``: per zone, the forecast with the planned windows of waiting tasks; the waiting tasks; the
  recent runs; totals by DAG and by team over ``?since=7d`` (``24h``, ``2w``, a date, ...).
- ``/task?dag_id=&task_id=&run_id=&map_index=``: one task instance's plan, decision trail and record.
- ``/runs.csv?since=7d``, ``/totals.csv?since=7d&by=dag|team``: the same rows as CSV.

Where the waiting tasks come from: the ledger's decision trail (:meth:`Ledger.waiting`), not
Airflow's trigger table. The trail holds the plan itself (planned window, latest start, intensities,
reason), is written by our own code in every process that decides, and is read through our own
schema, whereas the trigger table holds only the kwargs of a gate's first plan, in Airflow's private
schema. A gate never waits past its latest start, so a ``wait`` left behind by a task that was
cleared or killed while deferred drops out an hour after its latest start.

Settings: ``[carbon_sensors] ledger_url`` (the ledger, as for the gates), ``ui_zones`` (zones to
chart even when no gate waits there, e.g. ``DE,GB``), ``ui_source`` (the source of those charts:
a kind such as ``embedded`` or a JSON spec; default: the embedded profile).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from carbon_sensors.clock import Clock, default_clock
from carbon_sensors.errors import CarbonSensorsError
from carbon_sensors.ledger import DecisionEntry, Ledger, default_ledger_url, mask_url
from carbon_sensors.plugins import render
from carbon_sensors.records import RunKey, RunRecord

__all__ = ["SECURITY_HEADERS", "authenticated", "create_app"]

log = logging.getLogger(__name__)

#: No script runs on these pages, nothing loads from elsewhere, and only the Airflow UI may frame them.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
PERIODS = ("24h", "7d", "30d", "90d")
#: A waiting gate re-plans at its next check; this long after it without a newer decision, it is flagged.
OVERDUE_AFTER = timedelta(minutes=10)
#: At most this many runs are listed on the page (the CSV has them all).
MAX_RUNS_SHOWN = 500
FETCH_TIMEOUT_S = 10.0
MAX_TRIES_PROBED = 50


def _airflow_authenticated() -> Any:
    from airflow.api_fastapi.core_api.security import requires_authenticated

    return requires_authenticated()


#: The dependency every route has: Airflow's own check that the caller is a signed-in user.
authenticated = _airflow_authenticated()


def _conf(key: str) -> str | None:
    from carbon_sensors.airflow.settings import conf

    value = conf(key)
    return str(value).strip() if value not in (None, "") else None


@dataclass(slots=True)
class _Settings:
    ledger_url: str | None
    clock: Clock | None
    zones: tuple[str, ...] | None
    source: Any


def create_app(ledger_url: str | None = None, *, clock: Clock | None = None, zones: list[str] | None = None,
               source: Any = None) -> FastAPI:
    """The app; arguments left out come from Airflow's configuration when a request arrives."""
    app = FastAPI(
        title="carbon-sensors", docs_url=None, redoc_url=None, openapi_url=None,
        dependencies=[Depends(authenticated)],
    )
    settings = _Settings(ledger_url, clock, tuple(zones) if zones is not None else None, source)
    ledgers: dict[str, Ledger] = {}

    def ledger() -> Ledger:
        url = settings.ledger_url or _ledger_url()
        if url not in ledgers:
            ledgers[url] = Ledger(url)
        return ledgers[url]

    def now() -> datetime:
        return (settings.clock or default_clock()).now().astimezone(UTC)

    @app.middleware("http")
    async def _security_headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.get("/", response_class=HTMLResponse)
    async def overview(since: str | None = None, zone: Annotated[list[str] | None, Query()] = None) -> HTMLResponse:
        moment = now()
        notices: list[dict[str, str]] = []
        try:
            start, label = render.parse_since(since, moment)
        except ValueError as exc:
            notices.append({"kind": "error", "text": f"{exc}; showing the last 7 days."})
            start, label = render.parse_since(None, moment)
        waiting: list[DecisionEntry] = []
        records: list[RunRecord] = []
        book = None
        try:
            book = ledger()
            waiting = await run_in_threadpool(book.waiting, moment)
            records = await run_in_threadpool(book.records, start)
        except CarbonSensorsError as exc:
            notices.append({"kind": "error", "text": f"Cannot read the ledger: {exc}"})
        charts = await _charts(settings, waiting, zone or [], moment)
        rows = render.run_rows(records)
        html = render.render_page(
            "overview.html.j2", now=moment, since_label=label, since_start=start, query=urlencode({"since": label}),
            period_options=[{"label": p, "query": urlencode({"since": p})} for p in PERIODS], notices=notices,
            charts=charts,
            waiting=[{"entry": e, "overdue": e.next_check is not None and moment - e.next_check > OVERDUE_AFTER}
                     for e in waiting],
            runs=rows[:MAX_RUNS_SHOWN], runs_total=len(rows), runs_truncated=len(rows) > MAX_RUNS_SHOWN,
            totals_dag=render.totals(records, "dag"), totals_team=render.totals(records, "team"),
            version=_version(), ledger=_where(book),
        )
        return HTMLResponse(html)

    @app.get("/task", response_class=HTMLResponse)
    async def task_view(dag_id: str, task_id: str, run_id: str, map_index: str | None = None) -> HTMLResponse:
        moment = now()
        index = _map_index(map_index)
        notices: list[dict[str, str]] = []
        trail: list[DecisionEntry] = []
        records: list[RunRecord] = []
        book = None
        try:
            book = ledger()
            trail = await run_in_threadpool(book.decisions, dag_id=dag_id, task_id=task_id, run_id=run_id,
                                            map_index=index)
            records = await run_in_threadpool(_records_of, book, dag_id, task_id, run_id, index, trail)
        except CarbonSensorsError as exc:
            notices.append({"kind": "error", "text": f"Cannot read the ledger: {exc}"})
        latest = trail[-1] if trail else None
        chart = None
        if latest is not None and latest.zone:
            chart = await _chart(latest.zone, latest.source_spec or settings.source or _ui_source(), [latest],
                                 moment, since=latest.submitted_at)
        html = render.render_page(
            "task.html.j2", now=moment, dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=index,
            notices=notices, latest=latest, trail=trail, records=records, chart=chart, version=_version(),
            ledger=_where(book),
        )
        return HTMLResponse(html)

    @app.get("/runs.csv")
    async def runs_csv(since: str | None = None) -> Response:
        start, label = _period_or_400(since, now())
        if isinstance(start, Response):
            return start
        records = await _records_or_503(ledger, start)
        if isinstance(records, Response):
            return records
        return _csv(render.write_csv(render.run_rows(records), render.RUN_COLUMNS), f"carbon-runs-{label}.csv")

    @app.get("/totals.csv")
    async def totals_csv(since: str | None = None, by: str = "dag") -> Response:
        if by not in ("dag", "team"):
            return PlainTextResponse(f"cannot total by {by!r}: use by=dag or by=team", status_code=400)
        start, label = _period_or_400(since, now())
        if isinstance(start, Response):
            return start
        records = await _records_or_503(ledger, start)
        if isinstance(records, Response):
            return records
        columns = (by, *render.TOTAL_COLUMNS)
        return _csv(render.write_csv(render.totals(records, by), columns), f"carbon-totals-by-{by}-{label}.csv")

    return app


def _ledger_url() -> str:
    from carbon_sensors.airflow.settings import ledger_url

    return ledger_url() or default_ledger_url()


def _version() -> str:
    from carbon_sensors import __version__

    return __version__


def _where(book: Ledger | None) -> str:
    return render.UNKNOWN if book is None else mask_url(book.url)


def _map_index(value: str | None) -> int:
    """The map index from the query; the UI leaves ``{MAP_INDEX}`` in place for tasks that are not mapped."""
    try:
        return int(value) if value not in (None, "") else -1
    except ValueError:
        return -1


def _period_or_400(since: str | None, moment: datetime) -> tuple[Any, str]:
    try:
        return render.parse_since(since, moment)
    except ValueError as exc:
        return PlainTextResponse(str(exc), status_code=400), ""


async def _records_or_503(ledger: Any, start: datetime) -> list[RunRecord] | Response:
    try:
        return await run_in_threadpool(ledger().records, start)
    except CarbonSensorsError as exc:
        return PlainTextResponse(f"cannot read the ledger: {exc}", status_code=503)


def _csv(text: str, filename: str) -> Response:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in filename)
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{safe}"'})


def _records_of(book: Ledger, dag_id: str, task_id: str, run_id: str, map_index: int,
                trail: list[DecisionEntry]) -> list[RunRecord]:
    """The run records of a task instance's tries: those its decisions name, and the ones right after."""
    known = max((e.key.try_number for e in trail), default=1)
    records = []
    for try_number in range(1, MAX_TRIES_PROBED + 1):
        record = book.get(RunKey("airflow", dag_id, task_id, run_id, try_number, map_index))
        if record is not None:
            records.append(record)
        elif try_number > known:
            break
    return records


def _ui_source() -> Any:
    text = _conf("ui_source")
    if not text:
        return {"kind": "embedded"}
    if text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            log.warning("[carbon_sensors] ui_source is not JSON (%r); using the embedded profile", text)
            return {"kind": "embedded"}
    return {"kind": text}


def _configured_zones(settings: _Settings) -> list[str]:
    if settings.zones is not None:
        return list(settings.zones)
    text = _conf("ui_zones") or ""
    return [z.strip() for z in text.split(",") if z.strip()]


async def _charts(settings: _Settings, waiting: list[DecisionEntry], asked: list[str],
                  moment: datetime) -> list[render.ZoneChart]:
    zones: list[str] = []
    for zone in [*_configured_zones(settings), *asked, *sorted({e.zone for e in waiting if e.zone})]:
        if zone not in zones:
            zones.append(zone)
    charts = []
    for zone in zones[:20]:
        here = [e for e in waiting if e.zone == zone]
        spec = next((e.source_spec for e in here if e.source_spec), None) or settings.source or _ui_source()
        charts.append(await _chart(zone, spec, here, moment))
    return charts


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _window(entry: DecisionEntry) -> render.ChartWindow | None:
    if entry.planned_start is None:
        return None
    duration = timedelta(seconds=entry.expected_duration_s or 0)
    label = entry.key.task_id + (f" [{entry.key.map_index}]" if entry.key.map_index >= 0 else "")
    detail = f"DAG {entry.key.dag_id}, run {entry.key.run_id}"
    if intensities := render.decision_detail(entry):
        detail += f"; {intensities}"
    return render.ChartWindow(
        label=label, start=entry.planned_start, end=entry.planned_start + duration, latest_start=entry.latest_start,
        href=render.task_href(entry.key.dag_id, entry.key.task_id, entry.key.run_id, entry.key.map_index),
        detail=detail,
    )


async def _chart(zone: str, spec: Any, entries: list[DecisionEntry], moment: datetime,
                 since: datetime | None = None) -> render.ZoneChart:
    """One zone's chart: the forecast from ``spec`` (the embedded profile if that fails), and the entries' windows."""
    windows = [w for w in map(_window, entries) if w is not None]
    start = _floor_hour(moment) - timedelta(hours=2)
    if since is not None:
        start = max(min(start, _floor_hour(since)), moment - timedelta(days=2))
    ends = [moment + timedelta(hours=24)] + [w.end for w in windows] + [w.latest_start for w in windows if w.latest_start]
    end = min(max(ends) + timedelta(hours=1), moment + timedelta(days=7))
    end = _floor_hour(end) + (timedelta(hours=1) if end != _floor_hour(end) else timedelta(0))
    slots, source, signal, note = await _forecast(zone, spec, start, end, moment)
    return render.ZoneChart(zone=zone, now=moment, start=start, end=end, slots=slots, windows=windows, source=source,
                            signal=signal, note=note)


async def _forecast(zone: str, spec: Any, start: datetime, end: datetime,
                    moment: datetime) -> tuple[list[tuple[datetime, datetime, float]], str, str, str]:
    import carbon_sensors.hooks.shared_cache  # noqa: F401 - the UI reads through the deployment's shared cache too
    from carbon_sensors.signals import EmbeddedProfileSource, source_from_spec

    problem = ""
    try:
        source = source_from_spec(spec)
        forecast = None
        for first in (start, _floor_hour(moment)):  # a live source may have no history before now
            try:
                forecast = await asyncio.wait_for(source.fetch(zone, first, end, now=moment), FETCH_TIMEOUT_S)
                break
            except CarbonSensorsError as exc:
                problem = str(exc)
        if forecast is not None:
            return _slots(forecast), forecast.source, forecast.signal, ""
    except (CarbonSensorsError, OSError, TimeoutError) as exc:
        problem = str(exc) or type(exc).__name__
    embedded = EmbeddedProfileSource()
    try:
        embedded.check_zone(zone)
    except CarbonSensorsError:
        return [], "", "", f"No forecast for {zone}: {problem}"
    forecast = embedded.fetch_now(zone, start, end, now=moment)
    kind = spec.get("kind") if isinstance(spec, dict) else spec
    note = "" if kind == "embedded" else f"The source failed ({problem}); showing the embedded profile instead."
    return _slots(forecast), forecast.source, forecast.signal, note


def _slots(forecast: Any) -> list[tuple[datetime, datetime, float]]:
    bounds = [*forecast.starts_s, forecast.end_s]
    return [(datetime.fromtimestamp(bounds[i], UTC), datetime.fromtimestamp(bounds[i + 1], UTC), float(value))
            for i, value in enumerate(forecast.values)]
