"""Power source detection, on fixture powercap trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from carbon_node.measure.power import plan_power, rapl_present, rapl_readable, tdp_table_watts


def make_zone(root: Path, zone: str, *, name: str = "package-0", energy_uj: str | None = "123456789") -> None:
    directory = root / zone
    directory.mkdir(parents=True)
    (directory / "name").write_text(name + "\n", encoding="ascii")
    if energy_uj is not None:
        (directory / "energy_uj").write_text(energy_uj + "\n", encoding="ascii")


def no_nvml() -> bool:
    return False


def fake_tdp_table() -> tuple[str, float]:
    return ("Fake CPU 9000", 80.0)


def test_a_readable_rapl_counter_makes_rapl_the_source(tmp_path: Path) -> None:
    make_zone(tmp_path, "intel-rapl:0")
    plan = plan_power(sim_cpu_tdp_w=None, sim_cpu_util=None, uses_cuda=False, powercap_root=tmp_path, nvml_probe=no_nvml)
    assert (plan.source, plan.cpu_source, plan.tracker_kwargs) == ("rapl", "rapl", {})


def test_no_powercap_directory_means_the_tdp_table_estimate_handed_to_carbontracker(tmp_path: Path) -> None:
    plan = plan_power(
        sim_cpu_tdp_w=None,
        sim_cpu_util=None,
        uses_cuda=False,
        powercap_root=tmp_path / "absent",
        nvml_probe=no_nvml,
        tdp_table=fake_tdp_table,
    )
    assert plan.source == "tdp_table"
    # Not carbontracker's GenericCPU (a cpuinfo subprocess per window): its figure, through sim_cpu.
    assert plan.tracker_kwargs == {"sim_cpu": "Fake CPU 9000", "sim_cpu_tdp": 80.0, "sim_cpu_util": 0.5}
    assert any("estimate" in note and "not a measurement" in note for note in plan.notes)


def test_the_tdp_table_figure_is_carbontrackers_generic_cpu_figure() -> None:
    """Pins the carbontracker behaviour power.py relies on: SimulatedCPUHandler(name, table TDP, 0.5) draws
    what GenericCPU draws, under the same device name."""
    from carbontracker.components.cpu.generic import GenericCPU
    from carbontracker.components.cpu.sim_cpu import SimulatedCPUHandler

    name, tdp_w = tdp_table_watts()
    generic = GenericCPU(pids=[], devices_by_pid=False)
    generic.init()
    simulated = SimulatedCPUHandler(name, tdp_w, 0.5)
    assert tdp_w > 0
    assert simulated.power_usage() == pytest.approx(generic.power_usage())
    assert simulated.devices() == generic.devices()
    assert tdp_table_watts() is tdp_table_watts()  # computed once per process


def test_unreadable_rapl_counters_hand_the_tdp_table_estimate_to_carbontracker(tmp_path: Path) -> None:
    make_zone(tmp_path, "intel-rapl:0", energy_uj=None)  # present (carbontracker would pick RAPL) but unreadable
    (tmp_path / "intel-rapl:0" / "max_energy_range_uj").write_text("1000\n", encoding="ascii")
    assert rapl_present(tmp_path) and not rapl_readable(tmp_path)
    plan = plan_power(
        sim_cpu_tdp_w=None,
        sim_cpu_util=None,
        uses_cuda=False,
        powercap_root=tmp_path,
        nvml_probe=no_nvml,
        tdp_table=fake_tdp_table,
    )
    assert plan.source == "tdp_table"
    assert plan.tracker_kwargs == {"sim_cpu": "Fake CPU 9000", "sim_cpu_tdp": 80.0, "sim_cpu_util": 0.5}
    assert any("not readable" in note and "energy_uj does not exist" in note for note in plan.notes)


def test_a_counter_that_is_not_an_integer_is_not_readable(tmp_path: Path) -> None:
    make_zone(tmp_path, "intel-rapl:0", energy_uj="garbage")
    assert not rapl_readable(tmp_path)


def test_sim_settings_map_to_carbontracker_sim_cpu(tmp_path: Path) -> None:
    make_zone(tmp_path, "intel-rapl:0")  # simulation wins even over a readable counter
    plan = plan_power(sim_cpu_tdp_w=40.0, sim_cpu_util=0.25, uses_cuda=False, powercap_root=tmp_path, nvml_probe=no_nvml)
    assert plan.source == "simulated"
    assert plan.tracker_kwargs["sim_cpu_tdp"] == 40.0
    assert plan.tracker_kwargs["sim_cpu_util"] == 0.25


def test_sim_power_without_utilisation_is_drawn_in_full(tmp_path: Path) -> None:
    plan = plan_power(sim_cpu_tdp_w=12.0, sim_cpu_util=None, uses_cuda=False, powercap_root=tmp_path, nvml_probe=no_nvml)
    assert plan.tracker_kwargs["sim_cpu_util"] == 1.0


def test_a_cuda_model_with_nvml_is_measured_by_nvml(tmp_path: Path) -> None:
    plan = plan_power(sim_cpu_tdp_w=None, sim_cpu_util=None, uses_cuda=True, powercap_root=tmp_path, nvml_probe=lambda: True)
    assert (plan.source, plan.gpu_source, plan.cpu_source) == ("nvml", "nvml", "tdp_table")


@pytest.mark.parametrize("uses_cuda", [True, False])
def test_nvml_is_not_the_source_when_it_cannot_measure_the_model(tmp_path: Path, uses_cuda: bool) -> None:
    probe = (lambda: False) if uses_cuda else (lambda: True)
    plan = plan_power(sim_cpu_tdp_w=None, sim_cpu_util=None, uses_cuda=uses_cuda, powercap_root=tmp_path, nvml_probe=probe)
    assert plan.gpu_source is None
    assert plan.source == "tdp_table"
    assert any("NVML is unavailable" in note for note in plan.notes) == uses_cuda


def test_a_gpu_measured_through_nvml_is_sampled_ten_times_a_second() -> None:
    from carbon_node.measure.power import NVML_UPDATE_INTERVAL_S, plan_power

    plan = plan_power(
        sim_cpu_tdp_w=None, sim_cpu_util=None, uses_cuda=True, nvml_probe=lambda: True, tdp_table=lambda: ("cpu", 100.0)
    )
    assert (plan.source, plan.gpu_source) == ("nvml", "nvml")
    assert plan.tracker_kwargs["update_interval"] == NVML_UPDATE_INTERVAL_S == 0.1
    cpu_only = plan_power(
        sim_cpu_tdp_w=None, sim_cpu_util=None, uses_cuda=False, nvml_probe=lambda: True, tdp_table=lambda: ("cpu", 100.0)
    )
    assert "update_interval" not in cpu_only.tracker_kwargs


def test_the_tdp_table_match_follows_carbontrackers_rule() -> None:
    from carbon_node.measure.power import _matched_entry

    table = {"Intel Xeon Gold 6230": 125.0, "AMD EPYC 7763": 280.0}
    assert _matched_entry("AMD EPYC 7763", table) == "AMD EPYC 7763"
    assert _matched_entry("Intel Xeon Gold 6230 @ 2.10GHz", table) == "Intel Xeon Gold 6230"
    assert _matched_entry("Intel(R) Xeon(R) Processor", table) is None


def test_a_cpu_missing_from_the_table_is_said_in_the_plan(tmp_path: Path) -> None:
    plan = plan_power(
        sim_cpu_tdp_w=None, sim_cpu_util=None, uses_cuda=False, powercap_root=tmp_path / "none",
        tdp_table=lambda: ("Mystery CPU", 70.0), tdp_match=lambda: None,
    )  # fmt: skip
    assert any("no entry for 'Mystery CPU'" in note and "35 W drawn" in note for note in plan.notes)
    matched = plan_power(
        sim_cpu_tdp_w=None, sim_cpu_util=None, uses_cuda=False, powercap_root=tmp_path / "none",
        tdp_table=lambda: ("Known CPU", 70.0), tdp_match=lambda: "Known CPU",
    )  # fmt: skip
    assert not any("no entry" in note for note in matched.notes)
