"""Specification of the answered-task journal (carbon_node.service.journal)."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from carbon_node.core import Answered, Journal, TaskId, TaskOutput
from carbon_node.service.journal import SqliteJournal
from carbon_node.service.journal_suspension import MAX_RETRY_S, Suspension, transient

DAY_S = 86400.0


class FakeClock:
    """Seconds since the epoch, moved by hand."""

    def __init__(self, now_s: float = 1_800_000_000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def output(problem_id: int, iteration_id: int = 1, **overrides: object) -> TaskOutput:
    values: dict[str, object] = {
        "carbon_g": 0.1 + 0.2,  # not representable as a short decimal: must come back bit-identical
        "energy_kwh": 1.2345678901234567e-9,
        "grid_ci_g_per_kwh": 475.0,
        "extra_data": {"num_outputs": 2, "model_restrains": ["m", "é"], "mode": "tracker", "nested": {"x": [1.5, None]}},
    }
    values.update(overrides)
    return TaskOutput(TaskId(problem_id, iteration_id), **values)  # type: ignore[arg-type]


def found(journal: Journal, task_id: TaskId) -> TaskOutput | None:
    """The output the journal holds for ``task_id`` (whatever its inputs' fingerprint), or None."""
    answered = journal.lookup(task_id)
    return answered.output if answered is not None else None


def journal_at(
    tmp_path: Path, clock: FakeClock | None = None, max_tasks: int = 1000, retention_s: float = DAY_S
) -> SqliteJournal:
    return SqliteJournal(tmp_path / "journal.sqlite3", max_tasks=max_tasks, retention_s=retention_s, clock=clock or FakeClock())


def test_it_implements_the_core_journal_protocol(tmp_path: Path) -> None:
    journal: Journal = journal_at(tmp_path)
    assert found(journal, TaskId(1, 1)) is None


def test_a_recorded_output_comes_back_with_identical_values_and_extra_data_bytes(tmp_path: Path) -> None:
    journal = journal_at(tmp_path)
    original = output(7, 3)
    journal.record(original)

    replay = found(journal, TaskId(7, 3))

    assert replay is not None
    assert replay == original
    assert replay.extra_data_bytes() == original.extra_data_bytes()
    for name in ("carbon_g", "energy_kwh", "grid_ci_g_per_kwh"):
        assert getattr(replay, name).hex() == getattr(original, name).hex()


def test_an_unknown_task_is_not_found(tmp_path: Path) -> None:
    journal = journal_at(tmp_path)
    journal.record(output(1, 1))
    assert found(journal, TaskId(1, 2)) is None
    assert found(journal, TaskId(2, 1)) is None


def test_answers_survive_a_new_journal_on_the_same_file(tmp_path: Path) -> None:
    first = journal_at(tmp_path)
    first.record(output(5, 1))
    first.close()

    assert found(journal_at(tmp_path), TaskId(5, 1)) == output(5, 1)


def test_answers_survive_a_process_that_never_closed_the_journal(tmp_path: Path) -> None:
    # A child writes and exits without closing, as a node killed with SIGKILL some time after publishing:
    # the writer thread commits on its own within the commit interval (0.1 s), closed or not.
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        child = journal_at(tmp_path)
        child.record(output(9, 9))
        time.sleep(1.0)
        os._exit(0)
    os.waitpid(pid, 0)

    assert found(journal_at(tmp_path), TaskId(9, 9)) == output(9, 9)


def test_a_measured_answer_is_on_disk_when_record_returns(tmp_path: Path) -> None:
    # Killed right after recording (before publishing, in the node): the measurement is not lost, so a
    # replay after the restart publishes the very same values.
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        child = journal_at(tmp_path)
        child.record(output(8, 8))  # mode "tracker"
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)

    assert found(journal_at(tmp_path), TaskId(8, 8)) == output(8, 8)


def test_a_burst_of_answers_is_committed_in_batches_and_found_before_and_after(tmp_path: Path) -> None:
    journal = journal_at(tmp_path, max_tasks=10_000)
    for problem_id in range(1, 2001):
        journal.record(output(problem_id))
        assert found(journal, TaskId(problem_id, 1)) == output(problem_id)  # queued: found at once
    assert journal.flush(timeout_s=30)
    journal.close()

    reopened = journal_at(tmp_path, max_tasks=10_000)
    assert len(reopened) == 2000
    assert all(found(reopened, TaskId(p, 1)) == output(p) for p in (1, 1000, 2000))


def test_the_in_memory_key_set_forgets_pruned_rows_and_lookups_stay_exact(tmp_path: Path) -> None:
    journal = journal_at(tmp_path, max_tasks=10)
    for problem_id in range(1, 5001):
        journal.record(output(problem_id))
    assert len(journal) == 10
    assert len(journal._keys) <= 10 + 1000 + 1  # rebuilt from the file once it outgrew max_tasks
    assert found(journal, TaskId(4990, 1)) is None
    assert all(found(journal, TaskId(p, 1)) == output(p) for p in range(4991, 5001))


def test_close_commits_what_is_queued(tmp_path: Path) -> None:
    journal = journal_at(tmp_path)
    journal.record(output(1))  # committed at once: the journal was idle
    journal.record(output(2))  # queued behind the first commit
    journal.close()
    assert found(journal, TaskId(2, 1)) is None  # closed
    assert found(journal_at(tmp_path), TaskId(2, 1)) == output(2)


def test_error_outputs_and_the_node_error_flag_round_trip(tmp_path: Path) -> None:
    journal = journal_at(tmp_path)
    failed = output(
        3,
        carbon_g=0.0,
        energy_kwh=0.0,
        grid_ci_g_per_kwh=0.0,
        node_error=True,
        extra_data={"num_outputs": 1, "model_restrains": ["x"], "mode": "error", "error": "boom"},
    )
    journal.record(failed)
    replay = found(journal, TaskId(3, 1))
    assert replay is not None and replay.node_error and replay == failed


def test_non_finite_doubles_come_back_non_finite(tmp_path: Path) -> None:
    journal = journal_at(tmp_path)
    journal.record(output(4, carbon_g=math.nan, energy_kwh=math.inf, grid_ci_g_per_kwh=-math.inf))
    replay = found(journal, TaskId(4, 1))
    assert replay is not None
    assert math.isnan(replay.carbon_g) and replay.energy_kwh == math.inf and replay.grid_ci_g_per_kwh == -math.inf


def test_recording_a_task_again_keeps_the_latest_answer_only(tmp_path: Path) -> None:
    journal = journal_at(tmp_path)
    journal.record(output(2, carbon_g=1.0))
    journal.record(output(2, carbon_g=2.0))
    replay = found(journal, TaskId(2, 1))
    assert replay is not None and replay.carbon_g == 2.0
    assert len(journal) == 1


def test_only_the_newest_max_tasks_answers_are_kept(tmp_path: Path) -> None:
    journal = journal_at(tmp_path, max_tasks=10)
    for problem_id in range(1, 26):
        journal.record(output(problem_id))

    assert len(journal) == 10
    assert found(journal, TaskId(15, 1)) is None
    assert all(found(journal, TaskId(p, 1)) is not None for p in range(16, 26))


def test_answers_older_than_the_retention_are_not_replayed(tmp_path: Path) -> None:
    clock = FakeClock()
    journal = journal_at(tmp_path, clock, retention_s=DAY_S)
    journal.record(output(1))
    clock.now_s += DAY_S - 1
    assert found(journal, TaskId(1, 1)) is not None

    clock.now_s += 2
    assert found(journal, TaskId(1, 1)) is None


def test_a_write_prunes_the_answers_older_than_the_retention(tmp_path: Path) -> None:
    clock = FakeClock()
    journal = journal_at(tmp_path, clock, retention_s=60.0)
    journal.record(output(1))
    journal.record(output(2))
    clock.now_s += 61
    journal.record(output(3))

    assert len(journal) == 1
    assert found(journal, TaskId(3, 1)) is not None


def test_opening_a_journal_prunes_expired_answers(tmp_path: Path) -> None:
    clock = FakeClock()
    journal_at(tmp_path, clock, retention_s=60.0).record(output(1))
    clock.now_s += 120
    assert len(journal_at(tmp_path, clock, retention_s=60.0)) == 0


def test_a_corrupt_file_disables_the_journal_with_one_warning(tmp_path: Path) -> None:
    (tmp_path / "journal.sqlite3").write_bytes(b"this is not a database" * 100)
    with capture_logs() as logs:
        journal = journal_at(tmp_path)
        journal.record(output(1))
        assert found(journal, TaskId(1, 1)) is None
        journal.record(output(2))

    assert not journal.enabled
    warnings = [entry for entry in logs if entry["event"] == "journal_disabled"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"


def test_a_journal_under_a_path_that_cannot_be_a_directory_is_disabled(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the state directory should be")
    with capture_logs() as logs:
        journal = SqliteJournal(blocker / "journal.sqlite3", max_tasks=10, retention_s=60.0)
        journal.record(output(1))
        assert found(journal, TaskId(1, 1)) is None
    assert not journal.enabled
    assert [entry["event"] for entry in logs] == ["journal_disabled"]
    assert blocker.read_text() == "a file where the state directory should be"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_a_read_only_directory_disables_the_journal(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        journal = SqliteJournal(locked / "journal.sqlite3", max_tasks=10, retention_s=60.0)
        journal.record(output(1))
        assert not journal.enabled
        assert found(journal, TaskId(1, 1)) is None
    finally:
        locked.chmod(0o700)


def _read_only(tmp_path: Path) -> sqlite3.Connection:
    """A connection to the journal's file that cannot write, as after a remount read-only or a full disk."""
    return sqlite3.connect(
        f"file:{tmp_path / 'journal.sqlite3'}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
    )


def _until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_a_journal_file_that_cannot_be_written_suspends_keeps_the_answers_and_resumes_when_it_can(tmp_path: Path) -> None:
    journal = journal_at(tmp_path)
    journal.record(output(1))
    assert journal.flush(5.0)
    writable = journal._conn
    journal._conn = _read_only(tmp_path)
    with capture_logs() as logs:
        journal.record(output(2))
        journal.record(output(3))
        journal.flush()  # the writer thread commits them, finds the file read-only, and keeps them queued
        assert journal.enabled and journal.suspended_reason is not None
        assert "readonly" in journal.suspended_reason
        # Meanwhile every answer is still found: 1 from the file, 2 and 3 from memory.
        assert all(found(journal, TaskId(n, 1)) is not None for n in (1, 2, 3))
        journal._conn = writable  # space freed, the file system remounted read-write
        _until(lambda: journal.suspended_reason is None)
    events = [entry["event"] for entry in logs]
    assert events == ["journal_suspended", "journal_resumed"]
    assert logs[1]["rows_written"] == 2
    assert len(journal) == 3  # in the file now
    journal.close()
    reopened = journal_at(tmp_path)
    assert all(found(reopened, TaskId(n, 1)) is not None for n in (1, 2, 3))


def test_a_suspended_journal_retries_with_a_doubling_backoff() -> None:
    suspension = Suspension()
    error = sqlite3.OperationalError("database or disk is full")
    assert suspension.failed(error, 100.0) is True
    assert suspension.retry_at_s == 101.0
    assert suspension.failed(error, 101.0) is False
    assert suspension.retry_at_s == 103.0
    for now in range(10):
        suspension.failed(error, 200.0 + now)
    assert suspension.retry_in_s == MAX_RETRY_S


@pytest.mark.parametrize(
    ("error", "passes"),
    [
        (sqlite3.OperationalError("database or disk is full"), True),
        (sqlite3.OperationalError("disk I/O error"), True),
        (sqlite3.OperationalError("database is locked"), True),
        (OSError(28, "No space left on device"), True),
        (sqlite3.DatabaseError("file is not a database"), False),
        (sqlite3.DatabaseError("database disk image is malformed"), False),
    ],
)
def test_which_failures_pass(error: BaseException, passes: bool) -> None:
    assert transient(error) is passes


def test_a_suspended_journal_keeps_a_bounded_backlog_and_names_the_tasks_it_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("carbon_node.service.journal.MAX_BACKLOG_ROWS", 3)
    journal = journal_at(tmp_path)
    journal.record(output(1))
    assert journal.flush(5.0)
    writable, journal._conn = journal._conn, _read_only(tmp_path)
    with capture_logs() as logs:
        journal.record(output(2))
        journal.flush()
        _until(lambda: journal.suspended_reason is not None)
        for n in range(3, 7):
            journal.record(output(n))
        journal._conn = writable
        _until(lambda: journal.suspended_reason is None)
    gap = next(entry for entry in logs if entry["event"] == "journal_gap")
    assert gap["lost"] == 2 and gap["task_ids"] == ["2.1", "3.1"]
    assert [found(journal, TaskId(n, 1)) is not None for n in range(1, 7)] == [True, False, False, True, True, True]


def test_a_corrupt_journal_file_still_turns_the_journal_off(tmp_path: Path) -> None:
    journal = journal_at(tmp_path)
    journal.record(output(1))
    assert journal.flush(5.0)

    class Corrupt:
        def __getattr__(self, name: str) -> object:
            raise sqlite3.DatabaseError("database disk image is malformed")

        def __enter__(self) -> None:
            raise sqlite3.DatabaseError("database disk image is malformed")

        def __exit__(self, *_: object) -> None:
            return None

    journal._conn = Corrupt()  # type: ignore[assignment]
    with capture_logs() as logs:
        journal.record(output(2))
        journal.flush()
    assert not journal.enabled
    assert [entry["event"] for entry in logs] == ["journal_disabled"]


def test_concurrent_threads_record_and_look_up_without_losing_answers(tmp_path: Path) -> None:
    journal = journal_at(tmp_path, max_tasks=10_000)
    errors: list[BaseException] = []

    def worker(thread_index: int) -> None:
        try:
            for iteration in range(1, 101):
                journal.record(output(thread_index, iteration, carbon_g=float(thread_index * 1000 + iteration)))
                replay = found(journal, TaskId(thread_index, iteration))
                assert replay is not None and replay.carbon_g == float(thread_index * 1000 + iteration)
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors
    assert journal.enabled
    assert len(journal) == 8 * 100


def test_invalid_bounds_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SqliteJournal(tmp_path / "j", max_tasks=0, retention_s=1.0)
    with pytest.raises(ValueError):
        SqliteJournal(tmp_path / "j", max_tasks=1, retention_s=0.0)
    with pytest.raises(ValueError):
        SqliteJournal(tmp_path / "j", max_tasks=1, retention_s=1.0, commit_interval_s=-1.0)


# -- replay identity: the inputs' fingerprint, and files from before it ---------------------------------

_SCHEMA_V0 = """
CREATE TABLE answered (
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
CREATE INDEX answered_recorded_at ON answered (recorded_at);
"""
"""The journal's first schema, as released: no inputs_fingerprint column."""


def test_a_row_keeps_the_fingerprint_of_the_inputs_it_answered(tmp_path: Path) -> None:
    journal = journal_at(tmp_path)
    journal.record(output(3, 1), "v1:aa")
    assert journal.lookup(TaskId(3, 1)) == Answered(output(3, 1), "v1:aa")  # queued
    journal.close()
    assert journal_at(tmp_path).lookup(TaskId(3, 1)) == Answered(output(3, 1), "v1:aa")  # from the file


def test_a_new_answer_to_the_same_task_id_replaces_the_row_and_its_fingerprint(tmp_path: Path) -> None:
    journal = journal_at(tmp_path)
    journal.record(output(3, 1), "v1:aa")
    journal.flush()
    journal.record(output(3, 1, carbon_g=7.0), "v1:bb")
    journal.close()
    reopened = journal_at(tmp_path)
    assert reopened.lookup(TaskId(3, 1)) == Answered(output(3, 1, carbon_g=7.0), "v1:bb")
    assert len(reopened) == 1


def test_a_journal_file_of_the_first_schema_opens_and_its_rows_have_no_fingerprint(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(_SCHEMA_V0)
        conn.execute(
            "INSERT INTO answered (problem_id, iteration_id, carbon_g, energy_kwh, grid_ci_g_per_kwh, extra_data,"
            " node_error, recorded_at) VALUES (1, 1, 0.5, 0.25, 400.0, ?, 0, ?)",
            ('{"num_outputs": 1, "model_restrains": ["gpt2"], "mode": "tracker"}', FakeClock()()),
        )
    conn.close()

    with capture_logs() as logs:
        journal = journal_at(tmp_path)
    assert journal.enabled, journal.disabled_reason
    old = journal.lookup(TaskId(1, 1))
    assert old is not None and old.inputs_fingerprint is None  # unknown inputs: never replayed
    assert old.output.carbon_g == 0.5 and old.output.mode == "tracker"
    assert [(e["event"], e["rows_without_fingerprint"]) for e in logs if e["event"] == "journal_migrated"] == [
        ("journal_migrated", 1)
    ]

    journal.record(output(1, 1, carbon_g=2.0), "v1:new")  # the task computed anew replaces the old row
    journal.record(output(2, 1), "v1:two")
    journal.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        rows = conn.execute("SELECT problem_id, carbon_g, inputs_fingerprint FROM answered ORDER BY problem_id").fetchall()
    conn.close()
    assert rows == [(1, 2.0, "v1:new"), (2, 0.1 + 0.2, "v1:two")]
    with capture_logs() as logs:
        journal_at(tmp_path).close()
    assert not [e for e in logs if e["event"] == "journal_migrated"]  # migrated once
