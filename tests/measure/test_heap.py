"""The worker's heap: an evicted model's memory is returned, and a settled heap is frozen, with few collections."""

from __future__ import annotations

import gc
import weakref
from typing import Any

from carbon_node.measure.heap import EvictedMemory, settle_heap
from carbon_node.measure.model_cache import ModelCache


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
