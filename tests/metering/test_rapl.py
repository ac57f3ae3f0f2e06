"""RAPL counters from a powercap tree laid out as sysfs lays it out: zones, wraps, sampling, attribution."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path

import pytest
from fake_sysfs import MAX_RANGE_UJ, PowercapTree, ticks, two_socket_server, write_proc

from carbon_sensors.errors import RecordingError
from carbon_sensors.metering import Meter, MeterSettings
from carbon_sensors.metering.rapl import RaplCounters, RaplSampler, machine_busy_cpu_s, process_share

UJ_PER_KWH = 3.6e12


def test_two_packages_are_summed_and_their_dram_is_memory(tmp_path):
    """Both package counters add up to cpu, both dram subzones to memory; psys and mmio zones are ignored."""
    tree = two_socket_server(tmp_path)
    counters = RaplCounters(tmp_path)
    counters.open()
    tree.set("intel-rapl:0", 1_000_000 + 30_000_000)
    tree.set("intel-rapl:1", 5_000_000 + 20_000_000)
    tree.set("intel-rapl:0:2", 100_000 + 4_000_000)
    tree.set("intel-rapl:1:2", 500_000 + 1_000_000)
    tree.set("intel-rapl:2", 999_000_000)  # psys: would double-count the packages
    tree.set("intel-rapl:0:0", 900_000_000)  # core: inside package-0 already
    counters.sample()
    assert counters.energy_uj() == {"cpu": 50_000_000, "memory": 5_000_000}
    assert counters.labels == {"cpu": ("package-0", "package-1"), "memory": ("dram/package-0", "dram/package-1")}
    assert counters.wraps == 0


def test_a_wrapped_counter_adds_the_rest_of_the_range(tmp_path):
    """A reading lower than the last one is a wrap: max_range - old + new."""
    tree = PowercapTree(tmp_path)
    tree.zone(0, "package-0", MAX_RANGE_UJ - 1_000)
    counters = RaplCounters(tmp_path)
    counters.open()
    tree.set("intel-rapl:0", 4_000)
    counters.sample()
    assert counters.energy_uj() == {"cpu": 5_000}
    assert counters.wraps == 1


def test_sampling_between_wraps_counts_every_wrap(tmp_path):
    """Sampled between wraps, a counter that wraps twice is counted in full; read only at the ends it would lose a range."""
    tree = PowercapTree(tmp_path)
    tree.zone(0, "package-0", 900, max_range_uj=1_000)
    sampled, ends_only = RaplCounters(tmp_path), RaplCounters(tmp_path)
    sampled.open()
    ends_only.open()
    for reading in (300, 800, 100, 700):  # 900 -> 300 wraps, -> 800, -> 100 wraps, -> 700
        tree.set("intel-rapl:0", reading)
        sampled.sample()
    ends_only.sample()
    assert sampled.energy_uj()["cpu"] == 400 + 500 + 300 + 600
    assert sampled.wraps == 2
    assert ends_only.energy_uj()["cpu"] == 800  # one range lost: why the sampler exists


def test_the_sampler_thread_reads_the_counters_until_stopped(tmp_path):
    """The daemon thread samples on its own (catching a wrap the final reading would miss) and stops with a last reading."""
    tree = PowercapTree(tmp_path)
    tree.zone(0, "package-0", 900, max_range_uj=1_000)
    counters = RaplCounters(tmp_path)
    counters.open()
    sampler = RaplSampler(counters, interval_s=0.005)
    sampler.start()
    tree.set("intel-rapl:0", 300)  # wrapped: +400
    deadline = time.monotonic() + 5
    while counters.energy_uj()["cpu"] != 400 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert counters.energy_uj()["cpu"] == 400
    tree.set("intel-rapl:0", 800)
    sampler.stop()
    assert counters.energy_uj()["cpu"] == 900
    assert not any(t.name == "carbon-sensors-rapl" and t.is_alive() for t in threading.enumerate())


def test_dram_subzone_is_optional(tmp_path):
    """A package without a dram subzone gives cpu only."""
    two_socket_server(tmp_path, dram=False)
    counters = RaplCounters(tmp_path)
    counters.open()
    counters.sample()
    assert counters.energy_uj() == {"cpu": 0}


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda root: None, "no powercap interface at"),
        (lambda root: PowercapTree(root).zone(0, "psys", 1), "no RAPL package zone under"),
        (lambda root: (PowercapTree(root).zone(0, "package-0", 1) / "energy_uj").unlink(), "energy_uj is missing"),
        (lambda root: (PowercapTree(root).zone(0, "package-0", 1) / "energy_uj").write_text("garbage\n"), "cannot read"),
    ],
    ids=["no-powercap", "no-package-zone", "missing-energy-file", "unparsable-counter"],
)
def test_unusable_trees_say_why(tmp_path, build, message):
    """Each way RAPL can be unusable is a RecordingError naming the cause."""
    root = tmp_path / "powercap"
    build(root)
    with pytest.raises(RecordingError, match=message):
        RaplCounters(root).open()


def _open_unprivileged(root: Path) -> str:
    """Open the counters as an unprivileged user: directly, or as root in a child that drops to nobody."""
    if os.geteuid() != 0:
        try:
            RaplCounters(root).open()
        except RecordingError as exc:
            return str(exc)
        return "opened"
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop root (and with it CAP_DAC_OVERRIDE), then try
        os.close(read_end)
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            RaplCounters(root).open()
            message = "opened"
        except RecordingError as exc:
            message = str(exc)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the test
            message = f"child failed: {exc!r}"
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(pid, 0)
    return message


def test_a_root_only_counter_is_reported_as_permission_denied():
    """energy_uj readable by root only (modern kernels) gives 'permission denied' and says how to grant access."""
    if not hasattr(os, "fork"):
        pytest.skip("needs fork to drop privileges")
    base = Path(tempfile.mkdtemp(prefix="carbon-sensors-powercap-"))
    try:
        base.chmod(0o755)
        tree = PowercapTree(base / "powercap")
        zone = tree.zone(0, "package-0", 1_000)
        for directory in (base / "powercap", zone):
            directory.chmod(0o755)
        for f in zone.iterdir():
            f.chmod(0o444)
        (zone / "energy_uj").chmod(0o400)  # as the kernel has it since 5.10
        if os.geteuid() != 0:
            (zone / "energy_uj").chmod(0)
        message = _open_unprivileged(base / "powercap")
    finally:
        for path in sorted(base.rglob("*"), reverse=True):
            if not path.is_symlink():
                path.chmod(stat.S_IRWXU)
        shutil.rmtree(base)
    assert message.startswith("permission denied on"), message
    assert "energy_uj" in message and "udev" in message


def test_machine_busy_time_counts_user_nice_system_irq_softirq(tmp_path):
    """Busy CPU time is user+nice+system+irq+softirq ticks; idle, iowait and steal are not."""
    (tmp_path / "stat").write_text("cpu  100 20 30 5000 70 4 6 900 0 0\n")
    assert machine_busy_cpu_s(tmp_path) == pytest.approx(160 / os.sysconf("SC_CLK_TCK"))


def test_an_unreadable_proc_stat_is_a_recording_error(tmp_path):
    """No /proc/stat (or no cpu line) is a RecordingError."""
    with pytest.raises(RecordingError, match="missing"):
        machine_busy_cpu_s(tmp_path)
    (tmp_path / "stat").write_text("intr 0\n")
    with pytest.raises(RecordingError, match="no aggregate cpu line"):
        machine_busy_cpu_s(tmp_path)


def test_process_share_is_clamped():
    """The share is process CPU over machine busy CPU, between 0 and 1."""
    assert process_share(1.0, 4.0) == 0.25
    assert process_share(5.0, 4.0) == 1.0
    assert process_share(0.0, 0.0) == 0.0


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_meter_attributes_rapl_energy_by_process_cpu_share(tmp_path):
    """With attribution=process, package and dram energy are scaled by the process's share of busy CPU time."""
    tree = two_socket_server(tmp_path / "powercap")
    proc = write_proc(tmp_path / "proc", busy_ticks=ticks(1_000))
    settings = MeterSettings(powercap_root=tree.root, proc_root=proc, gpu=False, sample_interval_s=3600)
    with Meter(settings=settings) as meter:
        _burn(0.05)
        tree.set("intel-rapl:0", 1_000_000 + 700_000_000)
        tree.set("intel-rapl:1", 5_000_000 + 300_000_000)
        tree.set("intel-rapl:0:2", 100_000 + 60_000_000)
        tree.set("intel-rapl:1:2", 500_000 + 40_000_000)
        write_proc(proc, busy_ticks=ticks(1_000) + ticks(0.5))  # the machine was busy half a CPU-second
    m = meter.measurement
    share = m.cpu_time_s / (ticks(0.5) / os.sysconf("SC_CLK_TCK"))
    assert 0 < share < 1
    cpu, memory = m.components
    assert (cpu.component, cpu.method, cpu.measured) == ("cpu", "rapl", True)
    assert cpu.energy_kwh == pytest.approx(1_000_000_000 * share / UJ_PER_KWH, rel=1e-3)
    assert (memory.component, memory.method, memory.measured) == ("memory", "rapl", True)
    assert memory.energy_kwh == pytest.approx(100_000_000 * share / UJ_PER_KWH, rel=1e-3)
    assert "attribution=process" in cpu.detail and f"share {share:.4g}" in cpu.detail
    assert "package-0+package-1" in cpu.detail
    assert m.energy_measured
    assert not any(t.name == "carbon-sensors-rapl" and t.is_alive() for t in threading.enumerate())


def test_meter_machine_attribution_keeps_all_energy_and_counts_wraps(tmp_path):
    """With attribution=machine the whole package energy is the run's; a wrap during the run is counted."""
    tree = PowercapTree(tmp_path / "powercap")
    tree.zone(0, "package-0", MAX_RANGE_UJ - 1_000_000)
    settings = MeterSettings(powercap_root=tree.root, proc_root=tmp_path / "noproc", attribution="machine", gpu=False)
    with Meter(settings=settings) as meter:
        tree.set("intel-rapl:0", 2_600_000)
    cpu, memory = meter.measurement.components
    assert cpu.energy_kwh == pytest.approx(3_600_000 / UJ_PER_KWH)
    assert "attribution=machine" in cpu.detail and "1 counter wrap" in cpu.detail
    assert (memory.method, memory.measured) == ("estimate", False)  # no dram zone
    assert not meter.measurement.energy_measured
    assert "no RAPL dram zone: memory estimated" in meter.measurement.notes


def test_meter_falls_back_to_the_estimate_when_rapl_is_missing(tmp_path):
    """Without readable counters the meter estimates and its notes say why."""
    tree = PowercapTree(tmp_path / "powercap")
    (tree.zone(0, "package-0", 1) / "energy_uj").unlink()
    with Meter(settings=MeterSettings(powercap_root=tree.root, gpu=False)) as meter:
        _burn(0.01)
    m = meter.measurement
    assert [c.method for c in m.components] == ["estimate", "estimate"]
    assert any(n.startswith("RAPL not readable:") and n.endswith("; estimated") and "energy_uj is missing" in n for n in m.notes)


def test_meter_estimates_when_rapl_cannot_be_attributed(tmp_path):
    """Process attribution without a readable /proc/stat falls back to the estimate rather than charging the machine."""
    tree = two_socket_server(tmp_path / "powercap")
    with Meter(settings=MeterSettings(powercap_root=tree.root, proc_root=tmp_path / "noproc", gpu=False)) as meter:
        pass
    assert meter.measurement.components[0].method == "estimate"
    assert any("cannot be attributed" in n for n in meter.measurement.notes)


def test_meter_estimates_when_a_counter_disappears_mid_run(tmp_path):
    """A counter that cannot be read at the end of the run turns into the estimate with a note."""
    tree = PowercapTree(tmp_path / "powercap")
    zone = tree.zone(0, "package-0", 1_000)
    settings = MeterSettings(powercap_root=tree.root, attribution="machine", gpu=False)
    with Meter(settings=settings) as meter:
        (zone / "energy_uj").unlink()
    assert meter.measurement.components[0].method == "estimate"
    assert any(n.startswith("RAPL reading failed during the run") for n in meter.measurement.notes)
