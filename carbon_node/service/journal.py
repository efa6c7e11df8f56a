"""The answered-task journal: replayed inputs are answered again, identically, without re-measuring.

Inputs are TRANSIENT_LOCAL (PROTOCOL.md K5): after a restart the orchestrator's writers replay every
task they still hold, and the node must answer them exactly as before. :class:`SqliteJournal` keeps one
row per answered task (its id, the three published doubles, the published ``extra_data`` JSON text, the
time it was recorded and the fingerprint of the inputs it answered) in a SQLite file in the state
directory; :mod:`carbon_node.service.journal_schema` holds the table and its migration.

Properties the node relies on:

- A row says which inputs it answered (``inputs_fingerprint``), so that the bus replays it only for the
  very same inputs (:mod:`carbon_node.bus.replay`); a new answer to the same task id replaces the row.
  Rows written before fingerprints were kept (schema version 0, migrated on open) have none: never replayed.

- Values come back bit-identical: doubles are stored as SQLite REALs (IEEE 754 binary64; a NaN, which
  SQLite stores as NULL, comes back as NaN), ``extra_data`` as the exact JSON text that was published.
- ``record`` does not wait for the disk: it queues the row and returns (microseconds, so that answering
  a task never waits for a commit). A writer thread commits what was queued in one transaction, at once
  when the journal was idle and otherwise at most every ``commit_interval_s`` (0.1 s by default), so a
  burst of tasks costs one commit per interval instead of one per task. ``lookup`` sees queued rows at
  once; ``flush`` and ``close`` wait until everything recorded is in the file. The file is in WAL mode
  with ``synchronous=NORMAL``: a committed row survives the process being killed (it is in the OS page
  cache); a power loss may drop the last commits.
- Durability: the outcome of a measurement (a ``tracker`` answer, or an error output carrying the
  measurement's ``error_kind``) is committed before ``record`` returns, hence before it is published,
  because a measurement cannot be repeated identically. The other answers are
  deterministic functions of the task's inputs and settings; a node killed with SIGKILL may lose the
  ones recorded in roughly the last ``commit_interval_s`` plus one commit (a few hundred milliseconds),
  and recomputes them, with the same values, when their inputs are replayed after the restart. A
  graceful stop (SIGTERM, ``close``) loses nothing.
- Retention is bounded by count (``max_tasks``) and age (``retention_s``), pruned on every commit through
  two index range deletes, so a commit costs O(log n) per row plus the rows it removes.
- The journal never raises and never stops the node. A write that fails for a reason that passes (the
  disk is full, an I/O error, the file is locked by another process) *suspends* it
  (:mod:`carbon_node.service.journal_suspension`): the rows stay queued in memory (``lookup`` still
  answers them, and the rows already in the file), the commit is retried with a backoff, and the first
  commit that succeeds writes everything still queued (``journal_suspended``, then ``journal_resumed``
  in the log; ``journal_gap`` names the task ids of rows the bounded backlog could not keep). A file
  that is corrupt, or cannot be opened, turns the journal off for good (``journal_disabled``:
  ``lookup`` answers None, ``record`` does nothing, queued rows are dropped); tasks are then answered
  by measuring, as on a node without one.
- ``lookup`` runs for every new task, on the bus thread, so it stays off SQLite when it can: an
  in-memory set of the hashes of the task ids in the file or queued (loaded at open, about 70 bytes per
  row; rebuilt once it holds a quarter more than ``max_tasks``, to forget pruned rows) answers "never
  recorded" without a query. Otherwise it reads through a second connection, so that it never waits for
  a commit in progress (WAL readers do not block on the writer). Rows that another process adds to the
  file after this journal opened it are therefore not seen (one node per state directory).
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from carbon_node.core import Answered, TaskId, TaskOutput
from carbon_node.service.journal_schema import (
    INSERT,
    SELECT_ONE,
    Key,
    Row,
    answered_from_row,
    create_or_migrate,
)
from carbon_node.service.journal_suspension import MAX_BACKLOG_ROWS, Suspension, transient
from carbon_node.service.journal_writer import start_writer

__all__ = ["MEASURED_COMMIT_TIMEOUT_S", "SqliteJournal"]

log = structlog.get_logger(__name__)

MEASURED_COMMIT_TIMEOUT_S = 5.0
"""Seconds ``record`` waits for a measured answer's commit before it lets the answer go out anyway."""

_BUSY_TIMEOUT_S = 2.0
"""Seconds a statement waits for another process holding the file (e.g. a second node on the same state dir)."""


_COMMIT_INTERVAL_S = 0.1
"""Default longest wait of a recorded row for its commit while the journal is busy (the durability window)."""

_IDLE_WAKE_S = 5.0
"""The writer thread's longest sleep with nothing queued (it ends once its journal is garbage-collected)."""


class SqliteJournal:
    """A :class:`carbon_node.core.Journal` in a SQLite file at ``path``.

    ``max_tasks`` bounds the rows kept (count), ``retention_s`` their age in seconds measured with
    ``clock`` (seconds, ``time.time`` by default; tests inject their own). ``commit_interval_s`` is the
    longest a recorded row waits for its commit while the journal is busy (see the module docstring).
    Never raises after construction, and construction itself never raises either: an unusable file only
    disables it.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_tasks: int,
        retention_s: float,
        clock: Callable[[], float] = time.time,
        commit_interval_s: float = _COMMIT_INTERVAL_S,
    ) -> None:
        if max_tasks < 1:
            raise ValueError(f"max_tasks must be >= 1, got {max_tasks}")
        if not retention_s > 0:
            raise ValueError(f"retention_s must be > 0, got {retention_s}")
        if not commit_interval_s >= 0:
            raise ValueError(f"commit_interval_s must be >= 0, got {commit_interval_s}")
        self.path = Path(path)
        self.max_tasks = max_tasks
        self.retention_s = float(retention_s)
        self.commit_interval_s = float(commit_interval_s)
        self._clock = clock
        # Lock order: _lock (writer connection), then _read_lock (reader connection), then _queue.
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._disabled_reason: str | None = None
        # Rows recorded and not committed yet: queued, and the batch being written (guarded by _queue).
        # _recorded numbers the record calls; _committed is the number of the last one written (or dropped).
        self._queue = threading.Condition(threading.Lock())
        self._pending: dict[Key, Row] = {}
        self._writing: dict[Key, Row] = {}
        self._recorded = 0
        self._committed = 0
        # hash() of the key of every row that may be in the file or queued (a superset: pruned rows stay
        # until the next rebuild), so that a lookup of a task never answered skips SQLite altogether.
        self._keys: set[int] = set()
        self._flush_wanted = False
        self._stopping = False
        self._last_commit_s = -math.inf  # time.monotonic() at the end of the last commit
        self._suspension = Suspension()  # guarded by _queue
        self._writer: threading.Thread | None = None
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

    @property
    def suspended_reason(self) -> str | None:
        """Why the journal's writes are suspended and retried (one line), or None while they succeed."""
        return self._suspension.reason

    def _suspend(self, batch: dict[Key, Row], upto: int, exc: BaseException) -> None:
        """Keep ``batch`` queued after a transient write failure; the caller holds ``_lock``. Waiters of
        :meth:`flush` are released: the rows are kept, in memory."""
        with self._queue:
            first = self._suspension.failed(exc, time.monotonic())
            restored = {key: row for key, row in batch.items() if key not in self._pending}  # newer answers win
            self._pending = {**restored, **self._pending}
            for key, row in batch.items():
                if self._writing.get(key) is row:
                    del self._writing[key]
            self._committed = max(self._committed, upto)
            queued = len(self._pending)
            self._queue.notify_all()
        if first:
            log.warning(
                "journal_suspended",
                path=str(self.path),
                error=self._suspension.reason,
                queued=queued,
                consequence="answers are kept in memory and written once the file can be written again",
            )

    def _resumed(self, written: int) -> None:
        """Log the end of a suspension and the rows it could not keep; the caller holds ``_queue``."""
        lasted_s, lost, task_ids = self._suspension.end(time.monotonic())
        log.info("journal_resumed", path=str(self.path), rows_written=written, suspended_s=round(lasted_s, 3))
        if lost:
            log.warning(
                "journal_gap",
                path=str(self.path),
                lost=lost,
                task_ids=task_ids,
                consequence="these answers are not in the journal: their tasks are computed again if replayed",
            )

    def _disable(self, action: str, exc: BaseException) -> None:
        """Turn the journal off and say so once; the caller holds ``_lock`` (not ``_read_lock``)."""
        if self._disabled_reason is None:
            self._disabled_reason = f"{action}: {type(exc).__name__}: {exc}"
            log.warning(
                "journal_disabled",
                path=str(self.path),
                action=action,
                error=f"{type(exc).__name__}: {exc}",
                consequence="replayed tasks are measured again",
            )
        with self._read_lock:
            for conn in (self._conn, self._reader):
                if conn is not None:
                    with contextlib.suppress(sqlite3.Error):  # already broken; nothing more to release
                        conn.close()
            self._conn = self._reader = None
        with self._queue:  # nothing will commit what is queued: drop it, and release flush()
            self._pending = {}
            self._committed = self._recorded
            self._queue.notify_all()

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
            # loss may drop the last commits, whose tasks are then measured again.
            conn.execute("PRAGMA synchronous=NORMAL")
            create_or_migrate(conn)
            self._prune(self._clock())
            self._load_keys()
            self._reader = sqlite3.connect(str(self.path), timeout=_BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            self._disable("open", exc)

    def reconfigure(self, *, max_tasks: int, retention_s: float) -> None:
        """New retention bounds (a reloaded configuration), applied from the next commit on."""
        if max_tasks < 1 or not retention_s > 0:
            raise ValueError(f"max_tasks must be >= 1 and retention_s > 0, got {max_tasks} and {retention_s}")
        with self._lock:
            self.max_tasks, self.retention_s = max_tasks, float(retention_s)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every row recorded so far is committed (or dropped because the journal turned off, or
        kept in memory while it is suspended).

        Returns False if that took longer than ``timeout_s`` seconds.
        """
        with self._queue:
            target = self._recorded
            if self._committed >= target:
                return True
            self._flush_wanted = True
            self._queue.notify_all()
            return self._queue.wait_for(lambda: self._committed >= target, timeout=timeout_s)

    def close(self) -> None:
        """Commit what is queued and release the file. Later calls behave as on a disabled journal."""
        with self._queue:
            self._stopping = True
            self._queue.notify_all()
            writer = self._writer
        if writer is not None:
            writer.join()
        self._write_queued()  # nothing left unless the writer thread ended early
        with self._lock, self._read_lock:
            for conn in (self._conn, self._reader):
                if conn is not None:
                    with contextlib.suppress(sqlite3.Error):  # a broken connection has nothing left to save
                        conn.close()
            self._conn = self._reader = None
            if self._disabled_reason is None:
                self._disabled_reason = "closed"

    # -- Journal protocol --------------------------------------------------------------------------

    def lookup(self, task_id: TaskId) -> Answered | None:
        """The answer recorded for ``task_id`` within the retention window, or None (also when disabled)."""
        key = (task_id.problem_id, task_id.iteration_id)
        oldest = self._clock() - self.retention_s
        with self._queue:
            queued = self._pending.get(key) or self._writing.get(key)
            if queued is None and hash(key) not in self._keys:
                return None  # never recorded (or pruned since the last rebuild of the key set)
        row: tuple[Any, ...] | None
        if queued is not None:
            # Queued rows answer as their committed copies will.
            if self._disabled_reason is not None or queued[7] < oldest:
                return None
            row = (*queued[2:7], queued[8])  # as SELECT_ONE reads it: no recorded_at
        else:
            # Not queued now: committed before (a batch leaves _writing only once committed), or never recorded.
            failure: sqlite3.Error | None = None
            with self._read_lock:
                if self._reader is None:
                    return None
                try:
                    row = self._reader.execute(SELECT_ONE, (task_id.problem_id, task_id.iteration_id, oldest)).fetchone()
                except sqlite3.Error as exc:
                    failure = exc
            if failure is not None:
                if not transient(failure):  # a read that fails for a while (I/O) is only this lookup's miss
                    with self._lock:
                        self._disable("lookup", failure)
                return None
        if row is None:
            return None
        return answered_from_row(task_id, row)

    def record(self, output: TaskOutput, inputs_fingerprint: str | None = None) -> None:
        """Queue ``output`` for the next commit (replacing an earlier answer to the same task). Never raises.

        ``inputs_fingerprint`` names the inputs it answers; without one the row is never replayed.

        The outcome of a measurement (a ``tracker`` output, or an error the measurement raised: timeout,
        worker crash, refused model) is committed before this returns, so it is on disk before it is
        published: a measurement cannot be repeated identically. Other outputs (no_model, onnx_hw_only,
        error: recomputed identically from the same inputs) return at once; they are committed, with the
        pruning of old rows, within about ``commit_interval_s``. ``lookup`` finds them meanwhile.
        """
        try:
            # The text that is published, so that a replay publishes the very same bytes.
            extra_text = output.extra_data_bytes().decode("utf-8")
            row: Row = (
                output.task_id.problem_id,
                output.task_id.iteration_id,
                float(output.carbon_g),
                float(output.energy_kwh),
                float(output.grid_ci_g_per_kwh),
                extra_text,
                int(output.node_error),
                self._clock(),
                inputs_fingerprint,
            )
        except (TypeError, ValueError, RecursionError) as exc:
            log.warning("journal_record_skipped", task_id=str(output.task_id), error=str(exc))
            return
        key = (row[0], row[1])
        with self._queue:
            if self._disabled_reason is not None or self._stopping:
                return
            wake = not self._pending  # else the writer is already due to commit the queue
            self._pending.pop(key, None)  # a new answer to the same task goes to the end, as its new row
            self._pending[key] = row
            if self._suspension.active and len(self._pending) > MAX_BACKLOG_ROWS:
                dropped = next(iter(self._pending))
                del self._pending[dropped]
                self._suspension.dropped(dropped)
            self._keys.add(hash(key))
            self._recorded += 1
            if self._writer is None:
                self._writer = start_writer(self)
            if wake:
                self._queue.notify_all()
        if not self._suspension.active and _from_a_measurement(output) and not self.flush(timeout_s=MEASURED_COMMIT_TIMEOUT_S):
            log.warning("journal_commit_slow", task_id=str(output.task_id), timeout_s=MEASURED_COMMIT_TIMEOUT_S)

    # -- writing -----------------------------------------------------------------------------------

    def _next_batch(self) -> tuple[dict[Key, Row], int] | None:
        """The queued rows, once due (at once after an idle spell, else ``commit_interval_s`` after the
        last commit), moved to ``_writing``, with the number of the last record among them; ({}, 0)
        after ``_IDLE_WAKE_S`` with nothing queued; None when the journal stops. Writer thread only."""
        with self._queue:
            while True:
                if self._pending:
                    if self._suspension.active and not self._stopping:
                        due = self._suspension.retry_at_s - time.monotonic()  # a suspended journal retries on its clock
                    else:
                        due = self._last_commit_s + self.commit_interval_s - time.monotonic()
                        due = 0.0 if self._flush_wanted or self._stopping else due
                    if due <= 0:
                        return self._take_queued()
                    self._queue.wait(due)
                elif self._stopping or self._disabled_reason is not None:
                    return None
                elif not self._queue.wait(_IDLE_WAKE_S) and not self._pending:
                    return {}, 0

    def _take_queued(self) -> tuple[dict[Key, Row], int]:
        """Move the queued rows to ``_writing``; the caller holds ``_queue``."""
        batch, self._pending = self._pending, {}
        self._writing = {**self._writing, **batch}
        self._flush_wanted = False
        return batch, self._recorded

    def _commit(self, batch: dict[Key, Row], upto: int) -> None:
        """Write ``batch`` and prune in one transaction; then lookups read it from the file and flush() returns."""
        with self._lock:
            if self._conn is not None:
                now = self._clock()
                try:
                    with self._conn:  # one transaction: the rows and the pruning
                        self._conn.execute("BEGIN IMMEDIATE")
                        self._conn.executemany(INSERT, batch.values())
                        self._prune(now)
                except Exception as exc:  # sqlite3.Error, or anything else
                    if transient(exc):
                        self._suspend(batch, upto, exc)
                        return
                    self._disable("record", exc)
            with self._queue:
                if self._suspension.active:
                    self._resumed(len(batch))
                for key, row in batch.items():
                    if self._writing.get(key) is row:
                        del self._writing[key]
                self._committed = max(self._committed, upto)
                self._last_commit_s = time.monotonic()
                self._queue.notify_all()
            if self._conn is not None and len(self._keys) > self.max_tasks + max(1000, self.max_tasks // 4):
                try:
                    self._load_keys()  # forget pruned rows: O(max_tasks) once per max_tasks / 4 rows or more
                except Exception as exc:
                    self._disable("record", exc)

    def _write_queued(self) -> None:
        """Commit whatever is queued now, in this thread (close, and at interpreter exit)."""
        with self._queue:
            batch, upto = self._take_queued()
        if batch:
            self._commit(batch, upto)

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

    def _load_keys(self) -> None:
        """Rebuild the key set from the file and the queue; the caller holds ``_lock``."""
        assert self._conn is not None
        keys = {hash(key) for key in self._conn.execute("SELECT problem_id, iteration_id FROM answered")}
        with self._queue:
            keys.update(hash(key) for key in self._pending)
            keys.update(hash(key) for key in self._writing)
            self._keys = keys

    def __len__(self) -> int:
        """Rows currently kept (0 when disabled); commits what is queued first."""
        self.flush()
        failure: sqlite3.Error | None = None
        with self._read_lock:
            if self._reader is None:
                return 0
            try:
                count = int(self._reader.execute("SELECT COUNT(*) FROM answered").fetchone()[0])
            except sqlite3.Error as exc:
                failure = exc
        if failure is not None:
            with self._lock:
                self._disable("count", failure)
            return 0
        return count


def _from_a_measurement(output: TaskOutput) -> bool:
    """Whether ``output`` is the outcome of a measurement (not recomputable identically from the inputs)."""
    return output.mode == "tracker" or "error_kind" in output.extra_data
