"""The worker's model cache: least recently used, bounded by entry count and by total bytes."""

from __future__ import annotations

import gc
import weakref

from carbon_node.measure.model_cache import ModelCache


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
