"""The Meter as a task sees it: the measurement, exceptions, strictness, and a cheap import."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest
from fake_nvml import FakeGpu, FakeNvml
from fake_sysfs import two_socket_server, write_proc

import carbon_sensors.metering
from carbon_sensors.errors import ConfigurationError, RecordingError
from carbon_sensors.metering import Measurement, Meter, MeterSettings, current_meter, record_tokens
from carbon_sensors.testing import FrozenClock


def _estimate_only(tmp_path) -> MeterSettings:
    return MeterSettings(powercap_root=tmp_path / "none", gpu=False)


def test_the_public_api_is_pinned():
    """carbon_sensors.metering exports exactly its documented names."""
    assert set(carbon_sensors.metering.__all__) == {
        "Measurement", "Meter", "MeterSettings", "capture_usage", "current_meter", "record_tokens",
    }


def test_importing_the_meter_loads_nothing_heavy():
    """import carbon_sensors.metering pulls in no httpx, pynvml, pandas, numpy, SQLAlchemy, asyncio or framework."""
    code = (
        "import sys, json\n"
        "base = set(sys.modules)\n"
        "import carbon_sensors.metering\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - base})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    loaded = set(json.loads(out.strip().splitlines()[-1]))
    heavy = {"httpx", "pynvml", "pandas", "numpy", "sqlalchemy", "asyncio", "airflow", "prefect"}
    assert not loaded & heavy, loaded & heavy


def test_a_measurement_has_aware_utc_times_and_consistent_totals(tmp_path):
    """started_at <= ended_at in UTC, duration and CPU time are non-negative, energy is the sum of the components."""
    with Meter(settings=_estimate_only(tmp_path)) as meter:
        sum(i * i for i in range(200_000))
    m = meter.measurement
    assert isinstance(m, Measurement)
    assert m.started_at.tzinfo is not None and m.started_at.utcoffset() == timedelta(0)
    assert m.started_at <= m.ended_at
    assert m.duration_s > 0 and m.cpu_time_s > 0
    assert m.energy_kwh == sum(c.energy_kwh for c in m.components) > 0
    assert m.gpu_count == 0
    assert json.loads(json.dumps(m.to_dict()))["components"][0]["component"] == "cpu"


def test_the_clock_is_injected(tmp_path):
    """started_at and ended_at come from the given clock."""
    clock = FrozenClock(datetime(2026, 6, 15, 2, tzinfo=UTC))
    with Meter(settings=_estimate_only(tmp_path), clock=clock) as meter:
        clock.advance(timedelta(minutes=5))
    assert (meter.measurement.started_at, meter.measurement.ended_at) == (
        datetime(2026, 6, 15, 2, tzinfo=UTC), datetime(2026, 6, 15, 2, 5, tzinfo=UTC))


def test_an_exception_in_the_block_propagates_unchanged_and_is_still_measured(tmp_path):
    """The work's own exception object comes out; the measurement and the tokens before it are kept."""
    error = KeyError("missing sku")
    meter = Meter(settings=_estimate_only(tmp_path), strict=True)
    with pytest.raises(KeyError) as raised, meter:
        record_tokens(prompt=5, completion=1, model="m")
        raise error
    assert raised.value is error
    assert meter.measurement.tokens[0].prompt_tokens == 5
    assert meter.measurement.components
    assert current_meter() is None


def test_the_measurement_is_read_after_the_block(tmp_path):
    """Reading .measurement inside the block is a RecordingError that says when to read it."""
    with Meter(settings=_estimate_only(tmp_path)) as meter, pytest.raises(RecordingError, match="after its with block"):
        meter.measurement  # noqa: B018 - the property access is the test


def test_a_meter_measures_one_block(tmp_path):
    """Entering a finished meter again is a ConfigurationError."""
    meter = Meter(settings=_estimate_only(tmp_path))
    with meter:
        pass
    with pytest.raises(ConfigurationError, match="one block"), meter:
        pass


def test_settings_must_be_meter_settings():
    """Passing something else as settings is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="MeterSettings"):
        Meter(settings={"gpu": False})  # type: ignore[arg-type]


def test_cpu_memory_and_gpu_all_measured(tmp_path, monkeypatch):
    """RAPL with dram and NVML together: three measured components, energy_measured True."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    tree = two_socket_server(tmp_path / "powercap")
    nvml = FakeNvml([FakeGpu("NVIDIA H100 80GB HBM3", 5_000_000)])
    settings = MeterSettings(powercap_root=tree.root, attribution="machine", nvml=nvml,
                             proc_root=write_proc(tmp_path / "proc", 0))
    with Meter(settings=settings) as meter:
        tree.set("intel-rapl:0", 1_000_000 + 3_600_000_000)
        tree.set("intel-rapl:0:2", 100_000 + 360_000_000)
        nvml.advance(0, 7_200_000)
    m = meter.measurement
    assert [(c.component, c.method) for c in m.components] == [("cpu", "rapl"), ("memory", "rapl"), ("gpu", "nvml")]
    assert m.energy_measured
    assert m.energy_kwh == pytest.approx(0.001 + 0.0001 + 0.002)
    assert m.gpu_count == 1


class _BrokenNvml(FakeNvml):
    """A binding that fails in a way the meter does not expect (not an NVMLError) when read at the end."""

    def __init__(self) -> None:
        super().__init__([FakeGpu("NVIDIA L4", 0)])
        self.reads = 0

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        self.reads += 1
        if self.reads > 1:
            raise OSError("driver went away")
        return super().nvmlDeviceGetTotalEnergyConsumption(handle)


def test_an_unexpected_meter_failure_is_noted_when_lenient(tmp_path):
    """Lenient: the failure becomes a note; the CPU energy is kept; nothing reaches the work."""
    with Meter(settings=MeterSettings(powercap_root=tmp_path, nvml=_BrokenNvml())) as meter:
        pass
    m = meter.measurement
    assert [c.component for c in m.components] == ["cpu", "memory"]
    assert any(n.startswith("the meter failed to stop: OSError: driver went away") for n in m.notes)


def test_an_unexpected_meter_failure_raises_when_strict(tmp_path):
    """Strict: a RecordingError after a successful block (the measurement is still readable)."""
    meter = Meter(settings=MeterSettings(powercap_root=tmp_path, nvml=_BrokenNvml()), strict=True)
    with pytest.raises(RecordingError, match="driver went away"), meter:
        pass
    assert meter.measurement.components[0].component == "cpu"


def test_a_strict_meter_failure_never_replaces_the_work_exception(tmp_path):
    """When the work raised, a strict meter's own failure is noted and the work's exception propagates."""
    meter = Meter(settings=MeterSettings(powercap_root=tmp_path, nvml=_BrokenNvml()), strict=True)
    with pytest.raises(ZeroDivisionError), meter:
        1 / 0  # noqa: B018
    assert any("driver went away" in n for n in meter.measurement.notes)


def test_no_sampler_thread_outlives_the_meter(tmp_path):
    """The RAPL sampling thread is running during the block and gone after it."""
    tree = two_socket_server(tmp_path / "powercap")
    settings = MeterSettings(powercap_root=tree.root, attribution="machine", gpu=False, sample_interval_s=3600)

    def samplers() -> int:
        return sum(1 for t in threading.enumerate() if t.name == "carbon-sensors-rapl" and t.is_alive())

    before = samplers()
    with Meter(settings=settings):
        during = samplers()
    assert (during - before, samplers() - before) == (1, 0)
