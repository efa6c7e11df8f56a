"""A task's free-text place, over a real loopback Cyclone domain: answered with the place's own grid zone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from carbon_node.bus.orchestrator import Orchestrator
from carbon_node.bus.runtime import NodeRuntime
from carbon_node.core import TaskId
from carbon_node.engine.config import EngineConfig
from carbon_node.engine.engine import Engine
from carbon_node.engine.grid_zones import LB_PER_MWH_TO_G_PER_KWH, data_text
from carbon_node.testing import FakeMeasurer
from carbon_node.wire import HWResourceImpl, MLModelImpl, UserInputImpl

WAIT_S = 20.0  # discovery and one task on a loaded 2-core machine


@pytest.fixture
def node(dds_domain: int) -> Iterator[NodeRuntime]:
    runtime = NodeRuntime(Engine(EngineConfig(latency_unit="s"), FakeMeasurer()), domain_id=dds_domain)
    runtime.start(WAIT_S)
    yield runtime
    runtime.stop(WAIT_S)


def onnx_task(orchestrator: Orchestrator, problem_id: int, region: str, continent: str, onnx: Path) -> dict[str, object]:
    task_id = TaskId(problem_id, 1)
    orchestrator.publish_task(
        task_id,
        MLModelImpl(model="tiny", model_path=str(onnx)),
        HWResourceImpl(latency=0.5, power_consumption=20.0),
        UserInputImpl(geo_location_region=region, geo_location_continent=continent),
    )
    output = orchestrator.wait_output(task_id, WAIT_S)
    extra: dict[str, object] = json.loads(bytes(output.extra_data).decode("utf-8"))
    extra["published_intensity"] = output.carbon_intensity
    return extra


def test_a_task_for_california_is_answered_with_the_us_ca_figure_over_dds(
    dds_domain: int, node: NodeRuntime, tmp_path: Path
) -> None:
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"not read")
    california = json.loads(data_text("usa_emissions.json"))["california"]["emissions"] * LB_PER_MWH_TO_G_PER_KWH
    with Orchestrator(dds_domain) as orchestrator:
        extra = onnx_task(orchestrator, 61, "California", "North America", onnx)
        unknown = onnx_task(orchestrator, 62, "Xyzzy", "", onnx)
    assert extra["mode"] == "onnx_hw_only"
    assert (extra["grid_ci_zone"], extra["grid_ci_zone_kind"], extra["grid_ci_source"]) == ("US-CA", "subnational", "codecarbon")
    assert extra["grid_ci_g_per_kwh"] == pytest.approx(california)
    assert extra["published_intensity"] == pytest.approx(california)
    assert extra["grid_ci_match"] == {"text": "California", "matched": "California (US-CA)", "how": "exact"}
    assert "eGRID" in str(extra["grid_ci_dataset"]) and extra["grid_ci_year"] == 2023
    assert unknown["grid_ci_source"] == "world_average"
    assert any("Xyzzy" in str(w) for w in unknown["warnings"])  # type: ignore[attr-defined]
