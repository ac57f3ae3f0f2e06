"""The :class:`Meter`: energy and tokens of the work inside a ``with`` block.

How energy is obtained, per component (each :class:`~carbon_sensors.records.ComponentEnergy` says
which method and whether it was measured):

- ``cpu``: RAPL package counters (:mod:`.rapl`), attributed to this process tree by its share of the
  machine's busy CPU time (``attribution="process"``, the default) or whole (``"machine"``); where
  RAPL cannot be read, the estimate (:mod:`.estimate`): CPU time x watts per core.
- ``memory``: the RAPL ``dram`` zone where there is one, same attribution; else the estimate.
- ``gpu``: NVML total-energy counters (:mod:`.nvml`), whole devices, when NVIDIA GPUs are visible.

Metering never fails the work: what cannot be measured is estimated or left out, and the
measurement's ``notes`` say why. Only a strict meter (``strict=True``) raises: a bad token count, or
an unexpected failure of the meter itself, as :class:`~carbon_sensors.errors.RecordingError`.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from carbon_sensors.clock import Clock, default_clock
from carbon_sensors.errors import ConfigurationError, RecordingError
from carbon_sensors.metering import tokens
from carbon_sensors.metering.estimate import (
    EstimateParameters,
    estimate_components,
    memory_component,
    peak_rss_bytes,
    process_cpu_time_s,
    resolve_parameters,
)
from carbon_sensors.metering.nvml import NvmlMeter
from carbon_sensors.metering.rapl import (
    DEFAULT_POWERCAP_ROOT,
    DEFAULT_PROC_ROOT,
    UJ_PER_KWH,
    RaplCounters,
    RaplSampler,
    machine_busy_cpu_s,
    process_share,
)
from carbon_sensors.records import ComponentEnergy, TokenUsage
from carbon_sensors.timeutil import as_utc

__all__ = ["Measurement", "Meter", "MeterSettings"]

log = logging.getLogger(__name__)

Attribution = Literal["process", "machine"]


@dataclass(frozen=True, slots=True)
class MeterSettings:
    """How a :class:`Meter` measures. Every field has a working default.

    - ``sample_interval_s``: how often the RAPL counters are read during the run (30 s), so a
      counter that wraps is still counted; shorter than the fastest wrap (minutes at full load).
    - ``attribution``: ``"process"`` scales machine-wide RAPL energy by this process tree's share of
      the machine's busy CPU time; ``"machine"`` keeps all of it (a dedicated worker).
    - ``watts_per_core``, ``memory_watts_per_gb``: the estimate's watts; None reads
      ``CARBON_SENSORS_WATTS_PER_CORE`` / ``CARBON_SENSORS_MEMORY_WATTS_PER_GB``, else the defaults
      (4.0 W per busy CPU or the CPU table, 0.375 W/GB; see :mod:`carbon_sensors.metering.estimate`).
    - ``powercap_root``, ``proc_root``: where the RAPL counters and ``stat``/``cpuinfo`` are read.
    - ``gpu``: meter NVIDIA GPUs with NVML; ``nvml``: a ``pynvml``-like module to use instead of
      importing ``pynvml``.

    >>> MeterSettings(sample_interval_s=10, attribution="machine").attribution
    'machine'
    """

    sample_interval_s: float = 30.0
    attribution: Attribution = "process"
    watts_per_core: float | None = None
    memory_watts_per_gb: float | None = None
    powercap_root: str | os.PathLike[str] = DEFAULT_POWERCAP_ROOT
    proc_root: str | os.PathLike[str] = DEFAULT_PROC_ROOT
    gpu: bool = True
    nvml: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        interval = self.sample_interval_s
        if isinstance(interval, bool) or not isinstance(interval, int | float) or not math.isfinite(interval) or interval <= 0:
            raise ConfigurationError(f"sample_interval_s must be a number of seconds > 0, not {interval!r}")
        if self.attribution not in ("process", "machine"):
            raise ConfigurationError(f"attribution must be 'process' or 'machine', not {self.attribution!r}")
        for name in ("watts_per_core", "memory_watts_per_gb"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0
            ):
                raise ConfigurationError(f"{name} must be a finite number of watts >= 0 or None, not {value!r}")
        for name in ("powercap_root", "proc_root"):
            if not isinstance(getattr(self, name), str | os.PathLike):
                raise ConfigurationError(f"{name} must be a path, not {getattr(self, name)!r}")
        if not isinstance(self.gpu, bool):
            raise ConfigurationError(f"gpu must be True or False, not {self.gpu!r}")


@dataclass(frozen=True, slots=True)
class Measurement:
    """What a :class:`Meter` measured over its block. Times are aware UTC; energy in kWh.

    ``components``: one :class:`~carbon_sensors.records.ComponentEnergy` per component (``cpu``,
    ``memory``, ``gpu``). ``tokens``: per model, summed over calls. ``gpu_count``: devices metered.
    ``notes``: why something was estimated or left out.

    >>> from datetime import datetime, timezone
    >>> from carbon_sensors.records import ComponentEnergy
    >>> t = datetime(2026, 6, 15, 2, tzinfo=timezone.utc)
    >>> m = Measurement(t, t, 60.0, 55.0, (ComponentEnergy("cpu", "rapl", True, 0.002),
    ...                                    ComponentEnergy("memory", "estimate", False, 0.0001)))
    >>> round(m.energy_kwh, 6), m.energy_measured
    (0.0021, False)
    """

    started_at: datetime
    ended_at: datetime
    duration_s: float
    cpu_time_s: float
    components: tuple[ComponentEnergy, ...] = ()
    tokens: tuple[TokenUsage, ...] = ()
    gpu_count: int = 0
    notes: tuple[str, ...] = ()

    @property
    def energy_kwh(self) -> float:
        """The sum of the components."""
        return sum(c.energy_kwh for c in self.components)

    @property
    def energy_measured(self) -> bool:
        """True only where every component was measured (none estimated)."""
        return bool(self.components) and all(c.measured for c in self.components)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (ISO times)."""
        return {
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat(),
            "duration_s": self.duration_s,
            "cpu_time_s": self.cpu_time_s,
            "energy_kwh": self.energy_kwh,
            "energy_measured": self.energy_measured,
            "components": [c.to_dict() for c in self.components],
            "tokens": [t.to_dict() for t in self.tokens],
            "gpu_count": self.gpu_count,
            "notes": list(self.notes),
        }


class Meter:
    """Meters the energy and tokens of the work in its ``with`` (or ``async with``) block.

    >>> from carbon_sensors.metering import Meter, MeterSettings, record_tokens
    >>> with Meter(settings=MeterSettings(gpu=False)) as meter:
    ...     _ = sum(i * i for i in range(100_000))
    ...     record_tokens(prompt=120, completion=30, model="gpt-4o-mini")
    >>> m = meter.measurement
    >>> m.energy_kwh > 0, [c.component for c in m.components], m.tokens[0].total_tokens
    (True, ['cpu', 'memory'], 150)

    An exception in the block propagates unchanged; the measurement is completed all the same.
    A meter measures one block; ``settings`` may be shared. ``strict``: raise instead of noting
    (bad token counts, a failing meter). ``clock``: where ``started_at``/``ended_at`` come from
    (durations use the monotonic clock).

    A bad ``CARBON_SENSORS_WATTS_PER_CORE`` / ``CARBON_SENSORS_MEMORY_WATTS_PER_GB`` raises
    :class:`~carbon_sensors.errors.ConfigurationError` here when strict; otherwise it is noted and
    the default is used.
    """

    def __init__(self, settings: MeterSettings | None = None, *, strict: bool = False, clock: Clock | None = None) -> None:
        if settings is None:
            settings = MeterSettings()
        elif not isinstance(settings, MeterSettings):
            raise ConfigurationError(f"settings must be a MeterSettings, not {type(settings).__name__}")
        self.settings = settings
        self.strict = bool(strict)
        self._clock = clock
        self._notes: list[str] = []
        cpuinfo = Path(settings.proc_root) / "cpuinfo"
        try:
            self._parameters = resolve_parameters(settings.watts_per_core, settings.memory_watts_per_gb, cpuinfo_path=cpuinfo)
        except ConfigurationError as exc:
            if self.strict:
                raise
            log.warning("carbon-sensors: %s; using the default", exc)
            self._notes.append(f"{exc}; the default was used")
            self._parameters = resolve_parameters(
                settings.watts_per_core, settings.memory_watts_per_gb, environ={}, cpuinfo_path=cpuinfo
            )
        # token accounting (tokens.py calls _add_tokens, from any thread)
        self._lock = threading.Lock()
        self._tokens: dict[str, list[int]] = {}
        self._seen_ids: set[str] = set()
        self._active = False
        self._parent: Meter | None = None
        self._token: Any = None
        # run state
        self._state = "new"
        self._rapl: RaplCounters | None = None
        self._sampler: RaplSampler | None = None
        self._nvml: NvmlMeter | None = None
        self._busy0 = 0.0
        self._t0 = 0.0
        self._cpu0 = 0.0
        self._started_at: datetime | None = None
        self._measurement: Measurement | None = None

    def __repr__(self) -> str:
        return f"Meter(state={self._state!r}, strict={self.strict})"

    @property
    def parameters(self) -> EstimateParameters:
        """The watts the estimate uses (and where they came from)."""
        return self._parameters

    @property
    def measurement(self) -> Measurement:
        """The measurement, once the block has ended."""
        if self._measurement is None:
            raise RecordingError("the meter has not finished: read .measurement after its with block")
        return self._measurement

    # -- the context manager ------------------------------------------------------------------

    def __enter__(self) -> Meter:
        if self._state != "new":
            raise ConfigurationError("a Meter measures one block; create a new Meter for the next one")
        self._state = "running"
        self._started_at = as_utc((self._clock or default_clock()).now(), "the meter's clock")
        try:
            self._start_gpu()
            tokens.install_httpx_capture()
        except Exception as exc:  # noqa: BLE001 - metering must not stop the work; noted (raised when strict)
            self._abort_if_strict(exc)
        self._parent = tokens.current_meter()
        self._active = True
        self._token = tokens._activate(self)
        try:
            self._start_rapl()  # last, so the counters' first reading is next to the baselines below
        except Exception as exc:  # noqa: BLE001 - as above
            self._rapl = None
            self._abort_if_strict(exc)
        self._t0 = time.perf_counter()
        self._cpu0 = process_cpu_time_s()
        return self

    def _abort_if_strict(self, exc: Exception) -> None:
        """A failed start: noted, or (strict) everything started is undone and RecordingError raised."""
        if self.strict:
            self._active = False
            tokens._deactivate(self, self._token)
            if self._sampler is not None:
                self._sampler.cancel()
            if self._nvml is not None:
                self._nvml.stop()
            self._state = "new"
        self._failed("start", exc)

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self._state != "running":
            return None
        t1, cpu1 = time.perf_counter(), process_cpu_time_s()
        ended_at = as_utc((self._clock or default_clock()).now(), "the meter's clock")
        self._active = False
        tokens._deactivate(self, self._token)
        self._state = "done"
        duration_s, cpu_time_s = max(0.0, t1 - self._t0), max(0.0, cpu1 - self._cpu0)
        components: list[ComponentEnergy] = []
        gpu_count = 0
        failures: list[Exception] = []
        try:
            components.extend(self._cpu_and_memory(duration_s, cpu_time_s))
        except Exception as err:  # noqa: BLE001 - as above; what was measured is kept
            failures.append(err)
        finally:
            if self._sampler is not None:
                self._sampler.cancel()
        if self._nvml is not None:
            try:
                gpu = self._nvml.stop()
                if gpu is not None:
                    components.append(gpu)
                    gpu_count = self._nvml.device_count
            except Exception as err:  # noqa: BLE001 - as above
                failures.append(err)
            finally:
                self._notes.extend(self._nvml.notes)
        for err in failures:
            self._notes.append(f"the meter failed to stop: {type(err).__name__}: {err}")
        self._measurement = self._build(ended_at, duration_s, cpu_time_s, components, gpu_count)
        if failures:
            self._failed("stop", failures[0], raising=exc is None, noted=True)
        return None  # the block's exception, if any, propagates unchanged

    async def __aenter__(self) -> Meter:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        return self.__exit__(exc_type, exc, tb)

    # -- parts --------------------------------------------------------------------------------

    def _failed(self, when: str, exc: BaseException, *, raising: bool = True, noted: bool = False) -> None:
        if self.strict and raising:
            raise RecordingError(f"the energy meter failed to {when}: {type(exc).__name__}: {exc}") from exc
        log.warning("carbon-sensors: the energy meter failed to %s (%s: %s); this run's energy is partial",
                    when, type(exc).__name__, exc, exc_info=True)
        if not noted:
            self._notes.append(f"the meter failed to {when}: {type(exc).__name__}: {exc}")

    def _start_gpu(self) -> None:
        if not self.settings.gpu:
            return
        nvml = NvmlMeter(self.settings.nvml)
        if nvml.start():
            self._nvml = nvml
        else:
            self._notes.extend(nvml.notes)

    def _start_rapl(self) -> None:
        s = self.settings
        counters = RaplCounters(s.powercap_root)
        try:
            counters.open()
        except RecordingError as exc:
            self._notes.append(f"RAPL not readable: {exc}; estimated")
            return
        if s.attribution == "process":
            try:
                self._busy0 = machine_busy_cpu_s(s.proc_root)
            except RecordingError as exc:
                self._notes.append(f"RAPL energy cannot be attributed to this process ({exc}); estimated")
                return
        self._rapl = counters
        self._sampler = RaplSampler(counters, s.sample_interval_s)
        self._sampler.start()

    def _cpu_and_memory(self, duration_s: float, cpu_time_s: float) -> list[ComponentEnergy]:
        rss = peak_rss_bytes()
        if self._rapl is not None and self._sampler is not None:
            try:
                return self._rapl_components(duration_s, cpu_time_s, rss)
            except RecordingError as exc:
                self._notes.append(f"RAPL reading failed during the run: {exc}; estimated")
        return list(estimate_components(cpu_time_s=cpu_time_s, peak_rss_bytes=rss, duration_s=duration_s,
                                        parameters=self._parameters))

    def _rapl_components(self, duration_s: float, cpu_time_s: float, rss: int | None) -> list[ComponentEnergy]:
        assert self._rapl is not None and self._sampler is not None
        self._sampler.stop()  # final reading
        if self.settings.attribution == "process":
            busy_s = machine_busy_cpu_s(self.settings.proc_root) - self._busy0
            share = process_share(cpu_time_s, busy_s)
            how = f"attribution=process: share {share:.4g} = {cpu_time_s:.3f} s of {max(busy_s, 0.0):.3f} s machine busy CPU time"
        else:
            share, how = 1.0, "attribution=machine: share 1 (all processes)"
        energy, labels, wraps = self._rapl.energy_uj(), self._rapl.labels, self._rapl.wraps
        wrapped = f"; {wraps} counter wrap{'s' if wraps != 1 else ''}" if wraps else ""
        out = [ComponentEnergy("cpu", "rapl", True, energy["cpu"] * share / UJ_PER_KWH,
                               f"{'+'.join(labels['cpu'])}, {how}{wrapped}")]
        if "memory" in energy:
            out.append(ComponentEnergy("memory", "rapl", True, energy["memory"] * share / UJ_PER_KWH,
                                       f"{'+'.join(labels['memory'])}, {how}"))
        elif rss is not None:
            out.append(memory_component(rss, duration_s, self._parameters))
            self._notes.append("no RAPL dram zone: memory estimated")
        return out

    def _build(self, ended_at: datetime, duration_s: float, cpu_time_s: float, components: list[ComponentEnergy],
               gpu_count: int) -> Measurement:
        with self._lock:
            used = tuple(TokenUsage(model, p, c) for model, (p, c) in sorted(self._tokens.items()))
        assert self._started_at is not None
        return Measurement(
            started_at=self._started_at, ended_at=max(ended_at, self._started_at), duration_s=duration_s,
            cpu_time_s=cpu_time_s, components=tuple(components), tokens=used, gpu_count=gpu_count,
            notes=tuple(dict.fromkeys(self._notes)),
        )

    def _add_tokens(self, model: str, prompt: int, completion: int, response_id: str | None) -> bool:
        """Count tokens (from any thread); False where ``response_id`` was counted already."""
        with self._lock:
            if response_id is not None:
                if response_id in self._seen_ids:
                    return False
                self._seen_ids.add(response_id)
            counts = self._tokens.setdefault(model, [0, 0])
            counts[0] += prompt
            counts[1] += completion
            return True
