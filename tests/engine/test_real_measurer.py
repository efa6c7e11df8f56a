"""The engine with the real measurement worker, real carbontracker and tiny local models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carbon_node.engine import Engine
from carbon_node.engine.config import EngineConfig
from carbon_node.testing import make_inputs

tiny = pytest.importorskip("carbon_node.measure.tiny")
client = pytest.importorskip("carbon_node.measure.client")

WINDOW_S = 0.3
WORKER_READY_TIMEOUT_S = 120.0
"""Generous: the worker imports torch and transformers on a machine shared with other test runs."""


@pytest.fixture(scope="module")
def text_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tiny.build_tiny_text_model(tmp_path_factory.mktemp("tiny") / "text").resolve())


@pytest.fixture(scope="module")
def measurer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")  # the worker inherits it at spawn
        worker = client.WorkerMeasurer(scratch_dir=tmp_path_factory.mktemp("scratch"), measure_cache_ttl_s=0, task_timeout_s=60.0)
        worker.start()
    with worker:
        assert worker.wait_ready(WORKER_READY_TIMEOUT_S), "the measurement worker did not start"
        yield worker


def settings(**values: Any) -> EngineConfig:
    return EngineConfig(window_s=WINDOW_S, device="cpu", latency_unit="s", **values)


def test_simulated_power_gives_watts_times_window_times_pue(measurer: Any, text_model: str) -> None:
    # 100 W TDP at 50 % = 50 W; latency 0.01 s per inference; Spain's grid.
    eng = Engine(settings(sim_cpu_tdp_w=100.0, sim_cpu_util=0.5), measurer)
    out = eng.handle(make_inputs(model=text_model, latency=0.01, power=5.0, region="Spain"))
    data = out.extra_data
    assert data["mode"] == "tracker", data.get("error")
    assert data["power_source"] == "simulated"
    assert data["power_sources"] == {"cpu": "simulated", "gpu": None}
    window_kwh = 50.0 * data["window_s"] * data["pue"] / 3.6e6
    # hw_latency scaling: window energy x 0.01 s / window_s; carbontracker samples, hence 5 %.
    assert out.energy_kwh == pytest.approx(window_kwh * 0.01 / data["window_s"], rel=0.05)
    assert data["forward_passes"] > 0
    assert data["measured_per_inference"]["energy_kwh"] == pytest.approx(window_kwh / data["forward_passes"], rel=0.05)
    assert out.grid_ci_g_per_kwh == pytest.approx(146.15356)
    assert out.carbon_g == pytest.approx(out.energy_kwh * 146.15356, rel=1e-9)
    assert data["model_class"] == "BertModel"
    assert out.timings["measure_s"] > 0


def test_without_counters_the_cpu_tdp_table_is_the_power_source(measurer: Any, text_model: str) -> None:
    out = Engine(settings(per_inference="measured"), measurer).handle(make_inputs(model=text_model, latency=0.01))
    data = out.extra_data
    assert data["mode"] == "tracker", data.get("error")
    if data["power_source"] == "rapl":
        pytest.skip("this machine has readable RAPL counters")
    assert data["power_source"] == "tdp_table"
    assert data["power_sources"] == {"cpu": "tdp_table", "gpu": None}
    assert out.energy_kwh > 0
    assert out.energy_kwh == pytest.approx(data["measured_per_inference"]["energy_kwh"])
    assert data["scaling"] == "measured"


def test_an_unknown_model_is_an_error_output_that_says_so(measurer: Any) -> None:
    out = Engine(settings(), measurer).handle(make_inputs(model="acme/no-such-model"))
    assert out.mode == "error"
    assert out.extra_data["error"].startswith("Failed to obtain carbon footprint information: ")
    assert "acme/no-such-model" in out.extra_data["error"]


def test_an_unsupported_model_class_is_rejected_with_its_name(measurer: Any, text_model: str) -> None:
    out = Engine(settings(), measurer).handle(make_inputs(model=text_model, ml_extra={"unsupported_models": ["bert"]}))
    assert out.mode == "error"
    assert "'bert'" in out.extra_data["error"] and "BertModel" in out.extra_data["error"]
    assert out.extra_data["error_kind"] == "ModelRejected"


def test_a_real_onnx_file_takes_the_hw_only_path(measurer: Any, tmp_path: Path) -> None:
    onnx_path = tiny.build_tiny_onnx(tmp_path / "tiny.onnx")
    out = Engine(settings(grid_ci_g_per_kwh=400.0), measurer).handle(
        make_inputs(model="tiny", model_path=str(onnx_path), latency=3600.0, power=2.0)
    )
    # 2 W for one hour = 0.002 kWh; x 400 g/kWh = 0.8 g.
    assert out.mode == "onnx_hw_only"
    assert out.energy_kwh == pytest.approx(0.002)
    assert out.carbon_g == pytest.approx(0.8)
