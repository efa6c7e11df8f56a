"""When the journal's file cannot be written for a while: which failures pass, the retry backoff, and the
answers that could not be kept.

:class:`~carbon_node.service.journal.SqliteJournal` suspends its writes on a failure that passes (the
disk is full, an I/O error, the file locked by another process: :func:`transient`) instead of turning
itself off: the rows stay queued in memory and the commit is retried after 1 s, doubling up to
:data:`MAX_RETRY_S`. While suspended the queue keeps at most :data:`MAX_BACKLOG_ROWS` rows; the task ids
of older ones, dropped, are named when the journal resumes. A corrupt file does not pass: that still
turns the journal off.
"""

from __future__ import annotations

import math
import sqlite3

__all__ = ["MAX_BACKLOG_ROWS", "MAX_RETRY_S", "Suspension", "transient"]

MAX_RETRY_S = 30.0
"""Longest wait (seconds) between two commit attempts of a suspended journal (the backoff doubles from 1 s)."""

MAX_BACKLOG_ROWS = 10_000
"""Rows a suspended journal keeps queued in memory (a few KiB each); older ones are dropped, their ids logged."""

GAP_IDS_NAMED = 1000
"""Task ids named in one ``journal_gap`` line (the count is always exact)."""

_TRANSIENT_MESSAGES = (
    "database or disk is full",
    "disk i/o error",
    "database is locked",
    "attempt to write a readonly database",
    "unable to open database file",
)
"""SQLite errors that pass (space freed, the disk back, the other process done)."""


def transient(exc: BaseException) -> bool:
    """Whether a failed journal write may succeed later; a corrupt file ("file is not a database",
    "malformed") does not."""
    if isinstance(exc, OSError):
        return True
    return isinstance(exc, sqlite3.OperationalError) and any(m in str(exc).lower() for m in _TRANSIENT_MESSAGES)


class Suspension:
    """The state of a journal's suspended writes; not thread-safe (the journal guards it with its queue lock).

    Times are ``time.monotonic()`` seconds, passed in.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.reason: str | None = None
        self.since_s = 0.0
        self.retry_in_s = 1.0
        self.retry_at_s = -math.inf
        self.gap: list[str] = []
        self.gap_count = 0

    @property
    def active(self) -> bool:
        return self.reason is not None

    def failed(self, exc: BaseException, now_s: float) -> bool:
        """Record a failed attempt and schedule the next one; True when this one starts the suspension."""
        first = self.reason is None
        if first:
            self.since_s, self.retry_in_s = now_s, 1.0
        else:
            self.retry_in_s = min(MAX_RETRY_S, self.retry_in_s * 2)
        self.reason = f"{type(exc).__name__}: {exc}"
        self.retry_at_s = now_s + self.retry_in_s
        return first

    def dropped(self, task_id: tuple[int, int]) -> None:
        """A queued row was dropped to keep the backlog bounded: name its task when the journal resumes."""
        self.gap_count += 1
        if len(self.gap) < GAP_IDS_NAMED:
            self.gap.append(f"{task_id[0]}.{task_id[1]}")

    def end(self, now_s: float) -> tuple[float, int, list[str]]:
        """End the suspension: (seconds it lasted, rows dropped, their task ids as far as named)."""
        ended = (now_s - self.since_s, self.gap_count, self.gap)
        self._reset()  # back to the state of a journal that writes
        return ended
