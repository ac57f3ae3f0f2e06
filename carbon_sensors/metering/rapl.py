"""CPU package and DRAM energy from RAPL counters in the Linux powercap sysfs tree.

The kernel's ``intel_rapl`` driver (on recent kernels also for AMD Zen) exposes one top-level zone per CPU
package, ``/sys/class/powercap/intel-rapl:N``, whose ``name`` is ``package-N``, with an
``energy_uj`` counter (microjoules since boot) that wraps at ``max_energy_range_uj``. A ``dram``
subzone (``intel-rapl:N:M`` with ``name`` = ``dram``) meters that package's memory where the
platform supports it. ``intel-rapl-mmio:N`` zones repeat the package counter and are ignored.

A counter can wrap in minutes on a busy server (about 262 kJ at 250 W is 17 minutes), more than
once in a long task, so :class:`RaplSampler` reads every counter each ``sample_interval_s`` in a
daemon thread (one ``Event.wait`` per interval; no busy loop) and accumulates deltas. A delta where
the new reading is lower than the old one is a wrap: ``max_range - old + new``.

RAPL meters the whole package: every process on the machine. :func:`process_share` turns machine
energy into this process tree's part, by its share of the machine's busy CPU time (``/proc/stat``).

Since the fix for CVE-2020-8694 (Linux 5.10, backported to stable kernels) ``energy_uj`` is
readable by root only, unless an administrator relaxes it (``chmod o+r``, a udev rule, or the
worker running with ``CAP_DAC_READ_SEARCH``). Where it cannot be read, the meter falls back to the
estimate and its notes say why.

>>> counters = RaplCounters("/nonexistent")
>>> try:
...     counters.open()
... except RecordingError as exc:
...     print(exc)
no powercap interface at /nonexistent (not Linux, or the intel_rapl driver is not loaded)
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from carbon_sensors.errors import RecordingError

__all__ = [
    "DEFAULT_POWERCAP_ROOT",
    "DEFAULT_PROC_ROOT",
    "RaplCounters",
    "RaplSampler",
    "machine_busy_cpu_s",
    "process_share",
]

DEFAULT_POWERCAP_ROOT = "/sys/class/powercap"
DEFAULT_PROC_ROOT = "/proc"

_ZONE = re.compile(r"intel-rapl:(\d+)")
_SUBZONE = re.compile(r"intel-rapl:(\d+):(\d+)")
UJ_PER_KWH = 3.6e12


@dataclass(slots=True)
class _Counter:
    """One ``energy_uj`` file and what has been accumulated from it."""

    label: str  # "package-0", "dram/package-0"
    component: str  # "cpu" | "memory"
    path: Path
    max_range_uj: int
    last_uj: int
    total_uj: int = 0
    wraps: int = 0


def _read_int(path: Path) -> int:
    with open(path, "rb") as f:
        return int(f.read().strip())


def _read_text(path: Path) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read().strip()


def _unreadable(path: Path, exc: OSError | ValueError) -> RecordingError:
    if isinstance(exc, PermissionError):
        return RecordingError(
            f"permission denied on {path} (current kernels make energy_uj root-only; grant read access with "
            "a udev rule or chmod o+r to meter with RAPL)"
        )
    if isinstance(exc, FileNotFoundError):
        return RecordingError(f"{path} is missing")
    return RecordingError(f"cannot read {path}: {exc}")


class RaplCounters:
    """The package (and DRAM) energy counters under a powercap root, accumulated across wraps.

    :meth:`open` finds the zones and takes the first reading; :meth:`sample` reads again and adds
    the deltas; :meth:`energy_uj` is what has been accumulated per component (``cpu``, ``memory``).
    Thread-safe: the sampler thread and the meter may sample at the same time.
    """

    def __init__(self, root: str | os.PathLike[str] = DEFAULT_POWERCAP_ROOT) -> None:
        self.root = Path(root)
        self._counters: list[_Counter] = []
        self._lock = threading.Lock()

    def open(self) -> None:
        """Find the package zones and read every counter once; RecordingError says why RAPL is unusable."""
        if not self.root.is_dir():
            raise RecordingError(f"no powercap interface at {self.root} (not Linux, or the intel_rapl driver is not loaded)")
        try:
            zones = sorted((p for p in self.root.iterdir() if _ZONE.fullmatch(p.name)), key=lambda p: int(p.name.split(":")[1]))
        except OSError as exc:
            raise _unreadable(self.root, exc) from exc
        counters: list[_Counter] = []
        for zone in zones:
            try:
                name = _read_text(zone / "name")
            except OSError as exc:
                raise _unreadable(zone / "name", exc) from exc
            if not name.startswith("package"):
                continue  # psys, or another domain that would count the package twice
            counters.append(self._counter(zone, name, "cpu"))
            dram = self._dram_zone(zone)
            if dram is not None:
                counters.append(self._counter(dram, f"dram/{name}", "memory"))
        if not counters:
            raise RecordingError(f"no RAPL package zone under {self.root}")
        with self._lock:
            self._counters = counters

    def _dram_zone(self, zone: Path) -> Path | None:
        index = zone.name.split(":")[1]
        # Inside the zone directory (the real sysfs layout) or beside it (the class directory's links).
        candidates = [*_subzones(zone, index), *_subzones(self.root, index)]
        for sub in candidates:
            try:
                if _read_text(sub / "name") == "dram":
                    return sub
            except OSError:
                continue
        return None

    @staticmethod
    def _counter(zone: Path, label: str, component: str) -> _Counter:
        energy, max_range = zone / "energy_uj", zone / "max_energy_range_uj"
        try:
            max_range_uj = _read_int(max_range)
        except (OSError, ValueError) as exc:
            raise _unreadable(max_range, exc) from exc
        try:
            first = _read_int(energy)
        except (OSError, ValueError) as exc:
            raise _unreadable(energy, exc) from exc
        if max_range_uj <= 0:
            raise RecordingError(f"{max_range} holds {max_range_uj}; a counter wrap could not be handled")
        return _Counter(label, component, energy, max_range_uj, first)

    def sample(self) -> None:
        """Read every counter and add the delta since the last reading (a lower reading is a wrap)."""
        with self._lock:
            for counter in self._counters:
                try:
                    now = _read_int(counter.path)
                except (OSError, ValueError) as exc:
                    raise _unreadable(counter.path, exc) from exc
                if now >= counter.last_uj:
                    counter.total_uj += now - counter.last_uj
                else:
                    counter.total_uj += counter.max_range_uj - counter.last_uj + now
                    counter.wraps += 1
                counter.last_uj = now

    def energy_uj(self) -> dict[str, int]:
        """Microjoules accumulated so far per component (``cpu``; ``memory`` where a dram zone exists)."""
        with self._lock:
            out: dict[str, int] = {}
            for counter in self._counters:
                out[counter.component] = out.get(counter.component, 0) + counter.total_uj
            return out

    @property
    def labels(self) -> dict[str, tuple[str, ...]]:
        """The zones metered per component, e.g. ``{"cpu": ("package-0", "package-1")}``."""
        out: dict[str, tuple[str, ...]] = {}
        for counter in self._counters:
            out[counter.component] = (*out.get(counter.component, ()), counter.label)
        return out

    @property
    def wraps(self) -> int:
        """How many counter wraps were seen (over all counters)."""
        return sum(c.wraps for c in self._counters)


def _subzones(directory: Path, index: str) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if (m := _SUBZONE.fullmatch(p.name)) and m.group(1) == index)
    except OSError:
        return []


class RaplSampler:
    """Samples :class:`RaplCounters` every ``interval_s`` in a daemon thread until :meth:`stop`.

    The thread sleeps in ``Event.wait(interval_s)``: it wakes a few times an hour and costs
    microseconds each time. A failed reading ends the sampling; :attr:`error` says why.
    """

    def __init__(self, counters: RaplCounters, interval_s: float) -> None:
        self.counters = counters
        self.interval_s = interval_s
        self.error: RecordingError | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="carbon-sensors-rapl", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.counters.sample()
            except RecordingError as exc:
                self.error = exc
                return

    def cancel(self) -> None:
        """Stop the thread without a final reading."""
        self._stop.set()

    def stop(self) -> None:
        """Stop the thread and take the final reading (RecordingError if a reading failed)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise self.error
        self.counters.sample()


def machine_busy_cpu_s(proc_root: str | os.PathLike[str] = DEFAULT_PROC_ROOT) -> float:
    """CPU seconds all CPUs of the machine have been busy since boot, from ``/proc/stat``.

    Busy is user + nice + system + irq + softirq; idle, iowait and steal (time the hypervisor gave
    to another guest) are not this package's work, and guest time is already inside user.

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (root / "stat").write_text("cpu  400 100 300 9000 50 20 30 5 0 0\\n")
    >>> round(machine_busy_cpu_s(root) * os.sysconf("SC_CLK_TCK"))
    850
    """
    path = Path(proc_root) / "stat"
    try:
        with open(path, encoding="ascii") as f:
            line = f.readline()
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    fields = line.split()
    if not fields or fields[0] != "cpu" or len(fields) < 8:
        raise RecordingError(f"{path} has no aggregate cpu line")
    try:
        user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[1:8])
    except ValueError as exc:
        raise RecordingError(f"{path}: cannot parse the cpu line {line.strip()!r}") from exc
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def process_share(process_cpu_s: float, machine_busy_s: float) -> float:
    """This process tree's part of the machine's busy CPU time, clamped to [0, 1].

    When the machine's tick counters did not move (a run shorter than a tick) but the process used
    CPU, all observed work was ours: 1.0.

    >>> process_share(2.0, 8.0), process_share(3.0, 2.0), process_share(0.01, 0.0)
    (0.25, 1.0, 1.0)
    """
    if machine_busy_s <= 0:
        return 1.0 if process_cpu_s > 0 else 0.0
    return min(1.0, max(0.0, process_cpu_s / machine_busy_s))
