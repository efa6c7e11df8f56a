"""The journal's writer thread: it commits what a journal queued, until the journal stops, and at exit.

A :class:`~carbon_node.service.journal.SqliteJournal` starts one writer on its first ``record``
(:func:`start_writer`). The thread holds its journal only while rows are queued, so that a journal
nobody refers to any more (and that was not closed) can still be collected; what open journals still
queue when the interpreter exits is committed then (daemon threads are not waited for).
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import weakref
from typing import Any, Protocol

__all__ = ["start_writer"]


class _Batches(Protocol):
    """What the writer needs of a journal (its private batch methods, named for this module alone)."""

    def _next_batch(self) -> tuple[Any, int] | None: ...

    def _commit(self, batch: Any, upto: int) -> None: ...

    def _write_queued(self) -> None: ...


_OPEN_JOURNALS: weakref.WeakSet[_Batches] = weakref.WeakSet()
"""Journals with a writer thread: what they queued is committed at interpreter exit."""


def start_writer(journal: _Batches) -> threading.Thread:
    """Start ``journal``'s writer thread (call once, with the journal's queue lock held)."""
    thread = threading.Thread(target=_write_loop, args=(weakref.ref(journal),), name="carbon-journal", daemon=True)
    thread.start()
    _OPEN_JOURNALS.add(journal)
    return thread


def _write_loop(ref: weakref.ReferenceType[_Batches]) -> None:
    """Commit batches until the journal stops, turns off or is garbage-collected."""
    while True:
        journal = ref()
        if journal is None:
            return
        while True:
            taken = journal._next_batch()
            if taken is None:
                return
            batch, upto = taken
            if not batch:
                break  # idle: let go of the journal for a moment
            journal._commit(batch, upto)
        del journal


@atexit.register
def _commit_at_exit() -> None:
    for journal in list(_OPEN_JOURNALS):
        with contextlib.suppress(Exception):  # best effort: the process is ending
            journal._write_queued()
