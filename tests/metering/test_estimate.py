"""The estimate: CPU time x watts per core plus memory, with watts from settings, environment or the CPU table."""

from __future__ import annotations

import time

import pytest
from fake_sysfs import write_proc

from carbon_sensors.errors import ConfigurationError
from carbon_sensors.metering import Meter, MeterSettings
from carbon_sensors.metering.estimate import (
    DEFAULT_MEMORY_WATTS_PER_GB,
    DEFAULT_WATTS_PER_CORE,
    EstimateParameters,
    cpu_model,
    estimate_components,
    process_cpu_time_s,
    resolve_parameters,
)

J_PER_KWH = 3.6e6


def _burn(seconds: float) -> int:
    end, n = time.process_time() + seconds, 0
    while time.process_time() < end:
        n += 1
    return n


def test_real_cpu_work_is_estimated_from_cpu_time(tmp_path):
    """A busy loop gives CPU time > 0 and cpu energy = CPU time x watts per core."""
    settings = MeterSettings(powercap_root=tmp_path / "none", gpu=False, watts_per_core=12.5)
    with Meter(settings=settings) as meter:
        _burn(0.2)
    m = meter.measurement
    cpu, memory = m.components
    assert m.cpu_time_s >= 0.19
    assert m.cpu_time_s <= m.duration_s + 0.05
    assert (cpu.component, cpu.method, cpu.measured) == ("cpu", "estimate", False)
    assert cpu.energy_kwh == pytest.approx(m.cpu_time_s * 12.5 / J_PER_KWH, rel=1e-9)
    assert "12.5 W per busy CPU" in cpu.detail and "set in MeterSettings" in cpu.detail
    assert (memory.component, memory.method, memory.measured) == ("memory", "estimate", False)
    assert memory.energy_kwh > 0 and "0.375 W/GB" in memory.detail
    assert m.energy_kwh == pytest.approx(cpu.energy_kwh + memory.energy_kwh)
    assert not m.energy_measured


def test_process_cpu_time_grows_with_work():
    """process_cpu_time_s counts this process's CPU time."""
    before = process_cpu_time_s()
    _burn(0.05)
    assert process_cpu_time_s() - before >= 0.045


def test_estimate_components_multiply_out():
    """cpu = CPU s x W and memory = GB x W/GB x wall s, in kWh; memory is left out where RSS is unknown."""
    p = EstimateParameters(10.0, "test", 0.5, "test")
    cpu, memory = estimate_components(cpu_time_s=360.0, peak_rss_bytes=4 * 10**9, duration_s=1800.0, parameters=p)
    assert cpu.energy_kwh == pytest.approx(3600 / J_PER_KWH)
    assert memory.energy_kwh == pytest.approx(4 * 0.5 * 1800 / J_PER_KWH)
    assert "4.000 GB peak RSS" in memory.detail
    without_rss = estimate_components(cpu_time_s=1.0, peak_rss_bytes=None, duration_s=1.0, parameters=p)
    assert [c.component for c in without_rss] == ["cpu"]  # no RSS (Windows): memory left out


def test_environment_sets_the_watts(monkeypatch, tmp_path):
    """CARBON_SENSORS_WATTS_PER_CORE and CARBON_SENSORS_MEMORY_WATTS_PER_GB override the defaults and say so."""
    monkeypatch.setenv("CARBON_SENSORS_WATTS_PER_CORE", "7.5")
    monkeypatch.setenv("CARBON_SENSORS_MEMORY_WATTS_PER_GB", "0.5")
    p = resolve_parameters(cpuinfo_path=tmp_path / "none")
    assert (p.watts_per_core, p.memory_watts_per_gb) == (7.5, 0.5)
    assert p.watts_per_core_source == "from CARBON_SENSORS_WATTS_PER_CORE"
    explicit = resolve_parameters(watts_per_core=2.0, memory_watts_per_gb=0.1, cpuinfo_path=tmp_path / "none")
    assert (explicit.watts_per_core, explicit.memory_watts_per_gb) == (2.0, 0.1)


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf"])
@pytest.mark.parametrize("name", ["CARBON_SENSORS_WATTS_PER_CORE", "CARBON_SENSORS_MEMORY_WATTS_PER_GB"])
def test_bad_environment_values_name_the_variable(name, value, tmp_path):
    """A value that is not a finite number of watts >= 0 is a ConfigurationError naming the variable."""
    with pytest.raises(ConfigurationError, match=name):
        resolve_parameters(environ={name: value}, cpuinfo_path=tmp_path / "none")


def test_a_strict_meter_refuses_a_bad_environment_and_a_lenient_one_notes_it(monkeypatch, tmp_path):
    """Strict: ConfigurationError before the work; lenient: the default watts and a note."""
    monkeypatch.setenv("CARBON_SENSORS_WATTS_PER_CORE", "four")
    settings = MeterSettings(powercap_root=tmp_path / "none", proc_root=tmp_path / "none", gpu=False)
    with pytest.raises(ConfigurationError, match="CARBON_SENSORS_WATTS_PER_CORE"):
        Meter(settings=settings, strict=True)
    with Meter(settings=settings) as meter:
        pass
    assert meter.parameters.watts_per_core == DEFAULT_WATTS_PER_CORE
    assert any("CARBON_SENSORS_WATTS_PER_CORE='four'" in n for n in meter.measurement.notes)


@pytest.mark.parametrize(
    ("model", "watts", "source"),
    [
        ("AMD EPYC 7763 64-Core Processor", 3.0, "table row 'EPYC'"),
        ("Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz", 3.5, "table row 'Xeon'"),
        ("12th Gen Intel(R) Core(TM) i7-1260P", DEFAULT_WATTS_PER_CORE, "default"),
    ],
)
def test_cpu_model_table(tmp_path, monkeypatch, model, watts, source):
    """/proc/cpuinfo's model name picks the table row; an unknown CPU gets the default."""
    monkeypatch.delenv("CARBON_SENSORS_WATTS_PER_CORE", raising=False)
    proc = write_proc(tmp_path, busy_ticks=0, model=model)
    assert cpu_model(proc / "cpuinfo") == model
    p = resolve_parameters(cpuinfo_path=proc / "cpuinfo")
    assert p.watts_per_core == watts
    assert p.watts_per_core_source.startswith(source)
    assert p.memory_watts_per_gb == DEFAULT_MEMORY_WATTS_PER_GB


@pytest.mark.parametrize(
    "kwargs",
    [
        {"watts_per_core": -1.0},
        {"memory_watts_per_gb": float("nan")},
        {"sample_interval_s": 0},
        {"attribution": "cgroup"},
        {"gpu": "yes"},
        {"powercap_root": 3},
    ],
)
def test_meter_settings_reject_bad_values(kwargs):
    """A bad MeterSettings field is a ConfigurationError naming the field."""
    with pytest.raises(ConfigurationError, match=next(iter(kwargs))):
        MeterSettings(**kwargs)
