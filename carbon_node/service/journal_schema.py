"""The journal file's table, its migration, and the conversion of a row to an :class:`~carbon_node.core.Answered`.

One table, ``answered``: one row per task id (``problem_id``, ``iteration_id``), holding the three
published doubles, the published ``extra_data`` JSON text, whether NODE_ERROR was published, when it
was recorded (seconds since the epoch) and ``inputs_fingerprint``, the fingerprint of the inputs it
answered (:mod:`carbon_node.bus.fingerprint`).

Schema versions (``PRAGMA user_version``):

- 0: the first schema, without ``inputs_fingerprint``. Opening such a file adds the column (``ALTER
  TABLE ... ADD COLUMN``: SQLite changes only the table's definition, no row is rewritten) and sets
  the version to 1. The rows already there keep a NULL fingerprint: their inputs are unknown, so they
  are never replayed; when such a task id comes again it is computed and its row replaced.
- 1: with ``inputs_fingerprint`` (NULL allowed, for the migrated rows).

A file from a newer version (a downgrade) is used as it is when it has the columns this code reads.
"""

from __future__ import annotations

import json
import math
import sqlite3
from typing import Any

import structlog

from carbon_node.core import Answered, TaskId, TaskOutput

__all__ = ["INSERT", "SCHEMA_VERSION", "Key", "Row", "answered_from_row", "create_or_migrate"]

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 1

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
    inputs_fingerprint TEXT,
    UNIQUE (problem_id, iteration_id)
);
CREATE INDEX IF NOT EXISTS answered_recorded_at ON answered (recorded_at);
"""

INSERT = (
    "INSERT OR REPLACE INTO answered (problem_id, iteration_id, carbon_g, energy_kwh,"
    " grid_ci_g_per_kwh, extra_data, node_error, recorded_at, inputs_fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

SELECT_ONE = (
    "SELECT carbon_g, energy_kwh, grid_ci_g_per_kwh, extra_data, node_error, inputs_fingerprint FROM answered"
    " WHERE problem_id = ? AND iteration_id = ? AND recorded_at >= ?"
)

Key = tuple[int, int]
Row = tuple[int, int, float, float, float, str, int, float, "str | None"]
"""One row as inserted: problem_id, iteration_id, carbon_g, energy_kwh, grid_ci_g_per_kwh, extra_data,
node_error, recorded_at, inputs_fingerprint."""


def create_or_migrate(conn: sqlite3.Connection) -> None:
    """Create the table in a new file, or bring an older one to :data:`SCHEMA_VERSION`. Raises sqlite3.Error."""
    conn.executescript(_SCHEMA)
    columns = {str(row[1]) for row in conn.execute("PRAGMA table_info(answered)")}
    if "inputs_fingerprint" not in columns:
        try:
            conn.execute("ALTER TABLE answered ADD COLUMN inputs_fingerprint TEXT")
        except sqlite3.OperationalError as exc:  # another node on the same file migrated it meanwhile
            if "duplicate column" not in str(exc):
                raise
        rows = int(conn.execute("SELECT COUNT(*) FROM answered").fetchone()[0])
        log.info(
            "journal_migrated",
            from_version=0,
            to_version=SCHEMA_VERSION,
            rows_without_fingerprint=rows,
            consequence="these tasks are computed again if their ids come back",
        )
    if int(conn.execute("PRAGMA user_version").fetchone()[0]) < SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _from_sql(value: float | None) -> float:
    # SQLite has no NaN: it stores one as NULL. Nothing else is NULL in these columns.
    return math.nan if value is None else float(value)


def answered_from_row(task_id: TaskId, row: tuple[Any, ...]) -> Answered | None:
    """The :class:`Answered` of a :data:`SELECT_ONE` row (the columns of a :data:`Row` from carbon_g on, less recorded_at).

    None when its ``extra_data`` is not readable JSON (logged): the task is then computed again.
    """
    carbon_g, energy_kwh, grid_ci, extra_text, node_error, fingerprint = row
    try:
        extra: dict[str, Any] = json.loads(extra_text)
    except (TypeError, ValueError) as exc:
        log.warning("journal_row_unreadable", task_id=str(task_id), error=str(exc))
        return None
    output = TaskOutput(
        task_id=task_id,
        carbon_g=_from_sql(carbon_g),
        energy_kwh=_from_sql(energy_kwh),
        grid_ci_g_per_kwh=_from_sql(grid_ci),
        extra_data=extra,
        node_error=bool(node_error),
    )
    return Answered(output, fingerprint if isinstance(fingerprint, str) else None)
