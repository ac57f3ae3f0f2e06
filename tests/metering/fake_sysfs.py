"""Fake powercap and /proc trees laid out as the Linux kernel lays them out, for the RAPL tests."""

from __future__ import annotations

import os
from pathlib import Path

#: The range a real package counter wraps at (intel_rapl on a Xeon: 2^32 energy units of 61 uJ).
MAX_RANGE_UJ = 262143328850


class PowercapTree:
    """``/sys/class/powercap`` under ``root``: packages with core and (optionally) dram subzones.

    As in sysfs, each subzone is a directory inside its package (``intel-rapl:0/intel-rapl:0:2``) and
    also appears at the top level as a link; ``intel-rapl-mmio:0`` and a ``psys`` zone are present
    and must be ignored.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "intel-rapl").mkdir(exist_ok=True)  # the control type directory, not a zone
        (root / "intel-rapl" / "enabled").write_text("1\n")

    def zone(self, index: int, name: str, energy_uj: int, max_range_uj: int = MAX_RANGE_UJ) -> Path:
        path = self.root / f"intel-rapl:{index}"
        self._write_zone(path, name, energy_uj, max_range_uj)
        return path

    def subzone(self, package: int, index: int, name: str, energy_uj: int, max_range_uj: int = MAX_RANGE_UJ) -> Path:
        path = self.root / f"intel-rapl:{package}" / f"intel-rapl:{package}:{index}"
        self._write_zone(path, name, energy_uj, max_range_uj)
        link = self.root / path.name
        if not link.exists():
            link.symlink_to(path, target_is_directory=True)
        return path

    def mmio(self, energy_uj: int) -> Path:
        path = self.root / "intel-rapl-mmio:0"
        self._write_zone(path, "package-0", energy_uj, MAX_RANGE_UJ)
        return path

    @staticmethod
    def _write_zone(path: Path, name: str, energy_uj: int, max_range_uj: int) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / "name").write_text(name + "\n")
        (path / "enabled").write_text("1\n")
        (path / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
        (path / "energy_uj").write_text(f"{energy_uj}\n")

    def set(self, zone: str, energy_uj: int) -> None:
        """Move a counter: ``zone`` is ``"intel-rapl:0"`` or ``"intel-rapl:0:2"``."""
        parts = zone.split(":")
        path = self.root / zone if len(parts) == 2 else self.root / f"intel-rapl:{parts[1]}" / zone
        # sysfs hands a reader the whole value or the old one, never an empty file: write beside it and
        # rename over it, so a sampler thread reading at the same moment sees what the kernel would show.
        staged = path / "energy_uj.new"
        staged.write_text(f"{energy_uj}\n")
        os.replace(staged, path / "energy_uj")


def two_socket_server(root: Path, *, dram: bool = True) -> PowercapTree:
    """Two packages, each with a core subzone and (by default) a dram subzone; plus psys and mmio."""
    tree = PowercapTree(root)
    for p, start in ((0, 1_000_000), (1, 5_000_000)):
        tree.zone(p, f"package-{p}", start)
        tree.subzone(p, 0, "core", start // 2)
        if dram:
            tree.subzone(p, 2, "dram", start // 10)
    tree.zone(2, "psys", 9_000_000)
    tree.mmio(1_000_000)
    return tree


def write_proc(
    root: Path, busy_ticks: int, *, idle_ticks: int = 10_000_000, model: str = "Intel(R) Xeon(R) Gold 6248 CPU"
) -> Path:
    """``/proc/stat`` (aggregate line, user ticks = ``busy_ticks``) and ``/proc/cpuinfo`` under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "stat").write_text(
        f"cpu  {busy_ticks} 0 0 {idle_ticks} 0 0 0 0 0 0\n"
        f"cpu0 {busy_ticks} 0 0 {idle_ticks} 0 0 0 0 0 0\n"
        "intr 0\nctxt 0\nbtime 1700000000\nprocesses 1\nprocs_running 1\nprocs_blocked 0\n"
    )
    (root / "cpuinfo").write_text(f"processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: {model}\n\n")
    return root


def ticks(seconds: float) -> int:
    """CPU seconds in /proc/stat ticks."""
    return round(seconds * os.sysconf("SC_CLK_TCK"))
