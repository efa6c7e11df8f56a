"""The engine end to end with a fake measurer: paths, arithmetic, extra_data, errors, lanes."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest

from carbon_node.core import Lane, TaskId, TaskInputs, TaskOutput
from carbon_node.engine import Engine
from carbon_node.engine.config import EngineConfig
from carbon_node.engine.intensity import FixedIntensity, Intensity, world_average
from carbon_node.measure.protocol import MeasureTimeout, ModelRejected, WorkerCrashed
from carbon_node.testing import FakeIntensitySource, FakeMeasurer, make_inputs, make_measurement

FAILED = "Failed to obtain carbon footprint information: "

PROVENANCE_KEYS = {
    "grid_ci_source",
    "grid_ci_g_per_kwh",
    "power_source",
    "power_sources",
    "components",
    "window_s",
    "forward_passes",
    "measured_per_inference",
    "hw_latency_per_inference",
    "scaling",
    "latency_unit",
    "latency_s",
    "pue",
    "cached",
    "measured_at",
    "carbontracker_version",
    "energy_figure",
    "carbontracker_energy_kwh",
    "counter_energy_kwh",
    "torch_threads",
    "model_class",
    "device",
    "dtype",
    "model_identity",
    "units",
}


def engine(measurer: FakeMeasurer | None = None, intensity: Any = None, **settings: Any) -> Engine:
    return Engine(EngineConfig(**settings), measurer or FakeMeasurer(), intensity=intensity)


def published(output: TaskOutput) -> dict[str, Any]:
    """The extra_data as the orchestrator decodes it from the wire bytes."""
    data: dict[str, Any] = json.loads(output.extra_data_bytes().decode("utf-8"))
    return data


@pytest.fixture
def onnx_file(tmp_path: Path) -> str:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not read by the engine")
    return str(path)


# no_model


@pytest.mark.parametrize("model", ["NO_MODEL", "no_model"])
def test_no_model_gives_zeros_and_upstreams_message_without_measuring(model: str) -> None:
    measurer = FakeMeasurer()
    output = engine(measurer).handle(make_inputs(model=model, latency=1.0, power=5.0))
    assert (output.carbon_g, output.energy_kwh, output.grid_ci_g_per_kwh) == (0.0, 0.0, 0.0)
    data = published(output)
    assert data["mode"] == "no_model"
    assert data["error"] == "No model selected (NO_MODEL). Carbon footprint not computed."
    assert data["num_outputs"] == 1 and data["model_restrains"] == [model]
    assert measurer.call_count == 0


def test_no_model_ignores_unusable_hw_numbers() -> None:
    output = engine().handle(make_inputs(model="NO_MODEL", latency=math.nan))
    assert output.mode == "no_model"


# onnx_hw_only


@pytest.mark.parametrize(
    ("unit", "latency"),
    [("h", 0.5), ("s", 1800.0), ("ms", 1_800_000.0)],
)
def test_onnx_energy_is_hw_power_times_latency_in_any_unit(onnx_file: str, unit: str, latency: float) -> None:
    # 10 W for half an hour = 0.005 kWh; at 200 g/kWh that is 1 g.
    measurer = FakeMeasurer()
    out = engine(measurer, grid_ci_g_per_kwh=200.0, latency_unit=unit).handle(
        make_inputs(model="unet", model_path=onnx_file, latency=latency, power=10.0)
    )
    assert out.energy_kwh == pytest.approx(0.005, rel=1e-12)
    assert out.carbon_g == pytest.approx(1.0, rel=1e-12)
    assert out.grid_ci_g_per_kwh == 200.0
    data = published(out)
    assert data["mode"] == "onnx_hw_only"
    assert data["grid_ci_source"] == "env"
    assert data["power_source"] == "hw_provider"
    assert data["scaling"] == "none"
    assert data["latency_unit"] == unit
    assert data["latency_s"] == pytest.approx(1800.0)
    assert data["hw_latency_per_inference"] == {"energy_kwh": pytest.approx(0.005), "carbon_g": pytest.approx(1.0)}
    assert measurer.call_count == 0


def test_onnx_publishes_the_grid_intensity_even_with_zero_power(onnx_file: str) -> None:
    out = engine(grid_ci_g_per_kwh=200.0).handle(make_inputs(model_path=onnx_file, latency=1.0, power=0.0))
    assert (out.energy_kwh, out.carbon_g, out.grid_ci_g_per_kwh) == (0.0, 0.0, 200.0)


def test_onnx_uses_the_users_region_when_no_intensity_is_configured(onnx_file: str) -> None:
    out = engine().handle(make_inputs(model_path=onnx_file, latency=1.0, power=1000.0, region="Spain"))
    assert out.grid_ci_g_per_kwh == 146.15356
    assert out.carbon_g == pytest.approx(146.15356, rel=1e-12)  # 1 kWh
    assert published(out)["grid_ci_source"] == "offline_table"
    assert published(out)["grid_ci_zone"] == "ES"


@pytest.mark.parametrize("name", ["absent.onnx", "standin_model.onnx", "models/export/unet.onnx"])
def test_an_onnx_path_absent_on_this_host_is_answered_like_upstream(tmp_path: Path, name: str) -> None:
    # Upstream never opens the file: the model provider's export path is usually on another host.
    measurer = FakeMeasurer()
    for model_path in (str(tmp_path / name), name):  # absolute and relative (to the node's cwd)
        out = engine(measurer, grid_ci_g_per_kwh=200.0, latency_unit="s").handle(
            make_inputs(model_path=model_path, latency=3600.0, power=10.0)
        )
        assert out.mode == "onnx_hw_only"
        assert out.energy_kwh == pytest.approx(0.01, rel=1e-12)
        assert out.carbon_g == pytest.approx(2.0, rel=1e-12)
        assert published(out)["onnx_file_present"] is False
        assert "error" not in published(out)
    assert measurer.call_count == 0


def test_an_existing_onnx_file_is_reported_present(onnx_file: str) -> None:
    out = engine(grid_ci_g_per_kwh=200.0).handle(make_inputs(model_path=onnx_file, latency=1.0, power=10.0))
    assert out.mode == "onnx_hw_only"
    assert published(out)["onnx_file_present"] is True


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0])
def test_an_absent_onnx_file_with_unusable_hw_numbers_is_still_an_error(bad: float) -> None:
    for kwargs in ({"latency": bad, "power": 1.0}, {"latency": 1.0, "power": bad}):
        out = engine().handle(make_inputs(model_path="absent.onnx", **kwargs))
        assert out.mode == "error"
        assert (out.carbon_g, out.energy_kwh, out.grid_ci_g_per_kwh) == (0.0, 0.0, 0.0)


# tracker


def test_the_tracker_path_scales_by_hw_latency_by_default() -> None:
    # 0.002 kWh over a 2 s window of 400 passes; 0.5 s per inference on the target HW; 300 g/kWh.
    measurer = FakeMeasurer(make_measurement(energy_kwh=0.002, window_s=2.0, forward_passes=400))
    out = engine(measurer, grid_ci_g_per_kwh=300.0, latency_unit="s").handle(make_inputs(latency=0.5, power=20.0))
    assert out.energy_kwh == pytest.approx(0.0005, rel=1e-12)
    assert out.carbon_g == pytest.approx(0.15, rel=1e-12)
    assert out.grid_ci_g_per_kwh == pytest.approx(300.0)
    data = published(out)
    assert data["mode"] == "tracker"
    assert data["scaling"] == "hw_latency"
    assert data["measured_per_inference"] == {"energy_kwh": pytest.approx(5e-6), "carbon_g": pytest.approx(1.5e-3)}
    assert data["hw_latency_per_inference"] == {"energy_kwh": pytest.approx(0.0005), "carbon_g": pytest.approx(0.15)}
    assert data["window_s"] == 2.0 and data["forward_passes"] == 400


def test_a_hw_power_on_a_measured_task_is_said_to_be_unused() -> None:
    measurer = FakeMeasurer(make_measurement(energy_kwh=0.002, window_s=2.0, forward_passes=400))
    data = published(engine(measurer, latency_unit="s").handle(make_inputs(latency=0.5, power=30.0)))
    assert data["power_w"] == 30.0
    assert any("power_consumption (30 W) is not used" in note for note in data["measurement_notes"])
    quiet = published(engine(measurer, latency_unit="s").handle(make_inputs(latency=0.5, power=0.0)))
    assert not any("power_consumption" in note for note in quiet.get("measurement_notes", []))


def test_upstreams_hours_latency_gives_upstreams_factor() -> None:
    # latency 1/3600 h = 1 s; factor latency * 3600 / window = 1 / 2.
    measurer = FakeMeasurer(make_measurement(energy_kwh=0.002, window_s=2.0))
    out = engine(measurer, grid_ci_g_per_kwh=100.0).handle(make_inputs(latency=1.0 / 3600.0, power=20.0))
    assert out.energy_kwh == pytest.approx(0.001, rel=1e-12)
    assert out.carbon_g == pytest.approx(0.1, rel=1e-12)


def test_the_measured_setting_makes_the_doubles_carry_energy_per_pass() -> None:
    measurer = FakeMeasurer(make_measurement(energy_kwh=0.002, window_s=2.0, forward_passes=400))
    out = engine(measurer, grid_ci_g_per_kwh=300.0, latency_unit="s", per_inference="measured").handle(
        make_inputs(latency=0.5, power=20.0)
    )
    assert out.energy_kwh == pytest.approx(5e-6, rel=1e-12)
    assert out.carbon_g == pytest.approx(1.5e-3, rel=1e-12)
    assert published(out)["scaling"] == "measured"


def test_zero_hw_latency_publishes_the_unscaled_window_and_says_why() -> None:
    measurer = FakeMeasurer(make_measurement(energy_kwh=0.002, window_s=2.0))
    out = engine(measurer, grid_ci_g_per_kwh=300.0).handle(make_inputs(latency=0.0, power=20.0))
    assert out.energy_kwh == pytest.approx(0.002)
    data = published(out)
    assert data["scaling"] == "none"
    assert "HW latency is 0" in data["scaling_note"]


def test_no_tracker_energy_falls_back_to_hw_energy_without_rescaling() -> None:
    # 20 W for 0.25 h = 0.005 kWh, already per inference (F3).
    measurer = FakeMeasurer(make_measurement(energy_kwh=0.0, window_s=2.0, power_source="none", components=()))
    out = engine(measurer, grid_ci_g_per_kwh=300.0).handle(make_inputs(latency=0.25, power=20.0))
    assert out.energy_kwh == pytest.approx(0.005, rel=1e-12)
    assert out.carbon_g == pytest.approx(1.5, rel=1e-12)
    data = published(out)
    assert data["power_source"] == "hw_provider"
    assert data["scaling"] == "none"


def test_a_tracker_output_carries_every_provenance_key_and_the_upstream_keys() -> None:
    out = engine(grid_ci_g_per_kwh=300.0).handle(make_inputs(latency=0.001, power=20.0))
    data = published(out)
    assert data.keys() >= PROVENANCE_KEYS
    assert data["units"] == {"carbon_footprint": "gCO2e", "energy_consumption": "kWh", "carbon_intensity": "gCO2e/kWh"}
    assert data["power_source"] == "simulated" and data["components"] == ["cpu"]
    assert data["model_class"] == "BertModel" and data["carbontracker_version"] == "2.4.7"
    assert (data["energy_figure"], data["counter_energy_kwh"]) == ("carbontracker", None)


def test_the_counter_cross_check_torch_threads_and_model_identity_reach_extra_data() -> None:
    measurement = make_measurement(
        energy_kwh=2e-6,
        energy_figure="rapl_counter",
        carbontracker_energy_kwh=0.0,
        counter_energy_kwh=2e-6,
        torch_threads=3,
        power_source="rapl",
        cpu_power_source="rapl",
        model_identity="files:0123456789abcdef0123456789abcdef",
    )
    data = published(
        engine(grid_ci_g_per_kwh=300.0, measurer=FakeMeasurer(measurement)).handle(make_inputs(latency=0.001, power=20.0))
    )
    assert data["energy_figure"] == "rapl_counter"
    assert (data["carbontracker_energy_kwh"], data["counter_energy_kwh"], data["torch_threads"]) == (0.0, 2e-6, 3)
    assert data["model_identity"] == "files:0123456789abcdef0123456789abcdef"
    assert list(data)[:3] == ["num_outputs", "model_restrains", "mode"]


def test_the_measure_spec_comes_from_the_settings_and_the_task() -> None:
    measurer = FakeMeasurer()
    settings = {
        "window_s": 0.5,
        "device": "cpu",
        "trust_remote_code": True,
        "max_model_mb": 64.0,
        "model_load_timeout_s": 3.0,
        "sim_cpu_tdp_w": 35.0,
        "sim_cpu_util": 0.5,
    }
    engine(measurer, **settings).handle(make_inputs(model="org/model", ml_extra={"unsupported_models": ["Whisper"]}))
    (spec,) = measurer.calls
    assert spec.model == "org/model"
    assert (spec.window_s, spec.device, spec.trust_remote_code, spec.max_model_mb) == (0.5, "cpu", True, 64.0)
    assert (spec.load_timeout_s, spec.sim_cpu_tdp_w, spec.sim_cpu_util) == (3.0, 35.0, 0.5)
    assert spec.unsupported_models == ("whisper",)


def test_timings_come_from_the_measurement() -> None:
    measurer = FakeMeasurer(make_measurement(load_s=0.7, measure_s=1.3))
    ticks = itertools.count(start=10.0, step=2.5)
    out = Engine(EngineConfig(), measurer, clock=lambda: next(ticks)).handle(make_inputs())
    assert out.timings == {"load_s": 0.7, "measure_s": 1.3, "total_s": 2.5}


# errors a user understands


@pytest.mark.parametrize(
    "error",
    [
        ModelRejected("model 'acme/nothing' was not found locally and the Hugging Face hub is offline"),
        ModelRejected("Models that use 'whisper' are not supported (WhisperModel)"),
        ModelRejected("model 'local/dir' has a corrupt config.json: Expecting value at line 1"),
        MeasureTimeout("the measurement took longer than 75 s; the worker was replaced"),
        WorkerCrashed("the measurement worker died (signal 9) while measuring; it was replaced"),
    ],
)
def test_a_measurement_failure_becomes_an_error_output_with_its_message(error: Exception) -> None:
    out = engine(FakeMeasurer(error=error)).handle(make_inputs(user_extra={"num_outputs": 3}))  # type: ignore[arg-type]
    assert (out.carbon_g, out.energy_kwh, out.grid_ci_g_per_kwh) == (0.0, 0.0, 0.0)
    assert not out.node_error
    data = published(out)
    assert data["mode"] == "error"
    assert data["error"] == FAILED + str(error)
    assert data["error_kind"] == type(error).__name__
    assert data["num_outputs"] == 3


@pytest.mark.parametrize(("latency", "power"), [(math.nan, 1.0), (math.inf, 1.0), (-1.0, 1.0), (1.0, -3.0)])
def test_unusable_hw_numbers_are_an_error_before_measuring(latency: float, power: float) -> None:
    measurer = FakeMeasurer()
    out = engine(measurer).handle(make_inputs(latency=latency, power=power))
    data = published(out)
    assert data["mode"] == "error"
    assert data["error"].startswith(FAILED + "HW resources ")
    assert measurer.call_count == 0


def test_an_empty_model_name_is_an_error() -> None:
    out = engine().handle(make_inputs(model=""))
    assert published(out)["error"] == FAILED + "the MLModel input names no model (empty model and no .onnx model_path)"


def test_an_incomplete_task_is_answered_with_an_error_naming_what_is_missing() -> None:
    out = engine().handle(TaskInputs(TaskId(4, 2)))
    data = published(out)
    assert out.task_id == TaskId(4, 2)
    assert data["error"] == FAILED + "missing input(s): ml_model, hw_resources, user_input"
    assert data["num_outputs"] == 1 and data["model_restrains"] == [""]


def test_fail_gives_the_error_output_with_the_users_extra_data_merged() -> None:
    inputs = make_inputs(model="m", user_extra={"num_outputs": "2", "model_restrains": ["x"]})
    out = engine().fail(inputs, "evicted")
    data = published(out)
    assert data["mode"] == "error" and data["error"] == "evicted"
    assert data["num_outputs"] == 2 and data["model_restrains"] == ["m", "x"]


# extra_data merging (upstream + F1)


@pytest.mark.parametrize(
    ("num_outputs", "expected"),
    [(None, 1), ("3", 3), (-2, 1), (0, 1), (10**20, 2**31 - 1), ("abc", 1), ("", 1), (2.9, 2), (True, 1), (4, 4)],
)
def test_num_outputs_is_always_an_integer_of_at_least_one(num_outputs: Any, expected: int) -> None:
    out = engine().handle(make_inputs(model="NO_MODEL", user_extra={"num_outputs": num_outputs}))
    assert published(out)["num_outputs"] == expected


@pytest.mark.parametrize(
    ("user_list", "expected"),
    [
        (["a", "tiny-model", "a", "b"], ["tiny-model", "a", "b"]),
        ([], ["tiny-model"]),
        (None, ["tiny-model"]),
        ("single", ["tiny-model", "single"]),
    ],
)
def test_model_restrains_puts_the_current_model_first_without_duplicates(user_list: Any, expected: list[str]) -> None:
    out = engine().handle(make_inputs(user_extra={"model_restrains": user_list}, latency=0.001))
    assert published(out)["model_restrains"] == expected


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"not json", b"[1, 2]", b"   "])
def test_unusable_user_extra_data_still_gives_valid_upstream_keys(raw: bytes) -> None:
    out = engine().handle(make_inputs(user_extra=raw, latency=0.001))
    data = published(out)
    assert data["mode"] == "tracker"
    assert data["num_outputs"] == 1 and data["model_restrains"] == ["tiny-model"]


def test_invalid_user_extra_data_is_reported_as_a_warning() -> None:
    data = published(engine().handle(make_inputs(user_extra=b"not json")))
    assert any("UserInput extra_data is not valid JSON" in w for w in data["warnings"])


def test_user_extra_data_is_decoded_as_utf8() -> None:
    out = engine().handle(make_inputs(model="NO_MODEL", user_extra={"model_restrains": ["modèle"]}))
    assert published(out)["model_restrains"] == ["NO_MODEL", "modèle"]


# no global state between tasks (F5)


def test_a_tracker_task_does_not_change_the_intensity_of_the_next_onnx_task(onnx_file: str) -> None:
    # Upstream overwrote its process-wide CI with each tracker result.
    eng = engine(FakeMeasurer(make_measurement(energy_kwh=0.002)))
    first = eng.handle(make_inputs(latency=0.001, power=1.0, region="India"))
    second = eng.handle(make_inputs(model_path=onnx_file, latency=1.0, power=1000.0))
    assert first.grid_ci_g_per_kwh == pytest.approx(708.3216)
    assert second.grid_ci_g_per_kwh == world_average().g_per_kwh


def test_each_task_resolves_its_own_region() -> None:
    eng = engine()
    spain = published(eng.handle(make_inputs(latency=0.001, region="Spain")))
    nowhere = published(eng.handle(make_inputs(latency=0.001)))
    assert (spain["grid_ci_source"], spain["grid_ci_g_per_kwh"]) == ("offline_table", 146.15356)
    assert (nowhere["grid_ci_source"], nowhere["grid_ci_g_per_kwh"]) == ("world_average", 445.0)


def test_an_injected_intensity_source_is_used_for_each_task() -> None:
    source = FakeIntensitySource(Intensity(50.0, "fake", "ZZ", 2020))
    out = engine(intensity=source).handle(make_inputs(latency=0.001, region="Spain"))
    assert published(out)["grid_ci_source"] == "fake"
    assert [loc.region for loc in source.lookups] == ["Spain"]


def test_an_injected_source_without_an_answer_falls_back_to_the_world_average() -> None:
    out = engine(intensity=FakeIntensitySource(None)).handle(make_inputs(latency=0.001))
    assert published(out)["grid_ci_source"] == "world_average"


# lanes and abort


@pytest.mark.parametrize(
    ("kwargs", "lane"),
    [
        ({"model": "NO_MODEL"}, Lane.INLINE),
        ({"model_path": "/nonexistent/model.onnx"}, Lane.INLINE),
        ({"latency": math.nan}, Lane.INLINE),
        ({"model": ""}, Lane.INLINE),
        ({"model": "org/model"}, Lane.MEASURE),
    ],
)
def test_only_tasks_that_measure_use_the_measure_lane(kwargs: dict[str, Any], lane: Lane) -> None:
    assert engine().lane(make_inputs(**kwargs)) is lane


def test_an_existing_onnx_file_is_answered_inline(onnx_file: str) -> None:
    assert engine().lane(make_inputs(model_path=onnx_file)) is Lane.INLINE


def test_an_onnx_task_whose_intensity_may_wait_on_a_live_lookup_uses_the_fast_lane() -> None:
    live = engine(live_intensity=True)
    assert live.lane(make_inputs(model_path="/models/unet.onnx")) is Lane.FAST
    assert live.lane(make_inputs(model="NO_MODEL")) is Lane.INLINE  # no intensity needed


def test_an_injected_intensity_source_is_taken_to_block(onnx_file: str) -> None:
    fixed = engine(intensity=FixedIntensity(300.0))
    assert fixed.lane(make_inputs(model_path=onnx_file)) is Lane.FAST


def test_an_incomplete_task_is_answered_inline() -> None:
    assert engine().lane(TaskInputs(TaskId(1, 1))) is Lane.INLINE


def test_abort_is_forwarded_to_the_measurer() -> None:
    measurer = FakeMeasurer()
    engine(measurer).abort()
    assert measurer.aborted == 1


def test_abort_without_a_measurer_abort_does_nothing() -> None:
    class Plain:
        def measure(self, spec: Any) -> Any:
            raise AssertionError

    Engine(EngineConfig(), Plain()).abort()
