"""RunRecorder: a record started before the work and completed after, whatever happens to the ledger."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from forecast_csv import write_forecast_csv

from carbon_sensors.errors import RecordingError
from carbon_sensors.ledger import Ledger
from carbon_sensors.metering import MeterSettings, record_tokens
from carbon_sensors.recording import RunRecorder, learned_duration, tags_from
from carbon_sensors.records import RunKey, RunRecord
from carbon_sensors.signals import FileSource
from carbon_sensors.testing import FrozenClock

T0 = datetime(2026, 6, 15, tzinfo=UTC)
H = timedelta(hours=1)
KEY = RunKey("python", "nightly", "enrich", "run-1")
NO_GPU = MeterSettings(gpu=False)


class SteppingClock(FrozenClock):
    """A frozen clock that moves ``step`` forward each time it is read (a run that takes time)."""

    def __init__(self, start: datetime, step: timedelta) -> None:
        super().__init__(start)
        self.step = step

    def now(self) -> datetime:
        moment = super().now()
        self.advance(self.step)
        return moment


def event(**extra):
    base = {
        "status": "go", "reason": "the cleanest window", "zone": "DE", "planned_start": (T0 + 2 * H).isoformat(),
        "latest_start": (T0 + 6 * H).isoformat(), "deadline": (T0 + 8 * H).isoformat(), "intensity": 110.0,
        "intensity_at_submission": 390.0, "signal": "average", "source": "file:f.csv", "forced": False,
        "forced_reason": None, "fallback": None, "submitted_at": T0.isoformat(),
    }
    return {**base, **extra}


def busy(seconds: float = 0.05) -> None:
    import time

    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_a_run_is_started_then_completed_with_energy_carbon_and_tags(tmp_path):
    """The record exists as started during the work and is complete after it, priced on the file's hours."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    source = FileSource(write_forecast_csv(tmp_path / "f.csv", T0, [400, 300, 100, 100, 400]), measured=True)
    clock = SteppingClock(T0 + 2 * H, timedelta(minutes=30))
    recorder = RunRecorder(KEY, event=event(), source=source, tags={"team": "search", "project": "catalog"},
                           ledger=ledger, meter_settings=NO_GPU, clock=clock, expected_duration=H)
    with recorder:
        during = ledger.get(KEY)
        busy()
        record_tokens(prompt=1200, completion=300, model="gpt-4o-mini")
    assert during is not None and during.status == "started" and during.team == "search"
    record = ledger.get(KEY)
    assert record == recorder.record
    assert record.status == "success" and record.energy_kwh > 0 and record.total_tokens == 1500
    assert record.started_at == T0 + 2 * H and record.ended_at == T0 + 2.5 * H
    # 02:00-02:30 at 100 g/kWh, measured; the counterfactual is 00:00-00:30 at 400 g/kWh
    assert record.intensity_g_per_kwh == 100.0 and record.counterfactual_intensity_g_per_kwh == 400.0
    assert record.carbon_basis == "measured" and record.carbon_signal == "average"
    assert record.carbon_g == pytest.approx(record.energy_kwh * 100.0)
    assert record.saved_carbon_g == pytest.approx(record.energy_kwh * 300.0)
    assert record.source_spec == source.to_spec() and record.project == "catalog"
    assert {c.component for c in record.components} >= {"cpu"}
    assert record.summary()["tokens"] == 1500


def test_a_failing_run_is_recorded_as_failed_and_its_error_propagates(tmp_path):
    """The work's exception reaches the caller unchanged, and the record says failed and why."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    with pytest.raises(ZeroDivisionError), RunRecorder(KEY, event=event(), ledger=ledger, meter_settings=NO_GPU):
        1 / 0  # noqa: B018
    record = ledger.get(KEY)
    assert record.status == "failed" and record.error.startswith("ZeroDivisionError")
    assert record.ended_at is not None and record.energy_kwh is not None


def test_without_a_source_the_gates_own_figures_price_the_run(tmp_path):
    """No source to ask: carbon is priced on the planned window's intensity, marked forecast, with a note."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    with RunRecorder(KEY, event=event(), ledger=ledger, meter_settings=NO_GPU) as recorder:
        busy()
    record = recorder.record
    assert record.intensity_g_per_kwh == 110.0 and record.counterfactual_intensity_g_per_kwh == 390.0
    assert record.carbon_basis == "forecast" and any("gate's plan" in n for n in record.notes)
    assert record.saved_carbon_g == pytest.approx(record.energy_kwh * 280.0)


class StaticPrices:
    """A price source serving one fixed PriceForecast (the real ones are tested in tests/signals)."""

    def __init__(self, prices, fail=False):
        self.prices, self.fail = prices, fail

    async def fetch(self, zone, start, end, *, now):
        if self.fail:
            raise ConnectionError("the price API is down")
        return self.prices


def euro_prices(values):
    from carbon_sensors.prices import PriceForecast

    return PriceForecast.from_points([(T0 + i * H, v) for i, v in enumerate(values)], zone="DE", source="entsoe",
                                     currency="EUR", resolution=H)


def test_the_energy_cost_is_priced_on_the_run_and_on_starting_at_submission(tmp_path):
    """The price source is asked for the run's interval and the submission's: cost, counterfactual and saving in EUR."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    clock = SteppingClock(T0 + 2 * H, timedelta(minutes=30))
    recorder = RunRecorder(KEY, event=event(price=-10.0, price_currency="EUR", price_at_submission=95.0),
                           price_source=StaticPrices(euro_prices([120.0, 90.0, -20.0, 40.0, 300.0])), ledger=ledger,
                           meter_settings=NO_GPU, clock=clock, expected_duration=H)
    with recorder:
        busy()
    record = ledger.get(KEY)
    kwh = record.energy_kwh
    # 02:00-02:30 at -20 EUR/MWh; had it started at submission, 00:00-00:30 at 120 EUR/MWh
    assert (record.price_currency, record.price_source, record.price_per_mwh) == ("EUR", "entsoe", -20.0)
    assert record.counterfactual_price_per_mwh == 120.0 and record.expected_price_per_mwh == -10.0
    assert record.energy_cost == pytest.approx(-20.0 * kwh / 1000)
    assert record.saved_energy_cost == pytest.approx(140.0 * kwh / 1000)
    assert record.summary()["price_currency"] == "EUR"


def test_a_failing_price_source_falls_back_to_the_gates_prices_and_never_fails_the_run(tmp_path):
    """The price API being down costs precision only: the gate's planned prices, with a note."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    with RunRecorder(KEY, event=event(price=50.0, price_currency="EUR", price_at_submission=80.0),
                     price_source=StaticPrices(None, fail=True), ledger=ledger, meter_settings=NO_GPU) as recorder:
        busy()
    record = recorder.record
    assert record.status == "success" and record.price_per_mwh == 50.0
    assert record.saved_energy_cost == pytest.approx(30.0 * record.energy_kwh / 1000)
    assert any("price from the gate's plan" in n for n in record.notes)


def test_without_a_price_there_is_no_energy_cost(tmp_path):
    """A gate without a price source leaves the market figures empty rather than guessing."""
    with RunRecorder(KEY, event=event(), ledger=f"sqlite:///{tmp_path / 'l.db'}", meter_settings=NO_GPU) as recorder:
        busy()
    assert recorder.record.price_currency is None and recorder.record.energy_cost is None


def test_an_unreachable_ledger_spools_and_the_next_run_lands_it(tmp_path, caplog):
    """With the database away the work still succeeds and the record is spooled; a later run lands it."""
    spool = tmp_path / "spool"
    away = Ledger(f"sqlite:///{tmp_path / 'missing-dir' / 'ledger.db'}", spool_dir=spool)
    with RunRecorder(KEY, event=event(), ledger=away, meter_settings=NO_GPU):
        busy()
    assert away.spooled() and "spool" in caplog.text
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", spool_dir=spool)
    later = replace(KEY, run_id="run-2")
    with RunRecorder(later, event=event(), ledger=ledger, meter_settings=NO_GPU):
        pass
    assert not ledger.spooled()
    assert ledger.get(KEY).status == "success" and ledger.get(later).status == "success"


def test_strict_recording_fails_loudly(tmp_path):
    """strict=True turns an unwritable ledger into a RecordingError instead of a warning."""
    away = Ledger(f"sqlite:///{tmp_path / 'missing-dir' / 'ledger.db'}", spool_dir=tmp_path / "spool")
    with pytest.raises(RecordingError, match="ledger"), RunRecorder(KEY, event=event(), ledger=away, strict=True,
                                                                    meter_settings=NO_GPU):
        pass


def test_tags_come_from_params_then_dag_tags():
    """Params win over tags; cost_center is read as cost_centre; unrelated tags are ignored."""
    assert tags_from({"team": "ml", "cost_center": "cc-7"}, ["team:search", "project:embeddings", "nightly"]) == {
        "team": "ml", "project": "embeddings", "cost_centre": "cc-7"}
    assert tags_from(None, None) == {}


def test_expected_duration_is_learned_from_recent_successful_runs(tmp_path):
    """Three or more successful runs give a bound above the longest; fewer give None and the count."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    assert learned_duration(ledger, "airflow", "d", "t") == (None, 0)
    for i, minutes in enumerate((50, 55, 60, 65)):
        key = RunKey("airflow", "d", "t", f"r{i}")
        ledger.finish(RunRecord(key=key, status="success", started_at=T0 + i * 24 * H,
                                ended_at=T0 + i * 24 * H + timedelta(minutes=minutes)))
        if i == 1:
            assert learned_duration(ledger, "airflow", "d", "t") == (None, 2)
    ledger.finish(RunRecord(key=RunKey("airflow", "d", "t", "failed"), status="failed", started_at=T0,
                            ended_at=T0 + 10 * H))
    learned, runs = learned_duration(ledger, "airflow", "d", "t")
    assert runs == 4 and timedelta(minutes=65) <= learned < timedelta(minutes=120)


def test_an_unreadable_ledger_means_no_history(tmp_path):
    """A ledger that cannot be read is no history (the gate starts at once), never an error in the task."""
    assert learned_duration(f"sqlite:///{tmp_path / 'no-dir' / 'x.db'}", "airflow", "d", "t") == (None, 0)


WORKER = """
import sys, time
from datetime import timedelta
from carbon_sensors.metering import MeterSettings
from carbon_sensors.records import RunKey
from carbon_sensors.recording import RunRecorder

key = RunKey("python", "nightly", "enrich", "killed-run")
with RunRecorder(key, ledger=sys.argv[1], meter_settings=MeterSettings(gpu=False),
                 heartbeat_interval=timedelta(seconds=0.2)):
    print("started", flush=True)
    time.sleep(120)
"""


def test_a_worker_killed_mid_run_leaves_a_started_record_that_reconcile_closes(tmp_path):
    """SIGKILL a real worker process mid-run: its started record survives, and reconcile marks it abandoned."""
    import signal
    import subprocess
    import sys
    import time

    from carbon_sensors.cli import main

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    worker = subprocess.Popen([sys.executable, "-c", WORKER, url], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout.readline().strip() == "started"
        time.sleep(0.6)  # a few heartbeats
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(timeout=30) == -signal.SIGKILL
    finally:
        worker.kill()
    key = RunKey("python", "nightly", "enrich", "killed-run")
    left = Ledger(url).get(key)
    assert left is not None and left.status == "started" and left.heartbeat_at > left.started_at
    time.sleep(0.2)
    assert main(["reconcile", "--ledger", url, "--stale-after", "0.1", "--no-reprice"]) == 0
    closed = Ledger(url).get(key)
    assert closed.status == "abandoned" and closed.ended_at == left.heartbeat_at
