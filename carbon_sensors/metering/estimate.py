"""The energy estimate used where no counter can be read: CPU time x watts per core, plus memory.

- **CPU**: the process tree's CPU time (this process and the children it has waited for, from
  ``getrusage``) x watts per busy logical CPU. The default, :data:`DEFAULT_WATTS_PER_CORE` = 4.0 W,
  is a package's TDP divided by its hardware threads for typical server parts, rounded up so an
  unknown CPU is not under-reported: Xeon Gold 6248 150 W / 40 = 3.75 W, Xeon Platinum 8380
  270 W / 80 = 3.4 W, EPYC 7543 225 W / 64 = 3.5 W, EPYC 7763 280 W / 128 = 2.2 W (vendor data
  sheets); Cloud Carbon Footprint's upper coefficient for AWS vCPUs is 3.5 W. Where
  ``/proc/cpuinfo`` names a family in :data:`WATTS_PER_CORE_TABLE`, that row is used instead.
- **Memory**: peak resident set size (GB) x :data:`DEFAULT_MEMORY_WATTS_PER_GB` = 0.375 W/GB x
  wall time. 0.375 W/GB is 3 W per 8 GB DDR4 module, the figure CodeCarbon uses (Cloud Carbon
  Footprint uses 0.392 W/GB); peak RSS over the whole run is an upper bound of what was resident.

Both can be set per meter (:class:`~carbon_sensors.metering.MeterSettings`) or for the whole
worker with ``CARBON_SENSORS_WATTS_PER_CORE`` and ``CARBON_SENSORS_MEMORY_WATTS_PER_GB``.

>>> p = resolve_parameters(watts_per_core=5.0, environ={}, cpuinfo_path="/nonexistent")
>>> cpu, memory = estimate_components(cpu_time_s=720.0, peak_rss_bytes=2 * 10**9, duration_s=3600.0, parameters=p)
>>> cpu.energy_kwh, round(memory.energy_kwh, 6), cpu.measured
(0.001, 0.00075, False)
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from carbon_sensors.errors import ConfigurationError
from carbon_sensors.records import ComponentEnergy
from carbon_sensors.renames import env_setting

__all__ = [
    "DEFAULT_MEMORY_WATTS_PER_GB",
    "DEFAULT_WATTS_PER_CORE",
    "MEMORY_WATTS_ENV",
    "WATTS_PER_CORE_ENV",
    "WATTS_PER_CORE_TABLE",
    "EstimateParameters",
    "cpu_model",
    "estimate_components",
    "memory_component",
    "peak_rss_bytes",
    "process_cpu_time_s",
    "resolve_parameters",
]

DEFAULT_WATTS_PER_CORE = 4.0
DEFAULT_MEMORY_WATTS_PER_GB = 0.375
WATTS_PER_CORE_ENV = "CARBON_SENSORS_WATTS_PER_CORE"
MEMORY_WATTS_ENV = "CARBON_SENSORS_MEMORY_WATTS_PER_GB"

#: (substring of the ``model name`` in /proc/cpuinfo, watts per busy logical CPU), first match wins.
#: TDP / threads, median over current parts of the family (vendor data sheets), rounded to 0.5 W.
WATTS_PER_CORE_TABLE: tuple[tuple[str, float], ...] = (
    ("EPYC", 3.0),  # 7763 2.2, 9654 1.9, 9554 2.8, 7543 3.5, 7313 4.8
    ("Xeon", 3.5),  # Gold 6248 3.75, Platinum 8380 3.4, Gold 6338 3.2, Platinum 8480+ 3.1, Gold 6430 4.2
)

_J_PER_KWH = 3.6e6


@dataclass(frozen=True, slots=True)
class EstimateParameters:
    """The watts the estimate assumes, and where each figure came from (for the record's detail)."""

    watts_per_core: float
    watts_per_core_source: str
    memory_watts_per_gb: float
    memory_watts_per_gb_source: str


def _valid_watts(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ConfigurationError(f"{name} must be a finite number of watts >= 0, not {value!r}")
    return float(value)


def _from_env(environ: Mapping[str, str], name: str) -> float | None:
    raw = env_setting(name, environ)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number; set it to watts, e.g. {name}=4.0, or unset it") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigurationError(f"{name}={raw!r} must be a finite number of watts >= 0; fix or unset it")
    return value


def cpu_model(cpuinfo_path: str | os.PathLike[str] = "/proc/cpuinfo") -> str | None:
    """The first ``model name`` in ``/proc/cpuinfo``, or None where there is none (ARM, not Linux)."""
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "model name":
                    return value.strip() or None
    except OSError:
        return None
    return None


def resolve_parameters(
    watts_per_core: float | None = None,
    memory_watts_per_gb: float | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cpuinfo_path: str | os.PathLike[str] = "/proc/cpuinfo",
) -> EstimateParameters:
    """The estimate's watts: explicit arguments, else the environment, else the CPU table, else the defaults.

    A bad environment value raises :class:`~carbon_sensors.errors.ConfigurationError` naming the variable.

    >>> resolve_parameters(environ={"CARBON_SENSORS_WATTS_PER_CORE": "6"}, cpuinfo_path="/nonexistent").watts_per_core
    6.0
    """
    env = os.environ if environ is None else environ
    if watts_per_core is not None:
        core, core_source = _valid_watts(watts_per_core, "watts_per_core"), "set in MeterSettings"
    elif (value := _from_env(env, WATTS_PER_CORE_ENV)) is not None:
        core, core_source = value, f"from {WATTS_PER_CORE_ENV}"
    else:
        model = cpu_model(cpuinfo_path)
        row = next(((key, w) for key, w in WATTS_PER_CORE_TABLE if model and key in model), None)
        if row is not None:
            core, core_source = row[1], f"table row {row[0]!r} for {model}"
        else:
            core, core_source = DEFAULT_WATTS_PER_CORE, "default: TDP / threads of typical server CPUs"
    if memory_watts_per_gb is not None:
        mem, mem_source = _valid_watts(memory_watts_per_gb, "memory_watts_per_gb"), "set in MeterSettings"
    elif (value := _from_env(env, MEMORY_WATTS_ENV)) is not None:
        mem, mem_source = value, f"from {MEMORY_WATTS_ENV}"
    else:
        mem, mem_source = DEFAULT_MEMORY_WATTS_PER_GB, "default: 3 W per 8 GB module"
    return EstimateParameters(core, core_source, mem, mem_source)


def process_cpu_time_s() -> float:
    """CPU seconds (user + system) of this process and of the children it has waited for."""
    try:
        import resource
    except ImportError:  # Windows
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def peak_rss_bytes() -> int | None:
    """Peak resident set size of this process plus that of its largest waited-for child, or None (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux and BSD
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return (me.ru_maxrss + kids.ru_maxrss) * unit


def estimate_components(
    *, cpu_time_s: float, peak_rss_bytes: int | None, duration_s: float, parameters: EstimateParameters
) -> tuple[ComponentEnergy, ...]:
    """The estimated ``cpu`` and ``memory`` components (memory left out where the RSS is unknown)."""
    w = parameters.watts_per_core
    cpu = ComponentEnergy(
        "cpu", "estimate", False, cpu_time_s * w / _J_PER_KWH,
        f"{w:g} W per busy CPU x {cpu_time_s:.3f} s CPU time of this process tree ({parameters.watts_per_core_source})",
    )
    if peak_rss_bytes is None:
        return (cpu,)
    return (cpu, memory_component(peak_rss_bytes, duration_s, parameters))


def memory_component(peak_rss_bytes: int, duration_s: float, parameters: EstimateParameters) -> ComponentEnergy:
    """The estimated ``memory`` component: peak RSS (GB) x watts per GB x wall time."""
    gb, w = peak_rss_bytes / 1e9, parameters.memory_watts_per_gb
    return ComponentEnergy(
        "memory", "estimate", False, gb * w * duration_s / _J_PER_KWH,
        f"{w:g} W/GB x {gb:.3f} GB peak RSS x {duration_s:.3f} s ({parameters.memory_watts_per_gb_source})",
    )
