"""GPU energy from NVML total-energy counters, against a pynvml double with devices the test drives."""

from __future__ import annotations

import pytest
from fake_nvml import NVML_ERROR_NOT_SUPPORTED, FakeGpu, FakeNvml, NVMLError

from carbon_sensors.metering import Meter, MeterSettings
from carbon_sensors.metering.nvml import NvmlMeter, visible_indices

MJ_PER_KWH = 3.6e9


def _no_rapl(tmp_path, nvml) -> MeterSettings:
    return MeterSettings(powercap_root=tmp_path / "none", nvml=nvml)


def test_two_devices_one_without_a_counter(tmp_path, monkeypatch):
    """The device with a counter is metered by its delta; the one without is left out with a note; NVML is shut down."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nvml = FakeNvml([FakeGpu("NVIDIA A100-SXM4-40GB", 88_000_000), FakeGpu("Tesla P100-PCIE-16GB", None)])
    with Meter(settings=_no_rapl(tmp_path, nvml)) as meter:
        nvml.advance(0, 1_800_000)  # 1.8 kJ
    m = meter.measurement
    gpu = [c for c in m.components if c.component == "gpu"]
    assert len(gpu) == 1
    assert (gpu[0].method, gpu[0].measured) == ("nvml", True)
    assert gpu[0].energy_kwh == pytest.approx(1_800_000 / MJ_PER_KWH)
    assert "gpu0 NVIDIA A100-SXM4-40GB: 1800.0 J" in gpu[0].detail and "whole device" in gpu[0].detail
    assert m.gpu_count == 1
    assert any(n.startswith("GPU 1 not metered") and "no total-energy counter" in n for n in m.notes)
    assert (nvml.init_calls, nvml.shutdown_calls, nvml.refcount) == (1, 1, 0)


def test_cuda_visible_devices_limits_the_devices_metered(tmp_path, monkeypatch):
    """Only the devices named in CUDA_VISIBLE_DEVICES count."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    nvml = FakeNvml([FakeGpu("NVIDIA H100 80GB HBM3", 10_000), FakeGpu("NVIDIA H100 80GB HBM3", 20_000)])
    with Meter(settings=_no_rapl(tmp_path, nvml)) as meter:
        nvml.advance(0, 5_000_000)  # another task's GPU
        nvml.advance(1, 360_000)
    gpu = meter.measurement.components[-1]
    assert gpu.energy_kwh == pytest.approx(360_000 / MJ_PER_KWH)
    assert gpu.detail.startswith("gpu1 ") and "gpu0" not in gpu.detail
    assert meter.measurement.gpu_count == 1


def test_an_empty_cuda_visible_devices_meters_no_gpu(tmp_path, monkeypatch):
    """CUDA_VISIBLE_DEVICES='' hides every GPU: no component, a note, NVML not even initialised."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    nvml = FakeNvml([FakeGpu("NVIDIA L4", 0)])
    with Meter(settings=_no_rapl(tmp_path, nvml)) as meter:
        nvml.advance(0, 1_000)
    assert [c.component for c in meter.measurement.components] == ["cpu", "memory"]
    assert meter.measurement.gpu_count == 0
    assert "GPU not metered: CUDA_VISIBLE_DEVICES is empty" in meter.measurement.notes
    assert nvml.init_calls == 0


def test_a_missing_nvml_library_means_no_gpu_and_a_note(tmp_path, monkeypatch):
    """nvmlInit failing (no driver) leaves the GPU out, says why, and does not call nvmlShutdown."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nvml = FakeNvml([], library_missing=True)
    with Meter(settings=_no_rapl(tmp_path, nvml)) as meter:
        pass
    assert all(c.component != "gpu" for c in meter.measurement.components)
    assert "GPU not metered: NVML is not available (NVML Shared Library Not Found)" in meter.measurement.notes
    assert nvml.shutdown_calls == 0


def test_a_device_lost_during_the_run_is_noted_and_nvml_still_shut_down(tmp_path, monkeypatch):
    """A device whose counter fails at the end is left out; the others count; nvmlShutdown always runs."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nvml = FakeNvml([FakeGpu("NVIDIA A10G", 0), FakeGpu("NVIDIA A10G", 0)])
    with Meter(settings=_no_rapl(tmp_path, nvml)) as meter:
        nvml.advance(0, 72_000)
        nvml.gpus[1].lost = True
    m = meter.measurement
    assert m.components[-1].energy_kwh == pytest.approx(72_000 / MJ_PER_KWH)
    assert m.gpu_count == 1
    assert "GPU 1 not metered at the end of the run: GPU is lost" in m.notes
    assert nvml.refcount == 0


def test_gpu_false_does_not_touch_nvml(tmp_path):
    """MeterSettings(gpu=False) never initialises NVML."""
    nvml = FakeNvml([FakeGpu("NVIDIA L4", 0)])
    with Meter(settings=MeterSettings(powercap_root=tmp_path, nvml=nvml, gpu=False)):
        pass
    assert nvml.init_calls == 0


def test_the_real_bindings_without_a_gpu_leave_a_note():
    """On a machine without an NVIDIA driver, the installed pynvml fails to initialise and the meter notes it."""
    meter = NvmlMeter(environ={})
    started = meter.start()
    if started:
        meter.stop()
        pytest.skip("this machine has an NVIDIA GPU")
    assert meter.stop() is None
    assert len(meter.notes) == 1 and meter.notes[0].startswith("GPU not metered:")


def test_the_double_raises_like_pynvml():
    """The fake's errors carry NVML return codes as pynvml's do (so the meter's checks are exercised)."""
    nvml = FakeNvml([FakeGpu("Tesla K80", None)])
    with pytest.raises(NVMLError) as info:
        nvml.nvmlDeviceGetCount()
    nvml.nvmlInit()
    with pytest.raises(NVMLError) as unsupported:
        nvml.nvmlDeviceGetTotalEnergyConsumption(nvml.nvmlDeviceGetHandleByIndex(0))
    nvml.nvmlShutdown()
    assert str(info.value) == "Uninitialized"
    assert unsupported.value.value == NVML_ERROR_NOT_SUPPORTED


@pytest.mark.parametrize(
    ("setting", "expected", "noted"),
    [
        (None, [0, 1, 2, 3], False),
        ("2,0", [2, 0], False),
        (" 3 , 3 ", [3], False),
        ("1,9,2", [1], False),  # CUDA stops at the first index that does not exist
        ("-1", [], False),
        ("GPU-5d8c3e2a-8f0e-4b9c-9a53-0c3f4a4e9f11", [0, 1, 2, 3], True),
        ("", [], True),
    ],
)
def test_visible_indices_follow_cuda_rules(setting, expected, noted):
    """CUDA_VISIBLE_DEVICES is read as CUDA reads numeric lists; what cannot be mapped is noted."""
    indices, note = visible_indices(4, setting)
    assert indices == expected
    assert (note is not None) == noted
