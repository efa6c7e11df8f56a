"""One carbontracker window, run for real in this process with simulated power."""

from __future__ import annotations

import logging
from pathlib import Path

import geocoder
import pytest

from carbon_node.measure.power import plan_power
from carbon_node.measure.tracker import PUE, run_window

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
