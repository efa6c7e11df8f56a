"""The worker's model cache: least recently used, bounded by entry count and by total size in bytes.

It knows nothing of models: :class:`~carbon_node.measure.measure_service.MeasureService` keys it on a
model's identity and sizes entries by their parameter bytes; what happens to the memory an evicted model
leaves behind is :mod:`carbon_node.measure.heap`'s job.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["ModelCache"]

V = TypeVar("V")


class ModelCache(Generic[V]):
    """Least-recently-used cache bounded by entry count and by total size in bytes.

    An entry larger than ``max_bytes`` on its own is not kept. ``on_evict`` is called with each
    value that leaves the cache; ``after_evict`` once the evicted values are no longer referenced by
    the cache (to return their memory: a collector pass frees nothing while a reference is held).
    """

    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        on_evict: Callable[[V], None] | None = None,
        after_evict: Callable[[], None] | None = None,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._on_evict = on_evict
        self._after_evict = after_evict
        self._entries: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self._entries.values())

    def keys(self) -> list[Hashable]:
        """Keys from least to most recently used."""
        return list(self._entries)

    def get(self, key: Hashable) -> V | None:
        """The value for ``key`` (now the most recently used), or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def make_room(self, size_bytes: int) -> None:
        """Evict least-recently-used entries until one more entry of ``size_bytes`` fits both bounds.

        Called before a model is loaded (with its estimated size), so that the new model and the ones
        it replaces are never in memory together.
        """
        evicted = False
        while self._entries and (len(self._entries) + 1 > self.max_entries or self.total_bytes + size_bytes > self.max_bytes):
            self._evict_oldest()
            evicted = True
        if evicted and self._after_evict is not None:
            self._after_evict()

    def resize(self, max_entries: int, max_bytes: int) -> None:
        """New bounds (a reloaded configuration); least-recently-used entries are evicted until both hold."""
        self.max_entries, self.max_bytes = max_entries, max_bytes
        evicted = False
        while self._entries and (len(self._entries) > max_entries or self.total_bytes > max_bytes):
            self._evict_oldest()
            evicted = True
        if evicted and self._after_evict is not None:
            self._after_evict()

    def put(self, key: Hashable, value: V, size_bytes: int) -> bool:
        """Keep ``value``, evicting least-recently-used entries to stay within both bounds.

        Returns False (and keeps nothing) when the value alone exceeds a bound.
        """
        self.discard(key)
        if self.max_entries <= 0 or size_bytes > self.max_bytes:
            return False
        self.make_room(size_bytes)
        self._entries[key] = (value, size_bytes)
        return True

    def discard(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._evicted(entry[0])

    def clear(self) -> None:
        while self._entries:
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        _, (old, _) = self._entries.popitem(last=False)
        self._evicted(old)

    def _evicted(self, value: V) -> None:
        if self._on_evict is not None:
            self._on_evict(value)
