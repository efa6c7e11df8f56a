"""One carbontracker window, run for real in this process with simulated power."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import geocoder
import pytest

from carbon_node.measure.power import PowerPlan, plan_power
from carbon_node.measure.tracker import PUE, choose_figure, run_window
from tests.measure.rapl_fixture import CounterWriter, make_package

SIM_POWER_W = 20.0
WINDOW_S = 0.3


def simulated() -> object:
    return plan_power(sim_cpu_tdp_w=SIM_POWER_W, sim_cpu_util=None, uses_cuda=False)


class CountingForward:
    """A cheap forward pass that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        sum(range(200))


def test_window_energy_is_simulated_power_times_window_times_pue(tmp_path: Path) -> None:
    result = run_window(CountingForward(), window_s=WINDOW_S, scratch_dir=tmp_path, plan=simulated())
    expected_kwh = SIM_POWER_W * result.window_s * PUE / 3.6e6
    assert result.energy_kwh == pytest.approx(expected_kwh, rel=0.02)
    assert result.pue == 1.58


def test_every_forward_pass_in_the_window_is_counted_and_the_warm_up_pass_is_not(tmp_path: Path) -> None:
    forward = CountingForward()
    result = run_window(forward, window_s=WINDOW_S, scratch_dir=tmp_path, plan=simulated())
    assert result.forward_passes == forward.calls - 1 > 0
    assert result.window_s >= WINDOW_S


def test_without_warm_up_every_call_is_in_the_window(tmp_path: Path) -> None:
    forward = CountingForward()
    result = run_window(forward, window_s=WINDOW_S, scratch_dir=tmp_path, plan=simulated(), warmup_passes=0)
    assert result.forward_passes == forward.calls > 0


def test_the_window_reports_components_and_carbontracker_version(tmp_path: Path) -> None:
    result = run_window(CountingForward(), window_s=WINDOW_S, scratch_dir=tmp_path, plan=simulated())
    assert result.components == ("cpu",)
    assert result.carbontracker_version == "2.4.7"


def test_the_private_log_directory_is_removed_afterwards(tmp_path: Path) -> None:
    run_window(CountingForward(), window_s=WINDOW_S, scratch_dir=tmp_path, plan=simulated())
    assert list(tmp_path.iterdir()) == []


def test_carbontracker_loggers_of_the_window_are_closed_and_forgotten(tmp_path: Path) -> None:
    before = set(logging.Logger.manager.loggerDict)
    run_window(CountingForward(), window_s=WINDOW_S, scratch_dir=tmp_path, plan=simulated())
    assert set(logging.Logger.manager.loggerDict) - before == set()


def test_carbontracker_console_chatter_is_captured_not_printed(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    result = run_window(CountingForward(), window_s=WINDOW_S, scratch_dir=tmp_path, plan=simulated())
    printed = capfd.readouterr()
    assert "Using simulated CPU" in result.console
    assert "CarbonTracker" not in printed.out + printed.err


def test_carbontracker_does_not_geolocate_by_ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(geocoder, "ip", lambda address, **_: calls.append(address))
    run_window(CountingForward(), window_s=WINDOW_S, scratch_dir=tmp_path, plan=simulated())
    assert calls == []


def test_a_non_positive_window_is_refused(tmp_path: Path) -> None:
    from carbon_node.measure.protocol import MeasureError

    with pytest.raises(MeasureError, match="window_s must be positive"):
        run_window(CountingForward(), window_s=0.0, scratch_dir=tmp_path, plan=simulated())


def test_a_scratch_path_that_looks_like_a_carbontracker_log_name_still_parses(tmp_path: Path) -> None:
    scratch = tmp_path / "state_carbontracker_logs"  # carbontracker's own parse_all_logs trips on this
    result = run_window(CountingForward(), window_s=WINDOW_S, scratch_dir=scratch, plan=simulated())
    assert result.energy_kwh > 0


# -- no silent zero: the RAPL counters cross-check carbontracker -----------------------------------------------

COUNTER_W = 25.0
COUNTER_REL = 0.1
"""The writer thread shares the GIL with the window's passes: on a busy machine its last write can be tens
of milliseconds old at a window edge. Exact figures are the end-to-end test's job (a writer process)."""


def rapl_plan(carbontracker_cpu_w: float) -> PowerPlan:
    """A RAPL window whose carbontracker CPU figure is ``carbontracker_cpu_w`` (its simulated handler): the
    counters are a fixture tree, carbontracker's RAPL handler reads only the real /sys/class/powercap."""
    kwargs = {"sim_cpu": "fixture CPU", "sim_cpu_tdp": carbontracker_cpu_w, "sim_cpu_util": 1.0}
    return PowerPlan("rapl", "rapl", None, kwargs)


@pytest.fixture
def package(tmp_path: Path) -> Iterator[tuple[Path, CounterWriter]]:
    """A fixture powercap root with one package advancing at 25 W, wrapping every 0.4 s."""
    root = tmp_path / "powercap"
    zone = make_package(root, max_energy_range_uj=10_000_000)
    writer = CounterWriter(zone, COUNTER_W, 10_000_000, start_uj=9_000_000)
    writer.start()
    yield root, writer
    writer.stop()


def counter_kwh(window_s: float) -> float:
    return COUNTER_W * window_s * PUE / 3.6e6


def test_figures_that_agree_publish_carbontrackers(tmp_path: Path, package: tuple[Path, CounterWriter]) -> None:
    root, _ = package
    result = run_window(CountingForward(), window_s=0.5, scratch_dir=tmp_path / "s", plan=rapl_plan(24.0), powercap_root=root)
    assert result.energy_figure == "carbontracker"
    assert result.energy_kwh == result.carbontracker_energy_kwh == pytest.approx(24.0 * result.window_s * PUE / 3.6e6, rel=0.05)
    assert result.counter_energy_kwh == pytest.approx(counter_kwh(result.window_s), rel=COUNTER_REL)


def test_a_zero_carbontracker_figure_is_replaced_by_the_wrap_corrected_counters(
    tmp_path: Path, package: tuple[Path, CounterWriter]
) -> None:
    root, writer = package
    result = run_window(CountingForward(), window_s=1.0, scratch_dir=tmp_path / "s", plan=rapl_plan(0.0), powercap_root=root)
    assert writer.wraps >= 2  # the counter wrapped inside the window
    assert result.energy_figure == "rapl_counter"
    assert result.carbontracker_energy_kwh == 0.0
    assert result.energy_kwh == result.counter_energy_kwh == pytest.approx(counter_kwh(result.window_s), rel=COUNTER_REL)
    assert any("is zero" in note and "counter figure is published" in note for note in result.notes)


def test_a_carbontracker_figure_far_from_the_counters_is_replaced(tmp_path: Path, package: tuple[Path, CounterWriter]) -> None:
    root, _ = package
    result = run_window(CountingForward(), window_s=0.5, scratch_dir=tmp_path / "s", plan=rapl_plan(100.0), powercap_root=root)
    assert result.energy_figure == "rapl_counter"
    assert result.energy_kwh == pytest.approx(counter_kwh(result.window_s), rel=COUNTER_REL)
    assert any("+300% off" in note or "off the RAPL counters" in note for note in result.notes)


def test_counters_that_become_unreadable_leave_carbontrackers_figure_with_a_statement(
    tmp_path: Path, package: tuple[Path, CounterWriter]
) -> None:
    root, writer = package

    class VanishingCounter(CountingForward):
        def __call__(self) -> None:
            super().__call__()
            if self.calls == 5:
                writer.stop()
                (root / "intel-rapl:0" / "energy_uj").unlink()

    result = run_window(VanishingCounter(), window_s=0.5, scratch_dir=tmp_path / "s", plan=rapl_plan(20.0), powercap_root=root)
    assert (result.energy_figure, result.counter_energy_kwh) == ("carbontracker", None)
    assert result.energy_kwh > 0
    assert any("RAPL counters not read" in note and "energy_uj does not exist" in note for note in result.notes)


def test_zero_energy_from_a_present_power_source_is_measured_again_then_an_error(tmp_path: Path) -> None:
    from carbon_node.measure.protocol import MeasureError

    forward = CountingForward()
    zero_watts = plan_power(sim_cpu_tdp_w=SIM_POWER_W, sim_cpu_util=0.0, uses_cuda=False)
    with pytest.raises(MeasureError, match="no trustworthy energy figure in two windows with power source simulated"):
        run_window(forward, window_s=WINDOW_S, scratch_dir=tmp_path, plan=zero_watts)
    assert forward.calls >= 4  # two windows, each with its warm-up pass


@pytest.mark.parametrize(
    ("carbontracker", "cpu", "counter", "expected"),
    [
        (1.0, None, 1.2, (1.0, "carbontracker")),  # 17 % apart: within 25 %
        (1.0, None, 1.5, (1.5, "rapl_counter")),  # 33 % apart: far
        (0.0, None, 1.0, (1.0, "rapl_counter")),  # carbontracker's silent zero
        (3.0, 1.0, 2.0, (4.0, "rapl_counter")),  # GPU share (2) kept, CPU share replaced
        (3.0, 1.0, 1.1, (3.0, "carbontracker")),
        (1.0, None, None, (1.0, "carbontracker")),  # counters not read: unchecked
        (1.0, None, 0.0, (1.0, "carbontracker")),  # counters did not advance: unchecked
        (0.0, None, None, None),  # nothing trustworthy
        (0.0, None, 0.0, None),
    ],
)
def test_choose_figure(
    carbontracker: float, cpu: float | None, counter: float | None, expected: tuple[float, str] | None
) -> None:
    figure = choose_figure(carbontracker, cpu, counter, "a reason" if counter is None else "")
    assert (None if figure is None else (figure.energy_kwh, figure.energy_figure)) == (
        None if expected is None else pytest.approx(expected)
    )


def test_a_tdp_table_window_does_not_run_cpuinfo_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """carbontracker's GenericCPU runs cpuinfo (a fresh interpreter, ~1.3 s) per tracker: the TDP-table
    figure is looked up once per process and handed over, so a window pays none of it."""
    import cpuinfo

    from carbon_node.measure.power import tdp_table_watts

    name, _ = tdp_table_watts()
    plan = plan_power(
        sim_cpu_tdp_w=None, sim_cpu_util=None, uses_cuda=False, powercap_root=tmp_path / "absent", nvml_probe=lambda: False
    )
    calls: list[int] = []
    monkeypatch.setattr(cpuinfo, "get_cpu_info", lambda: calls.append(1) or {})
    result = run_window(CountingForward(), window_s=WINDOW_S, scratch_dir=tmp_path / "s", plan=plan)
    assert calls == []
    assert plan.source == "tdp_table" and result.devices["cpu"] == [name] and result.energy_kwh > 0
    assert result.measure_s - result.window_s < 1.0  # was 1.4-2.6 s here with GenericCPU


def test_without_a_counter_the_load_model_gives_the_cpu_share_and_carbontrackers_figure_is_kept(tmp_path: Path) -> None:
    from carbon_node.measure.load_power import LoadPowerModel, SocketFacts

    model = LoadPowerModel.for_host(
        cpu_name="fixture CPU", table_tdp_w=64.0, table_matched=True, threads=1, facts=SocketFacts(8, False), cpus=8
    )
    # carbontracker draws 20 W through sim_cpu (as it draws its TDP-table figure); the load model replaces it
    plan = PowerPlan(
        "tdp_table",
        "tdp_table",
        None,
        {"sim_cpu": "fixture CPU", "sim_cpu_tdp": 20.0, "sim_cpu_util": 1.0},
        load_model=model,
    )
    result = run_window(CountingForward(), window_s=WINDOW_S, scratch_dir=tmp_path, plan=plan)
    assert result.energy_figure == "load_model"
    assert result.carbontracker_energy_kwh == pytest.approx(20.0 * result.window_s * PUE / 3.6e6, rel=0.02)
    assert result.power_model is not None and result.power_model["name"] == "boavizta_teads_tdp_curve"
    power_w = result.power_model["cpu_power_w"]
    assert power_w == pytest.approx(model.power_w(result.cpu_s, result.window_s))
    assert result.energy_kwh == pytest.approx(power_w * result.window_s * PUE / 3.6e6, rel=1e-6)
    # one busy thread (this loop) of 8 on a 64 W package
    assert 0.1 < result.cpu_s / result.window_s <= 1.2 and power_w <= 64.0 * 1.02 * 1.2 / 8


def test_the_window_is_cut_into_sub_windows_that_hold_every_pass(tmp_path: Path) -> None:
    result = run_window(CountingForward(), window_s=WINDOW_S, scratch_dir=tmp_path, plan=simulated())
    assert 2 <= len(result.sub_windows) <= 5
    assert sum(sub.passes for sub in result.sub_windows) == result.forward_passes
    assert sum(sub.duration_s for sub in result.sub_windows) == pytest.approx(result.window_s, rel=0.01)
    assert result.energy_figure == "carbontracker" and result.power_model is None
