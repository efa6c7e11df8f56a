"""The load-to-power model (Boavizta/Teads TDP curve, the process's share of the socket), pinned against
its published coefficients, and its inputs read from fixture ``/proc/cpuinfo`` files."""

from __future__ import annotations

from pathlib import Path

import pytest

from carbon_node.measure.load_power import (
    MODEL_NAME,
    SERVER_MEDIAN_TDP_W,
    SERVER_MEDIAN_THREADS,
    TEADS_LOADS,
    TEADS_TDP_RATIOS,
    LoadPowerModel,
    SocketFacts,
    occupied_cpus,
    socket_facts,
    tdp_ratio,
)
from carbon_node.measure.power import plan_power


def test_the_curve_is_boaviztas_teads_ratios_of_tdp_at_0_10_50_100_percent_load() -> None:
    # boaviztapi 2.4.1 (15878f0), CPUConsumptionProfileModel._TDP_RATIOS_WORKLOAD and _TDP_RATIOS
    assert [x * 100 for x in TEADS_LOADS] == [0, 10, 50, 100]
    assert TEADS_TDP_RATIOS == (0.12, 0.32, 0.75, 1.02)
    for load, ratio in zip(TEADS_LOADS, TEADS_TDP_RATIOS, strict=True):
        assert tdp_ratio(load) == pytest.approx(ratio)


@pytest.mark.parametrize(("load", "ratio"), [(0.05, 0.22), (0.3, 0.535), (0.75, 0.885), (-1.0, 0.12), (2.0, 1.02)])
def test_between_the_points_the_curve_is_linear_and_outside_it_is_clamped(load: float, ratio: float) -> None:
    assert tdp_ratio(load) == pytest.approx(ratio)


def test_the_server_medians_are_those_of_boaviztas_cpu_specs() -> None:
    # Median threads and TDP of the 307 Xeon and EPYC models of boaviztapi/data/crowdsourcing/cpu_specs.csv
    assert (SERVER_MEDIAN_THREADS, SERVER_MEDIAN_TDP_W) == (48, 200.0)


@pytest.mark.parametrize(
    ("busy", "threads", "cpus", "occupied"),
    [(0.9, 1, 2, 1.0), (1.02, 1, 2, 1.02), (1.9, 2, 2, 2.0), (3.5, 2, 2, 2.0), (0.0, 4, 64, 4.0), (0.2, 1, 1, 1.0)],
)
def test_a_process_occupies_its_threads_or_the_cpus_it_keeps_busy_within_the_host(
    busy: float, threads: int, cpus: int, occupied: float
) -> None:
    assert occupied_cpus(busy, threads, cpus) == pytest.approx(occupied)


def bare_metal(tdp_w: float = 128.0, siblings: int = 64, threads: int = 4, cpus: int = 64) -> LoadPowerModel:
    return LoadPowerModel.for_host(
        cpu_name="Fixture CPU",
        table_tdp_w=tdp_w,
        table_matched=True,
        threads=threads,
        facts=SocketFacts(siblings, False),
        cpus=cpus,
    )


def test_a_process_is_charged_the_curve_at_its_own_load_for_its_share_of_the_socket() -> None:
    model = bare_metal()
    # 4 threads fully busy on a 64-thread, 128 W package: 128 x 1.02 x 4/64
    assert model.power_w(cpu_s=4.0, window_s=1.0) == pytest.approx(128 * 1.02 * 4 / 64)
    # the same threads half busy: the curve at 50 %
    assert model.power_w(cpu_s=2.0, window_s=1.0) == pytest.approx(128 * 0.75 * 4 / 64)
    described = model.describe(4.0, 1.0)
    assert described["name"] == MODEL_NAME
    assert (described["tdp_source"], described["threads_source"], described["socket_threads"]) == (
        "carbontracker_table",
        "cpuinfo",
        64,
    )
    assert (described["occupied_cpus"], described["load"], described["socket_share"]) == (4.0, 1.0, 4 / 64)


def test_two_busy_threads_are_charged_twice_one_busy_thread() -> None:
    one, two = bare_metal(threads=1), bare_metal(threads=2)
    assert two.power_w(2.0, 1.0) / one.power_w(1.0, 1.0) == pytest.approx(2.0)


def test_under_a_hypervisor_the_package_is_a_server_median_one() -> None:
    vm = SocketFacts(siblings=2, hypervisor=True)  # cpuinfo describes the VM's 2 vCPUs, not the host's package
    matched = LoadPowerModel.for_host(
        cpu_name="AMD EPYC 7B13", table_tdp_w=240.0, table_matched=True, threads=1, facts=vm, cpus=2
    )
    assert (matched.tdp_w, matched.tdp_source, matched.socket_threads, matched.threads_source) == (
        240.0,
        "carbontracker_table",
        48,
        "server_median",
    )
    unknown = LoadPowerModel.for_host(cpu_name="Xeon", table_tdp_w=71.2, table_matched=False, threads=1, facts=vm, cpus=2)
    assert (unknown.tdp_w, unknown.tdp_source) == (200.0, "server_median")
    assert unknown.power_w(1.0, 1.0) == pytest.approx(200.0 * 1.02 / 48)


def test_an_unknown_cpu_on_bare_metal_keeps_carbontrackers_average() -> None:
    model = LoadPowerModel.for_host(
        cpu_name="Odd CPU", table_tdp_w=71.2, table_matched=False, threads=1, facts=SocketFacts(8, False), cpus=8
    )
    assert (model.tdp_w, model.tdp_source, model.socket_threads) == (71.2, "carbontracker_average", 8)


def test_cpuinfo_gives_the_siblings_and_the_hypervisor_flag(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Fixture\nsiblings\t: 16\nflags\t\t: fpu sse hypervisor avx\n\n"
        "processor\t: 1\nsiblings\t: 16\nflags\t\t: fpu sse hypervisor avx\n",
        encoding="utf-8",
    )
    assert socket_facts(cpuinfo) == SocketFacts(16, True)
    cpuinfo.write_text("processor\t: 0\nsiblings\t: 8\nflags\t\t: fpu sse\n", encoding="utf-8")
    assert socket_facts(cpuinfo) == SocketFacts(8, False)
    assert socket_facts(tmp_path / "absent") == SocketFacts(None, False)


def test_without_a_counter_the_plan_carries_the_load_model_unless_carbontrackers_figure_is_asked_for(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("siblings\t: 32\nflags\t\t: fpu\n", encoding="utf-8")
    common = {
        "sim_cpu_tdp_w": None,
        "sim_cpu_util": None,
        "uses_cuda": False,
        "powercap_root": tmp_path / "absent",
        "nvml_probe": lambda: False,
        "tdp_table": lambda: ("Fixture CPU", 100.0),
        "tdp_match": lambda: "Fixture CPU",
        "cpuinfo": cpuinfo,
        "cpus": lambda: 32,
    }
    plan = plan_power(**common, threads=2)
    assert plan.source == "tdp_table" and plan.load_model is not None
    assert (plan.load_model.tdp_w, plan.load_model.socket_threads, plan.load_model.threads) == (100.0, 32, 2)
    # carbontracker still runs the window on its TDP-table figure
    assert plan.tracker_kwargs == {"sim_cpu": "Fixture CPU", "sim_cpu_tdp": 100.0, "sim_cpu_util": 0.5}
    assert any("load_model" in note and "not a measurement" in note for note in plan.notes)
    upstream = plan_power(**common, cpu_power_model="carbontracker")
    assert upstream.load_model is None and upstream.tracker_kwargs == plan.tracker_kwargs


def test_counters_and_simulated_power_never_use_the_load_model(tmp_path: Path) -> None:
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "name").write_text("package-0\n", encoding="ascii")
    (zone / "energy_uj").write_text("1234\n", encoding="ascii")
    rapl = plan_power(sim_cpu_tdp_w=None, sim_cpu_util=None, uses_cuda=False, powercap_root=tmp_path, nvml_probe=lambda: False)
    simulated = plan_power(sim_cpu_tdp_w=20.0, sim_cpu_util=None, uses_cuda=False, powercap_root=tmp_path)
    assert (rapl.source, rapl.load_model) == ("rapl", None)
    assert (simulated.source, simulated.load_model) == ("simulated", None)
