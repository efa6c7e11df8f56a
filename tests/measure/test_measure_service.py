"""The measure service, run in-process: every model kind measured, models kept and evicted, settings applied."""

from __future__ import annotations

from pathlib import Path

import pytest

from carbon_node.measure import tiny
from carbon_node.measure.measure_service import MeasureService
from carbon_node.measure.protocol import MeasureSpec
from carbon_node.measure.worker_pipe import WorkerConfig


def test_evictions_for_a_loading_model_reach_the_service_cache(service: MeasureService, tiny_models: dict[str, str]) -> None:
    service.measure(spec(tiny_models["text"]))
    assert len(service.models) == 1
    service.measure(spec(tiny_models["image"]))
    assert len(service.models) == 1  # max 1 model: the text model was evicted before the image one loaded


@pytest.fixture
def service(tmp_path: Path) -> MeasureService:
    return MeasureService(WorkerConfig(scratch_dir=tmp_path / "scratch", model_cache_max_models=1))


def spec(model: str, **fields: object) -> MeasureSpec:
    return MeasureSpec(model=model, window_s=0.3, sim_cpu_tdp_w=10.0, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["text", "image", "video", "multimodal", "seq2seq"])
def test_every_model_kind_runs_a_real_carbontracker_window(
    service: MeasureService, tiny_models: dict[str, str], kind: str
) -> None:
    measurement = service.measure(spec(tiny_models[kind]))
    assert measurement.energy_kwh > 0
    assert measurement.forward_passes > 0
    assert measurement.power_source == "simulated"


def test_a_model_kept_in_the_worker_is_not_loaded_again(service: MeasureService, tiny_models: dict[str, str]) -> None:
    service.measure(spec(tiny_models["text"]))
    again = service.measure(spec(tiny_models["text"]))
    assert again.load_s == 0.0


def test_a_kept_model_is_still_refused_when_a_later_spec_forbids_its_class(
    service: MeasureService, tiny_models: dict[str, str]
) -> None:
    service.measure(spec(tiny_models["text"]))
    reply = service.reply(7, spec(tiny_models["text"], unsupported_models=("bert",)))
    assert (reply.request_id, reply.error_kind, reply.measurement) == (7, "rejected", None)
    assert "'bert' are not supported" in reply.message


def test_the_model_cache_count_bound_evicts_the_older_model(service: MeasureService, tiny_models: dict[str, str]) -> None:
    service.measure(spec(tiny_models["text"]))
    reply = service.reply(1, spec(tiny_models["image"]))
    assert reply.cached_models == 1
    assert service.measure(spec(tiny_models["text"])).load_s > 0


def test_a_bare_model_is_measured_on_a_synthetic_input_named_in_the_notes(service: MeasureService, tmp_path: Path) -> None:
    directory = tiny.build_bare_model(tmp_path / "gpt2", "gpt2", layers=2)
    measurement = service.measure(spec(str(directory)))
    assert measurement.forward_passes > 0 and measurement.energy_kwh > 0
    assert any(note.startswith("synthetic input built from the config (7 token ids") for note in measurement.notes)


def test_the_torch_thread_setting_is_applied_and_reported(tmp_path: Path, tiny_models: dict[str, str]) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        configured = MeasureService(WorkerConfig(scratch_dir=tmp_path / "scratch", torch_threads=1))
        assert configured.measure(spec(tiny_models["text"])).torch_threads == torch.get_num_threads() == 1
        default = MeasureService(WorkerConfig(scratch_dir=tmp_path / "scratch"))
        torch.set_num_threads(2)
        assert default.measure(spec(tiny_models["text"])).torch_threads == 2  # unset: left as it is
    finally:
        torch.set_num_threads(before)
