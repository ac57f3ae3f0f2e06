"""The decision trail writer, where gates record their decisions, the metrics they emit, and the extra link."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import TaskDeferred
from airflow_context import context_at
from forecast_csv import write_forecast_csv

from carbon_sensors import After
from carbon_sensors.errors import LedgerError
from carbon_sensors.gate import add_decision_listener, remove_decision_listener
from carbon_sensors.ledger import DecisionEntry, Ledger
from carbon_sensors.plugins import metrics, trail
from carbon_sensors.plugins.links import CarbonPlanLink, task_view_path
from carbon_sensors.records import RunKey, RunRecord
from carbon_sensors.sensors import CarbonAwareSensor
from carbon_sensors.testing import FrozenClock, use_clock
from carbon_sensors.triggers import CarbonWindowTrigger

T0 = datetime(2026, 6, 15, 0, 0, tzinfo=UTC)
DIP_AT_3 = [400, 400, 400, 100, 400, 400, 400, 400, 400, 400]


def entry(n=0, status="wait"):
    return DecisionEntry(RunKey("airflow", "catalog", f"task_{n}", "scheduled__1"), T0 + timedelta(seconds=n), status,
                         reason="waiting", zone="DE")


class FlakyLedger:
    """Stands in for a ledger whose database is down until ``up`` is set; counts the writes it lands."""

    def __init__(self, up=False, delay_s=0.0):
        self.up, self.delay_s, self.stored, self.calls = up, delay_s, [], 0

    def add_decisions(self, entries):
        self.calls += 1
        time.sleep(self.delay_s)
        if not self.up:
            raise LedgerError("cannot reach the ledger at postgresql://db/ledger: connection refused")
        self.stored.extend(entries)


@pytest.fixture
def writer_of():
    """Builds writers and closes them after the test."""
    made = []

    def make(ledger, **kwargs):
        writer = trail.DecisionWriter(ledger, **{"flush_interval_s": 3600.0, **kwargs})
        made.append(writer)
        return writer

    yield make
    for writer in made:
        writer.close(timeout_s=1)


def wait_until(condition, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# -- the writer ------------------------------------------------------------------------------------


def test_the_background_thread_flushes_decisions_to_the_ledger(writer_of, tmp_path):
    """Submitted decisions land in the ledger from the writer's own thread, every flush interval."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    writer = writer_of(ledger, flush_interval_s=0.05)
    assert all(writer.submit(entry(n)) for n in range(25))
    wait_until(lambda: len(ledger.decisions()) == 25)
    assert writer.written == 25 and writer.queued == 0 and writer.dropped == 0
    assert writer._thread is not None and writer._thread.name == "carbon-sensors-decisions"


def test_a_full_batch_is_written_without_waiting_for_the_interval(writer_of):
    """Once a batch's worth is queued, the thread writes it at once instead of holding it for the interval."""
    ledger = FlakyLedger(up=True)
    writer = writer_of(ledger, batch_size=10)
    for n in range(25):
        writer.submit(entry(n))
    wait_until(lambda: len(ledger.stored) >= 20)
    assert writer.queued <= 5


def test_a_full_queue_drops_and_counts_with_one_warning(writer_of, caplog):
    """Past max_queue, submit() returns False at once, counts the drop, and warns once, not per decision."""
    writer = writer_of(FlakyLedger(up=True), max_queue=3)
    with caplog.at_level(logging.WARNING, logger="carbon_sensors.plugins.trail"):
        results = [writer.submit(entry(n)) for n in range(6)]
    assert results == [True, True, True, False, False, False]
    assert writer.dropped == 3
    assert len([r for r in caplog.records if "not recorded" in r.message]) == 1
    assert writer.flush() == 3


def test_a_database_failure_is_retried_and_logged_once_a_minute(writer_of, caplog):
    """While the database is down, flushes fail quietly (one warning), keep the batch, and land it once it is back."""
    ledger = FlakyLedger(up=False)
    writer = writer_of(ledger)
    for n in range(4):
        writer.submit(entry(n))
    with caplog.at_level(logging.WARNING, logger="carbon_sensors.plugins.trail"):
        assert [writer.flush() for _ in range(3)] == [0, 0, 0]
    assert writer.failures == 3 and writer.queued == 4
    assert len([r for r in caplog.records if "cannot write" in r.message]) == 1
    ledger.up = True
    writer.submit(entry(9))
    assert writer.flush() == 5
    assert [e.key.task_id for e in ledger.stored] == ["task_0", "task_1", "task_2", "task_3", "task_9"]


def test_a_database_that_is_down_is_not_hammered(writer_of):
    """While writes fail, full batches do not wake the thread early: it tries once per interval."""
    ledger = FlakyLedger(up=False)
    writer = writer_of(ledger, batch_size=2, flush_interval_s=0.2)
    for n in range(4):
        writer.submit(entry(n))
    wait_until(lambda: ledger.calls >= 1)
    started = time.monotonic()
    for n in range(4, 200):
        writer.submit(entry(n))
        time.sleep(0.002)
    elapsed = time.monotonic() - started
    assert ledger.calls <= 2 + elapsed / 0.2  # one try per interval, not one per full batch (about 100 here)
    assert writer.queued == 200


def test_a_batch_the_database_can_never_take_is_dropped(writer_of):
    """A batch refused for its content is dropped and counted, so it cannot block the ones after it."""
    writer = writer_of(Ledger("sqlite://"))
    writer.submit(entry(0, status="maybe"))  # not a decision status: the ledger refuses it
    assert writer.flush() == 1 and writer.dropped == 1
    writer.submit(entry(1))
    assert writer.flush() == 1 and writer.written == 1


def test_submitting_never_waits_for_a_slow_database(writer_of):
    """While the thread is stuck in a one-second write, 199 more submit() calls take a fraction of that."""
    ledger = FlakyLedger(up=True, delay_s=1.0)
    writer = writer_of(ledger, flush_interval_s=0.01)
    writer.submit(entry(0))
    wait_until(lambda: ledger.calls == 1)  # the thread is now inside the slow write
    started = time.perf_counter()
    for n in range(1, 200):
        writer.submit(entry(n))
    assert time.perf_counter() - started < 0.3
    assert ledger.calls == 1  # the write was still going on
    wait_until(lambda: len(ledger.stored) == 200)


def test_the_tick_emits_the_waiting_gauge_and_survives_its_failure(writer_of):
    """on_tick runs on the writer's thread after each flush; an exception in it does not stop the thread."""
    ticks = []

    def tick():
        ticks.append(threading.current_thread().name)
        raise RuntimeError("statsd is down")

    writer = writer_of(FlakyLedger(up=True), flush_interval_s=0.02, on_tick=tick)
    writer.submit(entry(0))
    wait_until(lambda: len(ticks) >= 3)
    assert set(ticks) == {"carbon-sensors-decisions"}


def _submit_in_child(writer, result):
    writer.submit(entry(5))
    result.put((writer.flush(), writer._thread is not None and writer._thread.is_alive()))


def test_a_forked_child_gets_its_own_queue_and_thread(writer_of, tmp_path):
    """A child forked while the parent's writer runs writes its own decisions, without the parent's queue or locks."""
    import multiprocessing

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    writer = writer_of(Ledger(url))
    writer.submit(entry(0))  # starts the parent's thread
    writer.submit(entry(1))  # still queued in the parent when the child is forked
    context = multiprocessing.get_context("fork")
    result = context.Queue()
    child = context.Process(target=_submit_in_child, args=(writer, result))
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0
    assert result.get(timeout=5) == (1, True)  # only its own decision, written from its own thread's writer
    assert writer.flush() == 2
    assert {d.key.task_id for d in Ledger(url).decisions()} == {"task_0", "task_1", "task_5"}


# -- where decisions come from -----------------------------------------------------------------------


def _decisions(tmp_path):
    from carbon_sensors.gate import CarbonGate, Decision, Override, decide
    from carbon_sensors.signals import run_sync

    path = write_forecast_csv(tmp_path / "f.csv", T0, DIP_AT_3)
    gate = CarbonGate(zones=["DE"], deadline=T0 + timedelta(hours=8), expected_duration=timedelta(hours=1),
                      source={"kind": "file", "path": str(path)})
    planned = [run_sync(decide(gate, now=T0 + timedelta(hours=h), deadline=T0 + timedelta(hours=8), submitted_at=T0,
                               intensity_at_submission=410.0, signal_at_submission="average")) for h in (0, 3, 7, 9)]
    forced = run_sync(decide(gate, now=T0, deadline=T0 + timedelta(hours=8), submitted_at=T0,
                             override=Override("manual", "the Variable says so")))
    failed = Decision("error", "SourceError: down", T0, "DE", submitted_at=T0)
    return gate, [*planned, forced, failed]


def test_an_entry_holds_what_the_decision_event_says(tmp_path):
    """decision_entry reads the decision directly, and gives what the event (Decision.to_event) would give."""
    gate, decisions = _decisions(tmp_path)
    assert {d.status for d in decisions} == {"wait", "go", "forced", "error"}
    for decision in decisions:
        key = RunKey("airflow", "d", "t", "r", 2, 1)
        direct = trail.decision_entry(decision, dag_id="d", task_id="t", run_id="r", try_number=2, map_index=1,
                                      gate=gate, origin="triggerer")
        via_event = DecisionEntry.from_event(key, decision.to_event(), next_check=decision.next_check,
                                             expected_duration_s=3600.0, source_spec=gate.source.to_spec(),
                                             origin="triggerer")
        assert direct == via_event
        if decision.status == "forced":  # a forced start still says which deadline it protected
            assert direct.deadline is not None and direct.latest_start is not None


@pytest.fixture
def captured():
    """This process's writer replaced by one whose ledger is a list, restored afterwards."""
    ledger = FlakyLedger(up=True)
    previous = trail.set_decision_writer(trail.DecisionWriter(ledger, flush_interval_s=3600.0))
    yield ledger
    writer = trail.set_decision_writer(previous)
    writer.close(timeout_s=1)


def run_trigger(trigger, clock):
    trigger.clock = clock

    async def collect():
        return [event async for event in trigger.run()]

    return asyncio.run(collect())[0].payload


def test_the_trigger_records_every_decision_with_its_try(tmp_path, captured):
    """Each re-plan and the final decision of a waiting trigger reach the trail, keyed by its task try."""
    path = write_forecast_csv(tmp_path / "f.csv", T0, DIP_AT_3)
    trigger = CarbonWindowTrigger(zones=["DE"], deadline=T0 + timedelta(hours=8), expected_duration_s=3600,
                                  submitted_at=T0, source={"kind": "file", "path": str(path)}, dag_id="catalog",
                                  task_id="wait", run_id="scheduled__1", map_index=2, try_number=3)
    made = []
    add_decision_listener(made.append)
    try:
        event = run_trigger(trigger, FrozenClock(T0))
    finally:
        remove_decision_listener(made.append)
    trail.decision_writer().flush()
    assert event["status"] == "go"
    assert [e.status for e in captured.stored] == [d.status for d in made] == ["wait"] * (len(made) - 1) + ["go"]
    assert [e.decided_at for e in captured.stored] == [d.decided_at for d in made]
    first = captured.stored[0]
    assert first.key == RunKey("airflow", "catalog", "wait", "scheduled__1", 3, 2)
    assert (first.origin, first.expected_duration_s, first.planned_start) == ("triggerer", 3600.0, T0 + timedelta(hours=3))
    assert first.source_spec["kind"] == "file" and first.next_check is not None


def test_a_failing_trail_never_changes_the_triggers_event(tmp_path):
    """With the ledger down, the trigger still waits and yields the same decision."""
    path = write_forecast_csv(tmp_path / "f.csv", T0, DIP_AT_3)
    previous = trail.set_decision_writer(trail.DecisionWriter(FlakyLedger(up=False), flush_interval_s=0.01))
    try:
        trigger = CarbonWindowTrigger(zones=["DE"], deadline=T0 + timedelta(hours=8), expected_duration_s=3600,
                                      submitted_at=T0, source={"kind": "file", "path": str(path)}, dag_id="catalog",
                                      task_id="wait", run_id="scheduled__1")
        event = run_trigger(trigger, FrozenClock(T0))
    finally:
        trail.set_decision_writer(previous).close(timeout_s=1)
    assert event["status"] == "go" and event["planned_start"] == "2026-06-15T03:00:00+00:00"


def test_the_trigger_counts_itself_while_it_waits(tmp_path, captured):
    """The waiting-gates count goes up while a trigger runs and back down when it fires."""
    path = write_forecast_csv(tmp_path / "f.csv", T0, DIP_AT_3)
    seen = []
    trigger = CarbonWindowTrigger(zones=["DE"], deadline=T0 + timedelta(hours=8), expected_duration_s=3600,
                                  submitted_at=T0, source={"kind": "file", "path": str(path)}, dag_id="d",
                                  task_id="t", run_id="r")
    trigger._log_decision = lambda decision: seen.append(metrics.waiting_count())
    before = metrics.waiting_count()
    run_trigger(trigger, FrozenClock(T0))
    assert seen and all(n == before + 1 for n in seen)
    assert metrics.waiting_count() == before


def test_the_worker_writes_the_first_decision_before_deferring(tmp_path, monkeypatch):
    """A sensor's first decision (the wait it defers with) is in the ledger when the task defers."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("CARBON_SENSORS_LEDGER_URL", url)
    path = write_forecast_csv(tmp_path / "f.csv", T0, DIP_AT_3)
    with DAG("catalog", schedule=None, start_date=T0):
        task = CarbonAwareSensor(task_id="wait", zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1),
                                 source={"kind": "file", "path": str(path)})
    context = context_at(T0)
    context["ti"].try_number = 2
    with use_clock(FrozenClock(T0)), pytest.raises(TaskDeferred) as deferred:
        task.execute(context)
    (decision,) = Ledger(url).decisions(dag_id="catalog")
    assert decision.key == RunKey("airflow", "catalog", "wait", "manual__test", 2, -1)
    assert (decision.status, decision.origin, decision.zone) == ("wait", "worker", "DE")
    assert deferred.value.trigger.try_number == 2


def test_the_worker_goes_on_when_the_ledger_cannot_be_written(tmp_path, monkeypatch, caplog):
    """An unwritable ledger costs the worker a warning, never the task: it still defers."""
    monkeypatch.setenv("CARBON_SENSORS_LEDGER_URL", f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'ledger.db'}")
    monkeypatch.setattr(trail, "_sync_warnings", trail._Throttled())
    path = write_forecast_csv(tmp_path / "f.csv", T0, DIP_AT_3)
    with DAG("catalog", schedule=None, start_date=T0):
        task = CarbonAwareSensor(task_id="wait", zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1),
                                 source={"kind": "file", "path": str(path)})
    with caplog.at_level(logging.WARNING), use_clock(FrozenClock(T0)), pytest.raises(TaskDeferred):
        task.execute(context_at(T0))
    assert any("cannot write the gate decision" in r.message for r in caplog.records)


def test_decisions_are_not_recorded_when_switched_off(tmp_path, monkeypatch):
    """[carbon_sensors] record_decisions = False keeps the worker from writing."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("CARBON_SENSORS_LEDGER_URL", url)
    monkeypatch.setenv("AIRFLOW__CARBON_SENSORS__RECORD_DECISIONS", "False")
    monkeypatch.setattr(trail, "_enabled", None)
    path = write_forecast_csv(tmp_path / "f.csv", T0, DIP_AT_3)
    with DAG("catalog", schedule=None, start_date=T0):
        task = CarbonAwareSensor(task_id="wait", zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1),
                                 source={"kind": "file", "path": str(path)})
    try:
        with use_clock(FrozenClock(T0)), pytest.raises(TaskDeferred):
            task.execute(context_at(T0))
    finally:
        trail._enabled = None
    assert Ledger(url).decisions() == []


# -- metrics -------------------------------------------------------------------------------------------


class FakeStats:
    def __init__(self, fail=False):
        self.sent, self.fail = [], fail

    def _record(self, kind, name, value, tags):
        if self.fail:
            raise OSError("statsd socket closed")
        self.sent.append((kind, name, value, tags))

    def incr(self, name, count=1, rate=None, *, tags=None):
        self._record("incr", name, count, tags)

    def gauge(self, name, value, rate=None, delta=None, *, tags=None):
        self._record("gauge", name, value, tags)

    def timing(self, name, dt, *, tags=None):
        self._record("timing", name, dt, tags)


class Task:
    dag_id, task_id = "catalog", "wait"


def test_a_forced_start_emits_its_wait_and_reason(monkeypatch):
    """gate_opened sends the wait as a timing and a forced start as a counter tagged and suffixed by reason."""
    fake = FakeStats()
    monkeypatch.setattr(metrics, "_stats", lambda: fake)
    metrics.gate_opened({"status": "forced", "forced_reason": "latest_start", "zone": "DE",
                         "submitted_at": "2026-06-15T00:00:00+00:00", "decided_at": "2026-06-15T04:30:00+00:00"}, Task())
    sent = {(kind, name): (value, tags) for kind, name, value, tags in fake.sent}
    assert sent[("timing", "carbon_sensors.gate_wait")][0] == timedelta(hours=4, minutes=30)
    assert sent[("incr", "carbon_sensors.forced_starts")][1]["reason"] == "latest_start"
    assert ("incr", "carbon_sensors.forced_starts.latest_start") in sent


def test_a_completed_record_emits_energy_and_carbon_by_signal(monkeypatch):
    """run_recorded sends kWh, grams and saved grams, the grams named by their signal; a started record sends none."""
    fake = FakeStats()
    monkeypatch.setattr(metrics, "_stats", lambda: fake)
    record = RunRecord(RunKey("airflow", "catalog", "embed", "r"), status="success", energy_kwh=1.25, carbon_g=250.0,
                       saved_carbon_g=80.0, carbon_signal="marginal", team="search")
    metrics.run_recorded(record)
    metrics.run_recorded(RunRecord(RunKey("airflow", "catalog", "embed", "r2")))
    assert {(name, value) for _, name, value, _ in fake.sent} == {
        ("carbon_sensors.energy_kwh", 1.25), ("carbon_sensors.carbon_g.marginal", 250.0),
        ("carbon_sensors.saved_carbon_g.marginal", 80.0)}
    assert fake.sent[0][3]["team"] == "search"


def test_metrics_never_raise(monkeypatch):
    """A metrics backend that fails, or odd inputs, never raise into the task."""
    monkeypatch.setattr(metrics, "_stats", lambda: FakeStats(fail=True))
    metrics.incr("x")
    metrics.gauge("x", 1)
    metrics.timing("x", timedelta(seconds=1))
    metrics.gate_opened({"status": "forced"}, object())
    metrics.run_recorded(None)
    metrics.emit_waiting()


def test_airflows_own_facade_takes_the_metrics():
    """With Airflow's real facade (no backend configured), sending every metric works and raises nothing."""
    stats = metrics._stats()
    assert callable(stats.incr) and callable(stats.gauge) and callable(stats.timing)
    metrics.emit_waiting()
    metrics.gate_opened({"status": "go", "submitted_at": "2026-06-15T00:00:00+00:00",
                         "decided_at": "2026-06-15T01:00:00+00:00"}, Task())


# -- the extra link ----------------------------------------------------------------------------------


class Key:
    def __init__(self, map_index=-1):
        self.dag_id, self.task_id, self.run_id, self.try_number, self.map_index = (
            "cat/alog", "wait", "manual__2026-06-15T00:00:00+00:00", 1, map_index)


def test_the_link_points_at_the_task_instance_view(monkeypatch):
    """The extra link opens the task instance's Carbon plan view in the UI, ids quoted, mapped tasks by index."""
    monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)
    link = CarbonPlanLink()
    assert link.name == "Carbon plan"
    assert link.get_link(None, ti_key=Key()) == (
        "/dags/cat%2Falog/runs/manual__2026-06-15T00%3A00%3A00%2B00%3A00/tasks/wait/plugin/carbon-plan")
    assert task_view_path("d", "r", "t", 3) == "/dags/d/runs/r/tasks/t/mapped/3/plugin/carbon-plan"
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/")
    assert link.get_link(None, ti_key=Key()).startswith("https://airflow.example.com/dags/cat%2Falog/")


def test_the_sensor_and_gated_operators_serialize_the_link(monkeypatch):
    """The serialized DAG names the link, so the UI shows it on the sensor's and a gated operator's task instances."""
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.serialization.serialized_objects import DagSerialization

    # The API server loads DAGs with their links; an earlier dag.test() in this process may have left
    # Airflow's class-level switch off (SerializedDagModel sets it from load_op_links).
    monkeypatch.setattr(DagSerialization, "_load_operator_extra_links", True)

    from carbon_sensors import CarbonGate
    from carbon_sensors.operators import carbon_gated

    with DAG("linked", schedule=None, start_date=T0) as dag:
        CarbonAwareSensor(task_id="wait", zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1))
        carbon_gated(BashOperator)(task_id="work", bash_command="true",
                                   carbon=CarbonGate(zones="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1)))
    restored = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert restored.get_task("wait").extra_links == ["Carbon plan"]
    assert "Carbon plan" in restored.get_task("work").extra_links


@pytest.mark.integration
def test_a_real_dag_run_leaves_its_trail_and_its_link(dag_bag, tmp_path, monkeypatch):
    """Under dag.test(), the worker's first wait and the trigger's final decision land in the ledger, and the link in XCom."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("CARBON_SENSORS_LEDGER_URL", url)
    previous = trail.set_decision_writer(trail.DecisionWriter(url, flush_interval_s=3600.0))
    try:
        with use_clock(FrozenClock(T0)):
            dag_run = dag_bag.get_dag("catalog_enrichment").test(logical_date=T0)
        trail.decision_writer().flush()
    finally:
        trail.set_decision_writer(previous).close(timeout_s=1)
    decisions = Ledger(url).decisions(dag_id="catalog_enrichment", run_id=dag_run.run_id)
    assert (decisions[0].origin, decisions[0].status) == ("worker", "wait")
    assert decisions[-1].origin == "triggerer" and decisions[-1].status in ("go", "forced")
    assert Ledger(url).waiting(T0) == []
    gate_task = decisions[0].key.task_id
    with create_session() as session:
        link = session.query(XComModel).filter_by(dag_id="catalog_enrichment", run_id=dag_run.run_id, task_id=gate_task,
                                                  key="_link_CarbonPlanLink").one().value
    assert "/plugin/carbon-plan" in str(link) and f"/tasks/{gate_task}/" in str(link)
