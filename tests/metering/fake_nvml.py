"""A stand-in for the ``pynvml`` module (nvidia-ml-py) with devices whose energy counters the test moves.

It behaves as the real bindings do where the meter depends on it: functions raise ``NVMLError``
carrying an NVML return code in ``.value`` (``NVML_ERROR_NOT_SUPPORTED`` for a device without a
total-energy counter, ``NVML_ERROR_UNINITIALIZED`` before ``nvmlInit``), counters are millijoules
since the driver loaded, and ``nvmlInit``/``nvmlShutdown`` are reference-counted.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15

_MESSAGES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
}


class NVMLError(Exception):
    """As in pynvml: the NVML return code is ``.value``; ``str()`` is NVML's message for it."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"Unknown Error {self.value}")


@dataclass
class FakeGpu:
    name: str
    energy_mj: int | None  # None: no total-energy counter (pre-Volta)
    lost: bool = False


class _Handle:
    """An opaque device handle (pynvml hands out ctypes pointers)."""

    def __init__(self, index: int) -> None:
        self.index = index


class FakeNvml(types.ModuleType):
    """``pynvml`` with the given devices. ``advance(i, mj)`` is the GPU doing work."""

    NVMLError = NVMLError
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_UNINITIALIZED = NVML_ERROR_UNINITIALIZED

    def __init__(self, gpus: list[FakeGpu], *, library_missing: bool = False) -> None:
        super().__init__("pynvml")
        self.gpus = gpus
        self.library_missing = library_missing
        self.refcount = 0
        self.init_calls = 0
        self.shutdown_calls = 0

    def advance(self, index: int, mj: int) -> None:
        gpu = self.gpus[index]
        assert gpu.energy_mj is not None
        gpu.energy_mj += mj

    def _check(self) -> None:
        if self.refcount <= 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.library_missing:
            raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
        self.refcount += 1

    def nvmlShutdown(self) -> None:
        self._check()
        self.shutdown_calls += 1
        self.refcount -= 1

    def nvmlDeviceGetCount(self) -> int:
        self._check()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._check()
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return _Handle(index)

    def nvmlDeviceGetName(self, handle: _Handle) -> str:
        self._check()
        return self.gpus[handle.index].name

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: _Handle) -> int:
        self._check()
        gpu = self.gpus[handle.index]
        if gpu.lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        if gpu.energy_mj is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return gpu.energy_mj
