"""GPU energy from NVML's total-energy counters (``nvidia-ml-py``, imported only when a meter starts).

``nvmlDeviceGetTotalEnergyConsumption`` is the energy a device has used since the driver was loaded,
in millijoules (Volta and newer; older devices answer ``NVML_ERROR_NOT_SUPPORTED`` and are left
out, with a note). The meter reads every visible device when the work starts and when it ends; the
difference is the device's energy over the run. NVML meters the whole device, every process on it.

Visible devices: all of them, or the numeric indices in ``CUDA_VISIBLE_DEVICES`` where it is set (as
CUDA does, the list ends at the first index that does not exist). A list of UUIDs cannot be mapped
to NVML indices here, so all devices are metered and a note says so.

Install with ``pip install 'carbon-sensors[gpu]'``. Without it, or without a driver, there is no
GPU component and a note says why; nothing fails.

>>> meter = NvmlMeter(environ={"CUDA_VISIBLE_DEVICES": ""})
>>> meter.start(), meter.stop()
(False, None)
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from carbon_sensors.records import ComponentEnergy

__all__ = ["NvmlMeter", "visible_indices"]

_MJ_PER_KWH = 3.6e9


def visible_indices(count: int, cuda_visible_devices: str | None) -> tuple[list[int], str | None]:
    """The NVML indices a task may use, and a note where the setting narrowed or could not be read.

    >>> visible_indices(4, None), visible_indices(4, "2,0"), visible_indices(4, "1,7,2")
    (([0, 1, 2, 3], None), ([2, 0], None), ([1], None))
    """
    if cuda_visible_devices is None:
        return list(range(count)), None
    raw = cuda_visible_devices.strip()
    if not raw:
        return [], "CUDA_VISIBLE_DEVICES is empty: no GPU is visible to this task"
    out: list[int] = []
    for part in raw.split(","):
        part = part.strip()
        try:
            index = int(part)
        except ValueError:
            if out:
                break
            return list(range(count)), (
                f"CUDA_VISIBLE_DEVICES={raw!r} is not a list of indices; all {count} GPUs metered"
            )
        if index < 0 or index >= count:
            break
        if index not in out:
            out.append(index)
    return out, None


@dataclass(slots=True)
class _Device:
    index: int
    name: str
    handle: Any
    start_mj: int


class NvmlMeter:
    """Reads the GPUs' total-energy counters at :meth:`start` and :meth:`stop`.

    ``nvml``: the ``pynvml`` module, or an object with the same functions (tests); by default
    ``pynvml`` is imported by :meth:`start`. ``environ``: where ``CUDA_VISIBLE_DEVICES`` is read
    (default ``os.environ``). NVML stays initialised between start and stop and is always shut down.
    """

    def __init__(self, nvml: Any = None, *, environ: Mapping[str, str] | None = None) -> None:
        self._nvml = nvml
        self._environ = os.environ if environ is None else environ
        self._error: type[BaseException] | tuple[()] = ()
        self._devices: list[_Device] = []
        self._initialised = False
        self.notes: list[str] = []

    @property
    def device_count(self) -> int:
        """How many devices are metered (after :meth:`stop`: how many gave a reading at both ends)."""
        return len(self._devices)

    def start(self) -> bool:
        """Initialise NVML and read each visible device; False (with a note) where no GPU can be metered."""
        visible = self._environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None and not visible.strip():
            self.notes.append("GPU not metered: CUDA_VISIBLE_DEVICES is empty")
            return False
        nvml = self._nvml
        if nvml is None:
            try:
                nvml = importlib.import_module("pynvml")
            except ImportError:
                self.notes.append("GPU not metered: nvidia-ml-py is not installed (pip install 'carbon-sensors[gpu]')")
                return False
        self._nvml = nvml
        error = getattr(nvml, "NVMLError", None)
        if not (isinstance(error, type) and issubclass(error, BaseException)):
            self.notes.append("GPU not metered: the NVML module has no NVMLError class")
            return False
        self._error = error
        try:
            nvml.nvmlInit()
        except error as exc:
            self.notes.append(f"GPU not metered: NVML is not available ({exc})")
            return False
        self._initialised = True
        try:
            count = nvml.nvmlDeviceGetCount()
            indices, note = visible_indices(count, visible)
            if note:
                self.notes.append(note)
            for index in indices:
                self._open_device(nvml, index)
        except error as exc:
            self.notes.append(f"GPU not metered: NVML failed listing devices ({exc})")
            self._devices.clear()
        if not self._devices:
            self._shutdown()
            return False
        return True

    def _open_device(self, nvml: Any, index: int) -> None:
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            start = int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except self._error as exc:
            if getattr(exc, "value", None) == getattr(nvml, "NVML_ERROR_NOT_SUPPORTED", object()):
                self.notes.append(f"GPU {index} not metered: it has no total-energy counter (needs Volta or newer)")
            else:
                self.notes.append(f"GPU {index} not metered: {exc}")
            return
        try:
            name = nvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
        except self._error:
            name = "unknown"
        self._devices.append(_Device(index, name, handle, start))

    def stop(self) -> ComponentEnergy | None:
        """Read the counters again and shut NVML down; the ``gpu`` component, or None where none was metered."""
        if not self._initialised:
            return None
        nvml, parts, kept, total_mj = self._nvml, [], [], 0
        try:
            for device in self._devices:
                try:
                    delta = int(nvml.nvmlDeviceGetTotalEnergyConsumption(device.handle)) - device.start_mj
                except self._error as exc:
                    self.notes.append(f"GPU {device.index} not metered at the end of the run: {exc}")
                    continue
                if delta < 0:
                    self.notes.append(f"GPU {device.index} not metered: its counter went back (driver reloaded)")
                    continue
                total_mj += delta
                kept.append(device)
                parts.append(f"gpu{device.index} {device.name}: {delta / 1000:.1f} J")
        finally:
            self._devices = kept
            self._shutdown()
        if not parts:
            return None
        return ComponentEnergy("gpu", "nvml", True, total_mj / _MJ_PER_KWH, "; ".join(parts) + " (whole device, all processes)")

    def _shutdown(self) -> None:
        if not self._initialised:
            return
        self._initialised = False
        try:
            self._nvml.nvmlShutdown()
        except self._error as exc:
            self.notes.append(f"NVML shutdown failed: {exc}")
