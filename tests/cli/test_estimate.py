"""The estimate command body on the paths that need no measurement worker."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

from carbon_node.cli.estimate import format_output, run_estimate
from carbon_node.engine import Engine
from carbon_node.engine.config import EngineConfig
from carbon_node.service.settings import Settings
from carbon_node.testing import FakeMeasurer, make_inputs, make_measurement


def test_an_onnx_estimate_prints_one_json_object_with_the_three_doubles(tmp_path: Path) -> None:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    out = io.StringIO()
    status = run_estimate(Settings(grid_ci_g_per_kwh=200.0), "unet", 0.5, 10.0, "", str(onnx), True, out, io.StringIO())
    result = json.loads(out.getvalue())
    assert status == 0
    assert result["energy_consumption"] == 0.005
    assert result["carbon_footprint"] == 1.0
    assert result["carbon_intensity"] == 200.0
    assert result["extra_data"]["mode"] == "onnx_hw_only"


def test_a_no_model_estimate_exits_0_with_upstreams_message() -> None:
    out = io.StringIO()
    status = run_estimate(Settings(), "NO_MODEL", 0.0, 0.0, "", "", False, out, io.StringIO())
    assert status == 0
    assert "No model selected (NO_MODEL)" in out.getvalue()


def test_an_onnx_estimate_needs_no_file_on_this_host(tmp_path: Path) -> None:
    out = io.StringIO()
    settings = Settings(grid_ci_g_per_kwh=200.0)
    status = run_estimate(settings, "unet", 0.5, 10.0, "", str(tmp_path / "gone.onnx"), True, out, io.StringIO())
    result = json.loads(out.getvalue())
    assert status == 0
    assert result["carbon_footprint"] == 1.0
    assert result["extra_data"]["onnx_file_present"] is False


def test_the_table_shows_value_unit_and_source_of_each_double() -> None:
    engine = Engine(EngineConfig(latency_unit="s"), FakeMeasurer(make_measurement(energy_kwh=0.002, window_s=2.0)))
    text = format_output(engine.handle(make_inputs(latency=0.5, region="France")), as_json=False)
    lines = {line.split("  ")[0]: line for line in text.splitlines()}
    assert "gCO2e " in lines["carbon footprint"] and "per inference: window energy x HW latency" in lines["carbon footprint"]
    assert "kWh" in lines["energy consumption"] and "power: simulated cpu" in lines["energy consumption"]
    assert "offline_table FR 2024" in lines["carbon intensity"]
    assert "0.0005" in lines["energy consumption"]


def test_the_table_shows_the_interval_and_the_load_models_window_power() -> None:
    model = {"name": "boavizta_teads_tdp_curve", "cpu_power_w": 4.2, "tdp_w": 200.0, "tdp_source": "server_median"}
    model |= {"load": 1.0, "occupied_cpus": 1.0, "socket_threads": 48, "threads_source": "server_median"}
    measurement = make_measurement(
        energy_kwh=0.002, window_s=2.0, power_source="tdp_table", cpu_power_source="tdp_table", energy_figure="load_model"
    )
    engine = Engine(EngineConfig(latency_unit="s"), FakeMeasurer(replace(measurement, power_model=model)))
    output = engine.handle(make_inputs(latency=0.5, region="France"))
    lines = {line.split("  ")[0]: line for line in format_output(output, as_json=False).splitlines()}
    low, high = output.extra_data["uncertainty"]["carbon_g"]
    assert f"{low:.6g} to {high:.6g}" in lines["carbon 95%"]
    assert "4.2" in lines["window CPU power"] and "boavizta_teads_tdp_curve" in lines["window CPU power"]
