"""The answered-task journal: replayed inputs are answered again, identically, without re-measuring.

Inputs are TRANSIENT_LOCAL (PROTOCOL.md K5): after a restart the orchestrator's writers replay every
task they still hold, and the node must answer them exactly as before. :class:`SqliteJournal` keeps one
row per answered task (its id, the three published doubles, the published ``extra_data`` JSON text and
the time it was recorded) in a SQLite file in the state directory.

Properties the node relies on:

- Values come back bit-identical: doubles are stored as SQLite REALs (IEEE 754 binary64; a NaN, which
  SQLite stores as NULL, comes back as NaN), ``extra_data`` as the exact JSON text that was published.
- Retention is bounded by count (``max_tasks``) and age (``retention_s``), pruned on every write through
  two index range deletes, so a write costs O(log n) plus the rows it removes.
- The journal never raises and never stops the node: when the file is corrupt or cannot be written,
  the problem is logged once and the journal turns itself off (``lookup`` answers None, ``record`` does
  nothing). Tasks are then answered by measuring, as on a node without a journal.
- One connection (WAL mode) guarded by a lock: the bus runtime calls it from several threads.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from carbon_node.core import TaskId, TaskOutput, encode_extra_data

__all__ = ["SqliteJournal"]

log = structlog.get_logger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answered (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    problem_id INTEGER NOT NULL,
    iteration_id INTEGER NOT NULL,
    carbon_g REAL,
    energy_kwh REAL,
    grid_ci_g_per_kwh REAL,
    extra_data TEXT NOT NULL,
    node_error INTEGER NOT NULL,
    recorded_at REAL NOT NULL,
    UNIQUE (problem_id, iteration_id)
);
CREATE INDEX IF NOT EXISTS answered_recorded_at ON answered (recorded_at);
"""

_BUSY_TIMEOUT_S = 2.0
"""Seconds a statement waits for another process holding the file (e.g. a second node on the same state dir)."""


def _from_sql(value: float | None) -> float:
    # SQLite has no NaN: it stores one as NULL. Nothing else is NULL in these columns.
    return math.nan if value is None else float(value)


class SqliteJournal:
    """A :class:`carbon_node.core.Journal` in a SQLite file at ``path``.

    ``max_tasks`` bounds the rows kept (count), ``retention_s`` their age in seconds measured with
    ``clock`` (seconds, ``time.time`` by default; tests inject their own). Never raises after
    construction, and construction itself never raises either: an unusable file only disables it.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_tasks: int,
        retention_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_tasks < 1:
            raise ValueError(f"max_tasks must be >= 1, got {max_tasks}")
        if not retention_s > 0:
            raise ValueError(f"retention_s must be > 0, got {retention_s}")
        self.path = Path(path)
        self.max_tasks = max_tasks
        self.retention_s = float(retention_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._disabled_reason: str | None = None
        with self._lock:
            self._open()

    # -- state -----------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """False once the journal has turned itself off (see :attr:`disabled_reason`)."""
        return self._disabled_reason is None

    @property
    def disabled_reason(self) -> str | None:
        """Why the journal is off (one line), or None while it works."""
        return self._disabled_reason

    def _disable(self, action: str, exc: BaseException) -> None:
        """Turn the journal off and say so once; the caller holds the lock."""
        if self._disabled_reason is None:
            self._disabled_reason = f"{action}: {type(exc).__name__}: {exc}"
            log.warning(
                "journal_disabled",
                path=str(self.path),
                action=action,
                error=f"{type(exc).__name__}: {exc}",
                consequence="replayed tasks are measured again",
            )
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):  # already broken; nothing more to release
                self._conn.close()
            self._conn = None

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=_BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            self._disable("open", exc)
            return
        self._conn = conn
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL survives a killed process (the WAL is in the OS page cache); only a power
            # loss may drop the last few answers, which are then measured again.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            self._prune(self._clock())
        except sqlite3.Error as exc:
            self._disable("open", exc)

    def close(self) -> None:
        """Release the file. Later calls behave as on a disabled journal."""
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):  # a broken connection has nothing left to save
                    self._conn.close()
                self._conn = None
            if self._disabled_reason is None:
                self._disabled_reason = "closed"

    # -- Journal protocol --------------------------------------------------------------------------

    def lookup(self, task_id: TaskId) -> TaskOutput | None:
        """The output recorded for ``task_id`` within the retention window, or None (also when disabled)."""
        with self._lock:
            if self._conn is None:
                return None
            oldest = self._clock() - self.retention_s
            try:
                row = self._conn.execute(
                    "SELECT carbon_g, energy_kwh, grid_ci_g_per_kwh, extra_data, node_error FROM answered"
                    " WHERE problem_id = ? AND iteration_id = ? AND recorded_at >= ?",
                    (task_id.problem_id, task_id.iteration_id, oldest),
                ).fetchone()
            except sqlite3.Error as exc:
                self._disable("lookup", exc)
                return None
        if row is None:
            return None
        carbon_g, energy_kwh, grid_ci, extra_text, node_error = row
        try:
            extra: dict[str, Any] = json.loads(extra_text)
        except (TypeError, ValueError) as exc:
            log.warning("journal_row_unreadable", task_id=str(task_id), error=str(exc))
            return None
        return TaskOutput(
            task_id=task_id,
            carbon_g=_from_sql(carbon_g),
            energy_kwh=_from_sql(energy_kwh),
            grid_ci_g_per_kwh=_from_sql(grid_ci),
            extra_data=extra,
            node_error=bool(node_error),
        )

    def record(self, output: TaskOutput) -> None:
        """Persist ``output`` (replacing an earlier answer to the same task) and prune old rows. Never raises."""
        try:
            # The text that is published, so that a replay publishes the very same bytes.
            extra_text = encode_extra_data(output.extra_data).decode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            log.warning("journal_record_skipped", task_id=str(output.task_id), error=str(exc))
            return
        with self._lock:
            if self._conn is None:
                return
            now = self._clock()
            try:
                with self._conn:  # one transaction: the row and its pruning
                    self._conn.execute("BEGIN IMMEDIATE")
                    self._conn.execute(
                        "INSERT OR REPLACE INTO answered (problem_id, iteration_id, carbon_g, energy_kwh,"
                        " grid_ci_g_per_kwh, extra_data, node_error, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            output.task_id.problem_id,
                            output.task_id.iteration_id,
                            float(output.carbon_g),
                            float(output.energy_kwh),
                            float(output.grid_ci_g_per_kwh),
                            extra_text,
                            int(output.node_error),
                            now,
                        ),
                    )
                    self._prune(now)
            except sqlite3.Error as exc:
                self._disable("record", exc)

    # -- retention ---------------------------------------------------------------------------------

    def _prune(self, now: float) -> None:
        """Drop rows older than the retention and all but the newest ``max_tasks``; the caller holds the lock."""
        assert self._conn is not None
        self._conn.execute("DELETE FROM answered WHERE recorded_at < ?", (now - self.retention_s,))
        # seq grows with every write, so the newest max_tasks rows have the highest seq: one range delete.
        self._conn.execute(
            "DELETE FROM answered WHERE seq <= (SELECT MAX(seq) FROM answered) - ?",
            (self.max_tasks,),
        )

    def __len__(self) -> int:
        """Rows currently kept (0 when disabled)."""
        with self._lock:
            if self._conn is None:
                return 0
            try:
                row = self._conn.execute("SELECT COUNT(*) FROM answered").fetchone()
            except sqlite3.Error as exc:
                self._disable("count", exc)
                return 0
        return int(row[0])
