"""``extra_data.uncertainty``: the grid intensity's part per source, and the interval on every answer."""

from __future__ import annotations

import pytest

from carbon_node.engine.config import EngineConfig
from carbon_node.engine.engine import Engine
from carbon_node.engine.grid_uncertainty import intensity_kind, intensity_part, zone_spread
from carbon_node.engine.intensity import FixedIntensity, Intensity, TableRow
from carbon_node.measure.uncertainty import EnergyUncertainty, Part
from carbon_node.testing import FakeMeasurer, make_inputs, make_measurement

ROWS = tuple(
    TableRow(code, code, code, 2023, value)
    for code, value in (("FR", 50.0), ("DE", 400.0), ("PL", 700.0), ("ES", 150.0), ("NO", 30.0), ("US", 380.0), ("CN", 580.0))
)


def width(part: Part) -> float:
    return part.high / part.low


def test_the_grid_intensitys_width_per_source() -> None:
    cases = {
        "live": Intensity(200.0, "live:electricitymaps", "DE"),
        "country": Intensity(400.0, "offline_table", "DE", 2023),
        "country, large grid": Intensity(380.0, "offline_table", "US", 2023),
        "env": Intensity(300.0, "env"),
        "continent": Intensity(266.0, "continent_average", "Europe"),
        "world": Intensity(445.0, "world_average", "world", 2024),
        "configured (kind)": Intensity(300.0, "env", kind="configured"),
        "subnational (kind)": Intensity(120.0, "codecarbon", "US-CA", 2023, kind="subnational"),
        "cloud region (kind)": Intensity(120.0, "codecarbon", "gcp:europe-west1", 2023, kind="cloud_region"),
    }
    parts = {name: intensity_part(intensity, ROWS) for name, intensity in cases.items()}
    for name, part in parts.items():
        print(f"{name:22s} x{part.low:.3f} .. x{part.high:.3f}  (width {width(part):.2f})")
    assert (parts["live"].low, parts["live"].high) == (0.9, 1.1)
    assert parts["subnational (kind)"].high == pytest.approx(1.5)  # the hour only
    assert parts["cloud region (kind)"].high == parts["subnational (kind)"].high
    order = ("live", "subnational (kind)", "country", "country, large grid")
    assert [width(parts[name]) for name in order] == sorted(width(parts[name]) for name in order)
    assert width(parts["env"]) == width(parts["country"]) == width(parts["configured (kind)"])  # taken as a country's
    assert width(parts["world"]) > width(parts["country"])
    assert width(parts["continent"]) > width(parts["country"])


def test_the_kind_comes_from_the_intensity_when_it_has_one_else_from_its_source() -> None:
    assert intensity_kind(Intensity(1.0, "offline_table", "FR")) == "country"
    assert intensity_kind(Intensity(1.0, "continent_average", "Europe")) == "continent"
    assert intensity_kind(Intensity(1.0, "live:x", "DK")) == "live"
    assert intensity_kind(Intensity(1.0, "codecarbon", "US-CA", kind="subnational")) == "subnational"
    assert intensity_kind(Intensity(1.0, "env")) == "configured"


def test_a_zones_spread_is_its_2_5_to_97_5_percentiles_over_the_mean() -> None:
    low, high = zone_spread([row.g_per_kwh for row in ROWS])
    mean = sum(row.g_per_kwh for row in ROWS) / len(ROWS)
    assert low < 30.0 / mean * 1.2 and high > 700.0 / mean * 0.9
    assert zone_spread([100.0]) == (0.2, 3.0)  # too few countries to tell: wide


def engine(measurement: object, grid: float = 0.0) -> Engine:
    return Engine(EngineConfig(grid_ci_g_per_kwh=grid, latency_unit="s"), FakeMeasurer(measurement))  # type: ignore[arg-type]


@pytest.mark.parametrize("per_inference", ["hw_latency", "measured"])
def test_every_tracker_answer_carries_an_interval_around_its_published_values(per_inference: str) -> None:
    parts = EnergyUncertainty(
        Part("power_source", 0.7, 1.3, "p"), Part("window_spread", 0.9, 1.1, "w"), Part("window_spread", 1, 1, "w")
    )
    measurement = make_measurement(uncertainty=parts)
    eng = Engine(EngineConfig(latency_unit="s", per_inference=per_inference), FakeMeasurer(measurement))  # type: ignore[arg-type]
    out = eng.handle(make_inputs(model="tiny-model", latency=0.01, power=5.0))
    u = out.extra_data["uncertainty"]
    assert u["level"] == "95%"
    assert u["energy_kwh"][0] <= out.energy_kwh <= u["energy_kwh"][1]
    assert u["carbon_g"][0] <= out.carbon_g <= u["carbon_g"][1]
    assert set(u["parts"]) == {"power_source", "window_spread", "grid_intensity"}
    spread = u["parts"]["window_spread"]["factor"]
    assert spread == ([0.9, 1.1] if per_inference == "measured" else [1, 1])
    assert u["carbon_g"][1] / out.carbon_g > u["energy_kwh"][1] / out.energy_kwh  # the grid intensity widens carbon


def test_a_measurement_without_parts_still_gets_its_power_sources_part() -> None:
    out = engine(make_measurement(power_source="rapl", cpu_power_source="rapl")).handle(make_inputs(model="m", latency=0.01))
    u = out.extra_data["uncertainty"]
    assert u["parts"]["power_source"]["factor"] == [0.75, 1.35]
    assert "not estimated" in u["parts"]["window_spread"]["why"]


def test_onnx_answers_carry_the_intensitys_part_and_say_the_hw_error_is_unknown() -> None:
    eng = Engine(EngineConfig(latency_unit="s"), FakeMeasurer(), intensity=FixedIntensity(250.0))
    out = eng.handle(make_inputs(model="m", model_path="/x/model.onnx", latency=0.5, power=20.0))
    u = out.extra_data["uncertainty"]
    assert out.extra_data["mode"] == "onnx_hw_only"
    assert u["energy_kwh"] == [out.energy_kwh, out.energy_kwh]
    assert u["carbon_g"][0] < out.carbon_g < u["carbon_g"][1]
    assert "unknown" in u["parts"]["hw_provider"]["why"] and u["parts"]["hw_provider"]["factor"] == [1.0, 1.0]
    assert out.extra_data["power_model"] is None
