"""The worker's model cache (LRU by count and bytes) and its in-process measuring service."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import pytest

from carbon_node.measure import tiny
from carbon_node.measure.protocol import MeasureSpec
from carbon_node.measure.worker import EvictedMemory, MeasureService, ModelCache, WorkerConfig, settle_heap


def test_the_least_recently_used_model_is_evicted_when_the_count_is_reached() -> None:
    cache: ModelCache[str] = ModelCache(max_entries=2, max_bytes=1000)
    cache.put("a", "A", 10)
    cache.put("b", "B", 10)
    cache.get("a")  # a is now more recent than b
    cache.put("c", "C", 10)
    assert cache.keys() == ["a", "c"]


def test_models_are_evicted_until_their_bytes_fit() -> None:
    cache: ModelCache[str] = ModelCache(max_entries=10, max_bytes=100)
    cache.put("a", "A", 40)
    cache.put("b", "B", 40)
    cache.put("c", "C", 50)
    assert cache.keys() == ["b", "c"]
    assert cache.total_bytes == 90


def test_a_model_larger_than_the_byte_bound_is_not_kept() -> None:
    cache: ModelCache[str] = ModelCache(max_entries=10, max_bytes=100)
    cache.put("a", "A", 40)
    assert cache.put("huge", "H", 101) is False
    assert cache.keys() == ["a"]


def test_a_zero_count_bound_keeps_nothing() -> None:
    cache: ModelCache[str] = ModelCache(max_entries=0, max_bytes=100)
    assert cache.put("a", "A", 1) is False
    assert len(cache) == 0


def test_evicted_values_are_handed_to_the_evict_callback() -> None:
    evicted: list[str] = []
    cache: ModelCache[str] = ModelCache(max_entries=1, max_bytes=100, on_evict=evicted.append)
    cache.put("a", "A", 1)
    cache.put("b", "B", 1)
    assert evicted == ["A"]


def test_room_is_made_before_a_model_is_loaded_and_memory_is_freed_once_unreferenced() -> None:

    class Model:
        pass

    freed: list[bool] = []

    def after_evict() -> None:
        gc.collect()
        freed.append(ref() is None)

    first = Model()
    ref = weakref.ref(first)
    cache: ModelCache[Model] = ModelCache(max_entries=5, max_bytes=100, after_evict=after_evict)
    cache.put("a", first, 60)
    del first
    cache.make_room(50)  # a 50-byte model is about to be loaded: "a" must go first
    assert cache.keys() == []
    assert freed == [True]  # called once, when the cache no longer held the model


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


class _Cyclic:
    """A stand-in model that references itself: only a collector pass frees it."""

    def __init__(self) -> None:
        self.me = self
        self.payload = bytearray(1024)


class _Plain:
    """A stand-in model freed by reference counting alone."""


def _loaded(model: object) -> Any:
    from carbon_node.measure.model_loading import LoadedModel

    return LoadedModel(model=model, inputs={}, model_class="X", input_kind="text", device="cpu", dtype="float32", param_bytes=1)


def _kept_alone(model: object) -> tuple[EvictedMemory, ModelCache[Any], weakref.ref[Any]]:
    """A one-model cache holding ``model`` (and nothing else holding it), with its evicted-memory watcher."""
    memory = EvictedMemory()
    cache: ModelCache[Any] = ModelCache(max_entries=1, max_bytes=100, on_evict=memory.watch, after_evict=memory.free)
    cache.put("a", _loaded(model), 1)
    return memory, cache, weakref.ref(model)


def test_an_evicted_model_freed_by_reference_counting_costs_no_collection() -> None:
    memory, cache, ref = _kept_alone(_Plain())
    cache.make_room(1)
    assert ref() is None
    assert memory.collections == 0


def test_an_evicted_model_in_a_reference_cycle_is_collected_even_when_it_was_frozen() -> None:

    memory, cache, ref = _kept_alone(_Cyclic())
    gc.freeze()  # as settle_heap does when the worker is idle with a model in its cache
    try:
        cache.make_room(1)
        assert ref() is None
        assert memory.collections == 1
        assert gc.get_freeze_count() > 0  # frozen again afterwards
    finally:
        gc.unfreeze()


def test_settling_the_heap_freezes_what_is_alive_and_collects_garbage_first() -> None:

    garbage = _Cyclic()
    ref = weakref.ref(garbage)
    del garbage
    try:
        settle_heap()
        assert ref() is None  # collected, not frozen
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
