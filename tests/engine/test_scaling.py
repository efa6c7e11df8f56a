"""Per-inference arithmetic, with hand-computed values (energy kWh, carbon gCO2e, intensity g/kWh)."""

from __future__ import annotations

import pytest

from carbon_node.engine.scaling import (
    carbon_intensity,
    hw_energy_kwh,
    hw_latency_energy_kwh,
    measured_energy_kwh,
    scale_measurement,
)

# A 2 s window used 0.002 kWh over 400 passes; grid at 300 g/kWh.
WINDOW = {"window_energy_kwh": 0.002, "window_s": 2.0, "forward_passes": 400, "power_w": 20.0, "grid_ci_g_per_kwh": 300.0}


@pytest.mark.parametrize(
    ("power_w", "latency_h", "energy_kwh"),
    [(10.0, 0.5, 0.005), (250.0, 1.0 / 3600.0, 250.0 / 3600.0 / 1000.0), (0.0, 2.0, 0.0), (7.0, 0.0, 0.0)],
)
def test_hw_energy_is_watts_times_hours_over_a_thousand(power_w: float, latency_h: float, energy_kwh: float) -> None:
    assert hw_energy_kwh(power_w, latency_h) == pytest.approx(energy_kwh, rel=1e-12)


@pytest.mark.parametrize(
    ("latency_s", "window_s", "expected"),
    [(0.5, 2.0, 0.0005), (4.0, 2.0, 0.004), (0.0, 2.0, None), (-1.0, 2.0, None), (1.0, 0.0, None)],
)
def test_hw_latency_scaling_multiplies_by_latency_over_window(latency_s: float, window_s: float, expected: float | None) -> None:
    result = hw_latency_energy_kwh(0.002, latency_s, window_s)
    assert result == (pytest.approx(expected, rel=1e-12) if expected is not None else None)


@pytest.mark.parametrize(("passes", "expected"), [(400, 5e-6), (1, 0.002), (0, None)])
def test_measured_scaling_divides_by_forward_passes(passes: int, expected: float | None) -> None:
    result = measured_energy_kwh(0.002, passes)
    assert result == (pytest.approx(expected, rel=1e-12) if expected is not None else None)


@pytest.mark.parametrize(("carbon_g", "energy_kwh", "expected"), [(1.5, 0.005, 300.0), (0.0, 0.0, 0.0), (3.0, 0.0, 0.0)])
def test_intensity_is_carbon_over_energy_and_zero_without_energy(carbon_g: float, energy_kwh: float, expected: float) -> None:
    assert carbon_intensity(carbon_g, energy_kwh) == pytest.approx(expected)


def test_hw_latency_method_carries_the_upstream_scaling_and_reports_both() -> None:
    scaled = scale_measurement(**WINDOW, latency_s=0.5, method="hw_latency")
    assert scaled.scaling == "hw_latency"
    assert scaled.energy_kwh == pytest.approx(0.0005, rel=1e-12)
    assert scaled.carbon_g == pytest.approx(0.15, rel=1e-12)
    assert scaled.carbon_intensity_g_per_kwh == pytest.approx(300.0)
    assert scaled.measured is not None and scaled.measured.energy_kwh == pytest.approx(5e-6, rel=1e-12)
    assert scaled.measured.carbon_g == pytest.approx(1.5e-3, rel=1e-12)
    assert not scaled.hw_fallback


def test_measured_method_carries_window_energy_per_pass() -> None:
    scaled = scale_measurement(**WINDOW, latency_s=0.5, method="measured")
    assert scaled.scaling == "measured"
    assert scaled.energy_kwh == pytest.approx(5e-6, rel=1e-12)
    assert scaled.carbon_g == pytest.approx(1.5e-3, rel=1e-12)
    assert scaled.hw_latency is not None and scaled.hw_latency.energy_kwh == pytest.approx(0.0005, rel=1e-12)


def test_zero_latency_leaves_the_window_unscaled_and_says_so() -> None:
    scaled = scale_measurement(**WINDOW, latency_s=0.0, method="hw_latency")
    assert scaled.scaling == "none"
    assert scaled.energy_kwh == pytest.approx(0.002)
    assert scaled.carbon_g == pytest.approx(0.6)
    assert scaled.note is not None and "HW latency is 0" in scaled.note


def test_zero_passes_with_the_measured_method_leaves_the_window_unscaled() -> None:
    scaled = scale_measurement(**{**WINDOW, "forward_passes": 0}, latency_s=0.5, method="measured")
    assert scaled.scaling == "none"
    assert scaled.energy_kwh == pytest.approx(0.002)


def test_the_hw_fallback_is_already_per_inference_and_not_scaled_again() -> None:
    # 20 W for 900 s = 0.005 kWh. Upstream would multiply by 900 / 2 again (F3).
    scaled = scale_measurement(**{**WINDOW, "window_energy_kwh": 0.0}, latency_s=900.0, method="hw_latency")
    assert scaled.hw_fallback
    assert scaled.scaling == "none"
    assert scaled.energy_kwh == pytest.approx(0.005, rel=1e-12)
    assert scaled.carbon_g == pytest.approx(1.5, rel=1e-12)
    assert scaled.measured is None
