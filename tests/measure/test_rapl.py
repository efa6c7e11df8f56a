"""RAPL counters read directly, on fixture powercap trees: discovery, wrap correction, unreadable counters."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from carbon_node.measure.rapl import RaplCounters, RaplError

RANGE_UJ = 262_143_328_850


def zone(root: Path, path: str, name: str, energy_uj: int | None = 0, max_uj: int = RANGE_UJ) -> Path:
    directory = root / path
    directory.mkdir(parents=True)
    (directory / "name").write_text(name + "\n", encoding="ascii")
    (directory / "max_energy_range_uj").write_text(f"{max_uj}\n", encoding="ascii")
    if energy_uj is not None:
        (directory / "energy_uj").write_text(f"{energy_uj}\n", encoding="ascii")
    return directory


def test_packages_and_dram_are_measured_psys_core_and_mmio_are_not(tmp_path: Path) -> None:
    zone(tmp_path, "intel-rapl:0", "package-0")
    zone(tmp_path, "intel-rapl:0/intel-rapl:0:0", "core")
    zone(tmp_path, "intel-rapl:0/intel-rapl:0:2", "dram")
    zone(tmp_path, "intel-rapl:1", "psys")
    zone(tmp_path, "intel-rapl-mmio:0", "package-0")
    (tmp_path / "intel-rapl").mkdir()  # the control type directory
    names = [(z.path.relative_to(tmp_path).as_posix(), z.name) for z in RaplCounters(tmp_path).discover()]
    assert names == [("intel-rapl:0", "package-0"), ("intel-rapl:0/intel-rapl:0:2", "dram")]


def test_a_sub_zone_listed_at_the_top_level_as_well_is_counted_once(tmp_path: Path) -> None:
    zone(tmp_path, "intel-rapl:0", "package-0")
    dram = zone(tmp_path, "intel-rapl:0/intel-rapl:0:2", "dram")
    (tmp_path / "intel-rapl:0:2").symlink_to(dram)  # as sysfs lists it
    assert [z.name for z in RaplCounters(tmp_path).discover()] == ["package-0", "dram"]


def test_energy_is_the_sum_of_the_zone_deltas_in_joules(tmp_path: Path) -> None:
    zone(tmp_path, "intel-rapl:0", "package-0")
    zone(tmp_path, "intel-rapl:0/intel-rapl:0:2", "dram")
    counters = RaplCounters(tmp_path)
    zones = counters.discover()
    assert counters.energy_j(zones, (1_000_000, 5_000_000), (26_000_000, 7_000_000)) == pytest.approx(27.0)


def test_a_counter_that_wrapped_is_corrected_with_its_range(tmp_path: Path) -> None:
    zone(tmp_path, "intel-rapl:0", "package-0", max_uj=50_000_000)
    zones = RaplCounters(tmp_path).discover()
    # 40 J before the wrap point, then 10 J past zero: 20 J in all, not -30 J.
    assert RaplCounters.energy_j(zones, (40_000_000,), (10_000_000,)) == pytest.approx(20.0)


def test_reads_follow_the_counter_file(tmp_path: Path) -> None:
    directory = zone(tmp_path, "intel-rapl:0", "package-0", energy_uj=123)
    zones = RaplCounters(tmp_path).discover()
    assert RaplCounters.read(zones) == (123,)
    (directory / "energy_uj").write_text("456\n", encoding="ascii")
    assert RaplCounters.read(zones) == (456,)


def test_a_missing_counter_is_a_clear_error(tmp_path: Path) -> None:
    zone(tmp_path, "intel-rapl:0", "package-0", energy_uj=None)
    zones = RaplCounters(tmp_path).discover()
    with pytest.raises(RaplError, match="energy_uj does not exist"):
        RaplCounters.read(zones)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode 000 file (CAP_DAC_OVERRIDE); the system test covers it")
def test_an_unpermitted_counter_is_a_clear_error(tmp_path: Path) -> None:
    directory = zone(tmp_path, "intel-rapl:0", "package-0")
    (directory / "energy_uj").chmod(0)
    zones = RaplCounters(tmp_path).discover()
    with pytest.raises(RaplError, match="permission denied"):
        RaplCounters.read(zones)


def test_no_package_zone_or_no_directory_is_a_clear_error(tmp_path: Path) -> None:
    zone(tmp_path, "intel-rapl:1", "psys")
    with pytest.raises(RaplError, match="no RAPL package or dram zone"):
        RaplCounters(tmp_path).discover()
    with pytest.raises(RaplError, match="cannot be listed"):
        RaplCounters(tmp_path / "absent").discover()


def test_a_missing_range_file_is_a_clear_error(tmp_path: Path) -> None:
    directory = zone(tmp_path, "intel-rapl:0", "package-0")
    (directory / "max_energy_range_uj").unlink()
    with pytest.raises(RaplError, match="max_energy_range_uj does not exist"):
        RaplCounters(tmp_path).discover()
