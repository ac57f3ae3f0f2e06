"""The Carbon page's rendering: the SVG chart, the HTML tables, escaping, and the CSV files."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

import pytest

from carbon_sensors.ledger import DecisionEntry
from carbon_sensors.plugins import render
from carbon_sensors.records import RunKey, RunRecord

NOW = datetime(2026, 6, 15, 20, 17, tzinfo=UTC)
SCRIPT = "<script>alert(1)</script>"
SVG = "{http://www.w3.org/2000/svg}"


def slots(start, values):
    return [(start + timedelta(hours=i), start + timedelta(hours=i + 1), v) for i, v in enumerate(values)]


def chart(windows=(), values=(400, 380, 300, 200, 150, 180, 250, 300), **kwargs):
    start = NOW.replace(minute=0) - timedelta(hours=2)
    return render.ZoneChart(zone="DE", now=NOW, start=start, end=start + timedelta(hours=len(values)),
                            slots=slots(start, values), windows=list(windows), source="embedded-profile",
                            signal="average", **kwargs)


def window(label="embed", start_h=2, hours=1, latest_h=4):
    return render.ChartWindow(label=label, start=NOW + timedelta(hours=start_h),
                              end=NOW + timedelta(hours=start_h + hours), latest_start=NOW + timedelta(hours=latest_h))


def parse_svg(text):
    return ElementTree.fromstring(text)


def test_the_chart_is_well_formed_svg_with_hour_labels_and_units():
    """The chart parses as SVG and has hour tick labels, a date, the gCO2e/kWh axis title and a step line."""
    root = parse_svg(render.chart_svg(chart()))
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "gCO2e/kWh" in texts
    assert "20:00" in texts and "22:00" in texts
    assert "Mon 15 Jun" in texts
    line = next(p for p in root.iter(f"{SVG}path") if p.get("class") == "intensity")
    assert line.get("d").startswith("M")


def test_planned_windows_are_shaded_and_labelled_by_task():
    """Each waiting task's window is a rect labelled with its task, spanning its planned hours."""
    root = parse_svg(render.chart_svg(chart([window("embed", 2, 2), window("rebuild", 3, 1)])))
    groups = {g.get("data-task"): g for g in root.iter(f"{SVG}g") if g.get("class") == "planned-window"}
    assert set(groups) == {"embed", "rebuild"}
    rect = groups["embed"].find(f"{SVG}rect")
    assert float(rect.get("width")) > float(groups["rebuild"].find(f"{SVG}rect").get("width"))
    assert groups["embed"].find(f"{SVG}text").text == "embed"
    assert "planned 2026-06-15 22:17 UTC to 2026-06-16 00:17 UTC" in groups["embed"].find(f"{SVG}title").text


def test_overlapping_labels_go_to_separate_lanes():
    """Two windows starting at the same hour get their labels on different lines, never on top of each other."""
    root = parse_svg(render.chart_svg(chart([window("first_task", 2), window("second_task", 2)])))
    ys = {t.text: t.get("y") for t in root.iter(f"{SVG}text") if t.get("class") == "window-label"}
    assert ys["first_task"] != ys["second_task"]


def test_now_line_and_latest_start_markers_are_placed_in_time():
    """The now line sits at now, and a latest-start marker at the window's latest start, right of now."""
    root = parse_svg(render.chart_svg(chart([window("embed", 2, 1, latest_h=4)])))
    now = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "now-line").find(f"{SVG}line")
    latest = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "latest-start")
    assert latest.get("data-task") == "embed"
    assert float(latest.find(f"{SVG}line").get("x1")) > float(now.get("x1")) > render.MARGIN_LEFT


def test_a_task_id_with_markup_stays_text_in_the_chart():
    """A label holding <script> is escaped in the SVG: no script element, the text kept as is."""
    text = render.chart_svg(chart([window(SCRIPT)]))
    root = parse_svg(text)
    assert "<script>" not in text
    assert not list(root.iter(f"{SVG}script"))
    assert [g.get("data-task") for g in root.iter(f"{SVG}g") if g.get("class") == "planned-window"] == [SCRIPT]


def test_an_empty_forecast_says_so():
    """A zone without forecast data draws its frame and says there is nothing to draw."""
    text = render.chart_svg(render.ZoneChart(zone="ZA", now=NOW, start=NOW, end=NOW + timedelta(hours=24)))
    assert "no forecast to draw" in text


def entry(dag_id="catalog", task_id="embed", **kwargs):
    values = dict(reason="Waiting for the 02:00 window", zone="DE", planned_start=NOW + timedelta(hours=2),
                  latest_start=NOW + timedelta(hours=5), expected_duration_s=3600.0, intensity=200.0,
                  intensity_at_submission=300.0, saving_pct=33.3)
    values.update(kwargs)
    return DecisionEntry(RunKey("airflow", dag_id, task_id, "scheduled__1"), NOW - timedelta(hours=1), "wait", **values)


def record(dag_id="nightly", team="search", **kwargs):
    values = dict(status="success", team=team, started_at=NOW - timedelta(hours=3), ended_at=NOW - timedelta(hours=2),
                  energy_kwh=1.5, carbon_g=300.0, saved_carbon_g=100.0, carbon_signal="average", zone="DE",
                  cost_usd=0.12)
    values.update(kwargs)
    return RunRecord(RunKey("airflow", dag_id, "enrich", f"r{id(values)}"), **values)


def overview(**kwargs):
    context = dict(now=NOW, since_label="7d", since_start=NOW - timedelta(days=7), query="since=7d", period_options=[],
                   notices=[], charts=[], waiting=[], runs=[], runs_total=0, runs_truncated=False, totals_dag=[],
                   totals_team=[], version="0", ledger="sqlite://")
    context.update(kwargs)
    return render.render_page("overview.html.j2", **context)


def test_the_overview_escapes_dag_ids_and_teams():
    """A DAG id and a team holding markup are escaped in the waiting, runs and totals tables."""
    records = [record(dag_id=SCRIPT, team="<b>ops</b>")]
    html = overview(waiting=[{"entry": entry(dag_id=SCRIPT), "overdue": False}], runs=render.run_rows(records),
                    runs_total=1, totals_dag=render.totals(records, "dag"), totals_team=render.totals(records, "team"))
    assert SCRIPT not in html and "<b>ops</b>" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 3  # waiting row, run row, totals by DAG
    assert "&lt;b&gt;ops&lt;/b&gt;" in html


def test_the_overview_lists_waiting_tasks_with_their_plan_and_a_link():
    """A waiting row shows DAG, task, zone, planned and latest start and reason, and links to the task view."""
    html = overview(waiting=[{"entry": entry(), "overdue": True}])
    row = re.search(r'<table class="waiting">.*?</table>', html, re.S).group(0)
    for text in ("catalog", "embed", "DE", "2026-06-15 22:17 UTC", "2026-06-16 01:17 UTC",
                 "Waiting for the 02:00 window", "33.3 %", "no re-plan since"):
        assert text in row, text
    assert 'href="task?dag_id=catalog&amp;task_id=embed&amp;run_id=scheduled__1"' in row


def test_the_task_view_shows_plan_trail_and_record():
    """The task view shows the latest decision as the plan, every decision in the trail, and the record."""
    first = entry()
    last = replace(entry(reason="Re-planned: the 03:00 window is cleaner", planned_start=NOW + timedelta(hours=3)),
                   decided_at=NOW)
    html = render.render_page("task.html.j2", now=NOW, dag_id="catalog", task_id="embed", run_id="scheduled__1",
                              map_index=-1, notices=[], latest=last, trail=[first, last], records=[record()],
                              chart=None, version="0", ledger="sqlite://")
    plan = re.search(r'<dl class="facts plan">.*?</dl>', html, re.S).group(0)
    assert "Re-planned: the 03:00 window is cleaner" in plan and "2026-06-15 23:17 UTC" in plan
    assert len(re.findall(r"<tr>", re.search(r'<table class="trail">.*?</table>', html, re.S).group(0))) == 3
    assert "300 g CO2e" in html and "1.50 kWh" in html


def test_totals_keep_signals_apart_and_compute_the_saving():
    """Totals sum per DAG and signal; average and marginal grams are never added together."""
    rows = render.totals([record(), record(), record(carbon_signal="marginal", carbon_g=50.0, saved_carbon_g=None)], "dag")
    assert [(r["dag"], r["carbon_signal"], r["runs"]) for r in rows] == [("nightly", "average", 2), ("nightly", "marginal", 1)]
    assert rows[0]["carbon_g"] == 600.0 and rows[0]["saved_pct"] == pytest.approx(25.0)
    assert rows[1]["saved_pct"] is None


def test_the_csv_neutralises_formulas_and_keeps_numbers():
    """A team starting with = gets a leading quote; negative numbers and dates are left as they are."""
    text = render.write_csv(render.run_rows([record(team='=HYPERLINK("x")', saved_carbon_g=-3.5)]), render.RUN_COLUMNS)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["team"] == "'=HYPERLINK(\"x\")"
    assert rows[0]["saved_carbon_g"] == "-3.5"
    assert rows[0]["started_at"] == "2026-06-15T17:17:00+00:00"
    assert list(rows[0]) == list(render.RUN_COLUMNS)


@pytest.mark.parametrize("cell", ["=1+1", "+cmd", "-cmd", "@SUM(A1)", "\tx"])
def test_every_formula_prefix_is_neutralised_in_csv(cell):
    """Each character a spreadsheet reads as a formula start is neutralised in a DAG id cell."""
    text = render.write_csv([{"dag_id": cell}], ["dag_id"])
    assert list(csv.reader(io.StringIO(text)))[1] == ["'" + cell]


@pytest.mark.parametrize(("text", "hours"), [("24h", 24), ("7d", 168), ("2w", 336), ("90m", 1.5), ("2026-06-14", 44.28)])
def test_periods_are_read(text, hours):
    """Periods are relative spans or dates (UTC when naive)."""
    start, label = render.parse_since(text, NOW)
    assert (NOW - start).total_seconds() / 3600 == pytest.approx(hours, abs=0.01)
    assert label == text


@pytest.mark.parametrize("text", ["yesterday", "400d", "7x"])
def test_bad_periods_are_refused_with_a_hint(text):
    """A period that is not a span or a date, or reaches back more than a year, is refused with an example."""
    with pytest.raises(ValueError, match=r"e.g. 24h|more than a year"):
        render.parse_since(text, NOW)


E_NOTATION = re.compile(r"\d[eE][+-]?\d")


def test_the_run_and_totals_tables_name_each_columns_unit_and_never_print_e_notation():
    """A few-millisecond run: energy in µWh and carbon in µg, named in the headers; costs in plain decimals."""
    records = [record(energy_kwh=5.643e-10, carbon_g=9.712e-08, saved_carbon_g=1.8e-08, cost_usd=3.2e-11)]
    html = overview(runs=render.run_rows(records), runs_total=1, totals_dag=render.totals(records, "dag"),
                    totals_team=render.totals(records, "team"))
    for table in ("runs", "totals totals-dag", "totals totals-team"):
        part = re.search(rf'<table class="{table}">.*?</table>', html, re.S).group(0)
        heads = re.findall(r"<th[^>]*>(.*?)</th>", part)
        assert {"Energy (µWh)", "CO2e (µg)", "Saved CO2e (µg)"} <= set(heads), heads
        cells = re.findall(r"<td[^>]*>(.*?)</td>", part, re.S)
        assert "0.564" in "".join(cells) and "0.0971" in cells and "0.0180" in cells
        assert not E_NOTATION.search(part), part
    assert "0.000000000032" in html


def test_a_column_of_the_runs_table_shares_one_unit():
    """A large run beside a small one: the energy column is in kWh, the small one in plain decimals."""
    records = [record(energy_kwh=2.5, carbon_g=1500.0), record(energy_kwh=0.0004, carbon_g=0.2)]
    part = re.search(r'<table class="runs">.*?</table>', overview(runs=render.run_rows(records), runs_total=2), re.S).group(0)
    assert "Energy (kWh)" in part and "CO2e (kg)" in part
    assert "2.50" in part and "0.000400" in part and "1.50" in part and "0.000200" in part


def test_the_task_view_gives_each_figure_its_own_unit():
    """On the task view a small run's energy and carbon read 0.564 µWh and 0.0971 µg CO2e, not e-notation."""
    html = render.render_page("task.html.j2", now=NOW, dag_id="catalog", task_id="embed", run_id="scheduled__1",
                              map_index=-1, notices=[], latest=entry(), trail=[entry()],
                              records=[record(energy_kwh=5.643e-10, carbon_g=9.712e-08, saved_carbon_g=1.8e-08,
                                              counterfactual_carbon_g=1.151e-07, cost_usd=3.2e-11)],
                              chart=None, version="0", ledger="sqlite://")
    assert "0.564 µWh" in html and "0.0971 µg CO2e" in html and "0.0180 µg CO2e" in html and "0.115 µg CO2e" in html
    body = re.sub(r"<style.*?</style>", "", html, flags=re.S)
    assert not E_NOTATION.search(body), E_NOTATION.search(body)


def test_the_csv_keeps_small_figures_exactly_in_base_units():
    """runs.csv keeps kWh and grams as recorded: a µWh run is not rounded to 1e-09, and 0.1 + 0.2 is 0.3."""
    text = render.write_csv(render.run_rows([record(energy_kwh=5.643e-10, carbon_g=0.1 + 0.2)]), render.RUN_COLUMNS)
    row = next(csv.DictReader(io.StringIO(text)))
    assert float(row["energy_kwh"]) == 5.643e-10 and row["carbon_g"] == "0.3"


PRICED = dict(price_currency="EUR", price_source="entsoe", expected_price_per_mwh=60.0, price_per_mwh=58.0,
              counterfactual_price_per_mwh=110.0, expected_energy_cost=0.09, energy_cost=0.087,
              counterfactual_energy_cost=0.165, saved_energy_cost=0.078)


def test_the_pages_show_the_energy_cost_and_its_saving_next_to_carbon():
    """A priced decision and run show price, cost and cost saved in the price's currency; an unpriced one a dash."""
    decision = entry(price=58.0, price_at_submission=110.0, cost_change_pct=-47.3, price_currency="EUR")
    html = render.render_page("task.html.j2", now=NOW, dag_id="catalog", task_id="embed", run_id="scheduled__1",
                              map_index=-1, notices=[], latest=decision, trail=[decision], records=[record(**PRICED)],
                              chart=None, version="0", ledger="sqlite://")
    plan = re.search(r'<dl class="facts plan">.*?</dl>', html, re.S).group(0)
    assert "58.00 EUR/MWh" in plan and "at submission 110.00 EUR/MWh" in plan and "-47.3 %" in plan
    facts = re.search(r'<dl class="facts record">.*?</dl>', html, re.S).group(0)
    assert "0.0870 EUR at 58.00 EUR/MWh" in facts and "0.0780 EUR (would have been 0.1650 EUR" in facts
    records = [record(**PRICED), record()]
    page = overview(waiting=[{"entry": decision, "overdue": False}], runs=render.run_rows(records), runs_total=2,
                    totals_dag=render.totals(records, "dag"), totals_team=[])
    runs = re.search(r'<table class="runs">.*?</table>', page, re.S).group(0)
    assert "0.0870 EUR" in runs and "0.0780 EUR" in runs
    assert "58.0 EUR/MWh (-47.3 %)" in re.search(r'<table class="waiting">.*?</table>', page, re.S).group(0)


def test_totals_never_add_two_currencies():
    """Cost totals are per currency; a group priced in EUR and USD says mixed and sums no cost."""
    rows = render.totals([record(**PRICED), record(**PRICED), record()], "dag")
    assert rows[0]["price_currency"] == "EUR" and rows[0]["energy_cost"] == pytest.approx(0.174)
    mixed = render.totals([record(**PRICED), record(**{**PRICED, "price_currency": "USD"})], "dag")
    assert mixed[0]["price_currency"] == "mixed" and mixed[0]["energy_cost"] is None
