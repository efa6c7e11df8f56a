"""The worker's heap: return the memory of evicted models, and freeze what is never garbage.

Both spare the worker full collections, each of which walks every object that torch, transformers and
carbontracker created: :class:`EvictedMemory` pays for one only when an evicted model outlives its
eviction, and :func:`settle_heap` takes the imported libraries' objects out of every later one.
"""

from __future__ import annotations

import gc
import sys
import time
import weakref
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from carbon_node.measure.model_loading import LoadedModel

__all__ = ["EvictedMemory", "settle_heap"]

log = structlog.get_logger(__name__)


class EvictedMemory:
    """Returns the memory of evicted models, paying for a collector pass only when one is needed.

    A model the cache drops is usually freed at once by reference counting; a full ``gc.collect()`` in
    a process holding torch and transformers walks about half a million objects (0.2-0.3 s on this
    machine type, more on a loaded one) and would free nothing then. So each evicted model is watched
    through a weak reference, and only one that outlives the eviction (it sits in a reference cycle)
    costs a collection: of the whole heap, including what :func:`settle_heap` froze (unfreeze, collect,
    freeze again), since the model may have been frozen with it. GPU memory goes back through torch's
    cache whenever a model was evicted on a host with CUDA.
    """

    def __init__(self) -> None:
        self._watched: list[weakref.ref[Any] | None] = []
        self.collections = 0
        """Collector passes run because an evicted model outlived its eviction."""

    def watch(self, loaded: LoadedModel) -> None:
        """Called with each model as it leaves the cache."""
        try:
            self._watched.append(weakref.ref(loaded.model))
        except TypeError:  # not weak-referenceable: assume the worst
            self._watched.append(None)

    def free(self) -> None:
        """Called once the cache holds none of the evicted models any more."""
        alive = any(ref is None or ref() is not None for ref in self._watched)
        self._watched.clear()
        if alive:
            frozen = gc.get_freeze_count() > 0
            if frozen:
                gc.unfreeze()
            gc.collect()
            if frozen:
                gc.freeze()
            self.collections += 1
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()


def settle_heap() -> None:
    """Collect once, then freeze every object alive (``gc.freeze``): the modules torch, transformers and
    carbontracker imported are never garbage, and later collections, automatic or for an evicted model,
    no longer walk them (a full pass drops from about 0.2 s to milliseconds). Run when the worker is idle."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    log.info("worker.heap_settled", frozen_objects=gc.get_freeze_count(), seconds=round(time.perf_counter() - started, 3))
