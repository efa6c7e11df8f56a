"""``carbon-node results``: the answered tasks of a journal, read-only, newest first, as a table, CSV or JSON.

The flow: open the journal file read-only (:func:`read_answers`: a ``file:...?mode=ro`` URI with a busy
timeout) -> one ``SELECT`` of the columns that every journal has (extra columns are ignored) -> one
:class:`Answer` per row, its provenance taken from the stored ``extra_data`` JSON -> filters
(:class:`Query`: model, mode, since, limit) -> a format (:func:`format_answers`).

Reading never disturbs a running node: the node keeps its journal in WAL mode, where readers do not
block the writer nor wait for it, and this reader takes one snapshot with one statement. A journal in
another mode (a file not written by the node) is read the same way; one short statement holds its
shared lock. Reading leaves the directory as it found it: SQLite needs the WAL's ``-wal`` and ``-shm``
files to read a WAL-mode file, and creates them (empty) beside it where they are absent, even
read-only. They are absent when no node has the journal open (a node that closes it removes them);
then nothing can change the file, and it is read ``immutable`` (no lock, no ``-shm``). Should a node
open the journal during that read, its ``-wal`` appears, and the read is made again through the WAL.
A missing or unreadable file raises :class:`JournalReadError` with one line that says which file and why.

The published doubles of answers without figures (``no_model``, ``error``) are zeros on the wire; here
they are empty (None), so that a column of figures can be summed or averaged as it stands.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from carbon_node.core import CarbonNodeError
from carbon_node.engine.paths import FAILED_PREFIX

__all__ = [
    "FIELDS",
    "FORMATS",
    "MODES_WITH_FIGURES",
    "PROVENANCE_KEYS",
    "Answer",
    "JournalReadError",
    "Query",
    "format_answers",
    "journal_path",
    "parse_since",
    "read_answers",
]

JOURNAL_FILE = "journal.sqlite3"
"""The journal's file name in the node's ``state_dir`` (see :mod:`carbon_node.service.daemon`)."""

BUSY_TIMEOUT_S = 2.0
"""Seconds the read waits for a lock (only a journal not in WAL mode, or a checkpoint in progress, makes it wait)."""

MODES_WITH_FIGURES = ("tracker", "onnx_hw_only")
"""Modes whose published doubles are figures (the others publish zeros)."""

FORMATS = ("table", "csv", "json")

_SELECT = (
    "SELECT problem_id, iteration_id, carbon_g, energy_kwh, grid_ci_g_per_kwh, extra_data, node_error, recorded_at"
    " FROM answered WHERE recorded_at >= ? ORDER BY recorded_at DESC, seq DESC LIMIT ?"
)

PROVENANCE_KEYS = (
    "measured_per_inference",
    "hw_latency_per_inference",
    "window_s",
    "forward_passes",
    "measured_at",
    "device",
)
"""The ``extra_data`` keys an :class:`Answer` keeps beyond its fields (what the report reads): keeping
the whole object of 100 000 answers would take about half a GB."""


class JournalReadError(CarbonNodeError):
    """The journal file is missing, is not a SQLite file, or is not a carbon-node journal."""


@dataclass(frozen=True)
class Answer:
    """One answered task as the journal holds it, with the provenance the report needs.

    Doubles are per inference (``carbon_g`` gCO2e, ``energy_kwh`` kWh) as published, None where the
    answer has no figures. ``model`` is the first of ``model_restrains`` (the task's model), ``error``
    the message of an error answer.
    """

    task_id: str
    answered_at_s: float
    """Seconds since the epoch (UTC) when the node recorded the answer."""
    model: str
    mode: str
    carbon_g: float | None
    energy_kwh: float | None
    grid_ci_g_per_kwh: float | None
    grid_ci_source: str | None
    grid_ci_zone: str | None
    power_source: str | None
    scaling: str | None
    cached: bool | None
    error: str | None
    node_error: bool
    extra: dict[str, Any] = dataclasses.field(repr=False, compare=False)
    """The :data:`PROVENANCE_KEYS` of the published ``extra_data`` that it has."""

    @property
    def answered_at(self) -> str:
        """ISO 8601 UTC time of the answer, to the second."""
        return datetime.fromtimestamp(self.answered_at_s, UTC).isoformat(timespec="seconds")

    @property
    def has_figures(self) -> bool:
        return self.mode in MODES_WITH_FIGURES and self.carbon_g is not None

    def record(self) -> dict[str, Any]:
        """The answer as one flat record (the CSV row and the JSON object of ``results``)."""
        return {
            "task_id": self.task_id,
            "answered_at": self.answered_at,
            "model": self.model,
            "mode": self.mode,
            "carbon_g_per_inference": self.carbon_g,
            "energy_kwh_per_inference": self.energy_kwh,
            "grid_ci_g_per_kwh": self.grid_ci_g_per_kwh,
            "grid_ci_source": self.grid_ci_source,
            "grid_ci_zone": self.grid_ci_zone,
            "power_source": self.power_source,
            "scaling": self.scaling,
            "cached": self.cached,
            "error": self.error,
        }


FIELDS = tuple(Answer("", 0.0, "", "", None, None, None, None, None, None, None, None, None, False, {}).record())
"""Names of the fields of ``results`` (CSV header, JSON keys), in order."""


@dataclass(frozen=True)
class Query:
    """Which answers to show: ``model`` (exact name, or a substring of it), ``mode``, answered at or
    after ``since_s`` (seconds since the epoch), at most ``limit`` (newest first; None: all)."""

    model: str | None = None
    mode: str | None = None
    since_s: float | None = None
    limit: int | None = None

    def select(self, answers: Iterable[Answer]) -> list[Answer]:
        chosen = [
            answer
            for answer in answers
            if (self.model is None or self.model == answer.model or self.model in answer.model)
            and (self.mode is None or answer.mode == self.mode)
            and (self.since_s is None or answer.answered_at_s >= self.since_s)
        ]
        return chosen if self.limit is None else chosen[: self.limit]


def journal_path(state_dir: Path) -> Path:
    """Where the node with this ``state_dir`` keeps its journal."""
    return Path(state_dir) / JOURNAL_FILE


def _figure(value: Any) -> float | None:
    """A stored double as a float, None for SQL NULL (the journal stores NaN as NULL) or a non-number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _answer(row: Sequence[Any]) -> Answer:
    problem_id, iteration_id, carbon_g, energy_kwh, grid_ci, extra_text, node_error, recorded_at = row
    try:
        extra = json.loads(extra_text)
    except (TypeError, ValueError):
        extra = None
    if not isinstance(extra, dict):
        extra = {"mode": "error", "error": f"unreadable extra_data in the journal: {str(extra_text)[:80]!r}"}
    mode = str(extra.get("mode", ""))
    figures = mode in MODES_WITH_FIGURES
    restrains = extra.get("model_restrains")
    model = str(restrains[0]) if isinstance(restrains, list) and restrains and restrains[0] is not None else ""
    cached = extra.get("cached")
    return Answer(
        task_id=f"{problem_id}.{iteration_id}",
        answered_at_s=float(recorded_at),
        model=model,
        mode=mode,
        carbon_g=_figure(carbon_g) if figures else None,
        energy_kwh=_figure(energy_kwh) if figures else None,
        grid_ci_g_per_kwh=_figure(grid_ci) if figures else None,
        grid_ci_source=_text(extra.get("grid_ci_source")),
        grid_ci_zone=_text(extra.get("grid_ci_zone")),
        power_source=_text(extra.get("power_source")),
        scaling=_text(extra.get("scaling")),
        cached=cached if isinstance(cached, bool) else None,
        error=_text(extra.get("error")) if mode == "error" or node_error else None,
        node_error=bool(node_error),
        extra={key: extra[key] for key in PROVENANCE_KEYS if key in extra},
    )


def read_answers(path: Path, query: Query | None = None) -> list[Answer]:
    """The answers in the journal at ``path`` that ``query`` selects (default: all), newest first; the
    file is opened read-only. The time bound, and the limit when nothing else filters, are applied by
    SQLite (the ``recorded_at`` index), so that ``--since`` and ``--limit`` read only what they show.

    Raises :class:`JournalReadError` when the file is missing, not a SQLite database, or has no
    ``answered`` table.
    """
    path = Path(path)
    if not path.exists():
        raise JournalReadError(f"no journal at {path} (the node creates it in its state_dir; --journal PATH reads another file)")
    if not path.is_file():
        raise JournalReadError(f"{path} is not a file (give the journal file, {JOURNAL_FILE}, with --journal)")
    query = query or Query()
    wal = path.with_name(path.name + "-wal")
    unopened = not wal.exists()
    answers = _select(path, query, immutable=unopened)
    if unopened and wal.exists():  # a node opened the journal while it was read: read through its WAL
        answers = _select(path, query, immutable=False)
    return answers


def _select(path: Path, query: Query, *, immutable: bool) -> list[Answer]:
    """One read-only ``SELECT`` of ``query`` (see :func:`read_answers`); ``immutable`` when no node has the
    file open, so that SQLite creates no ``-wal``/``-shm`` beside it."""
    uri = path.absolute().as_uri() + ("?mode=ro&immutable=1" if immutable else "?mode=ro")
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise JournalReadError(f"cannot open the journal {path}: {exc}") from None
    try:
        sql_limit = query.limit if query.limit is not None and query.model is None and query.mode is None else -1
        since_s = query.since_s if query.since_s is not None else -math.inf
        # Rows are decoded as they come (one raw row in memory at a time, not 100 000): the statement's
        # snapshot lasts the few seconds that takes, which in WAL mode does not hold the node up.
        return query.select(_answer(row) for row in conn.execute(_SELECT, (since_s, sql_limit)))
    except sqlite3.Error as exc:
        reason = "it has no table of answered tasks" if "no such table" in str(exc) or "no such column" in str(exc) else exc
        raise JournalReadError(f"{path} is not a readable carbon-node journal: {reason}") from None
    finally:
        conn.close()


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_since(text: str, now_s: float) -> float:
    """``--since``: an age (``30m``, ``2h``, ``7d``, ``1w``) or an ISO 8601 date or time (UTC unless it says
    otherwise), as seconds since the epoch. Raises ValueError with the accepted forms."""
    text = text.strip()
    match = _DURATION.match(text)
    if match:
        return now_s - float(match.group(1)) * _UNIT_S[match.group(2)]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"--since must be an age like 30m, 2h, 7d, 1w or an ISO date/time like 2026-01-31 or 2026-01-31T12:00, got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _short(text: str, width: int, *, keep_end: bool) -> str:
    """``text`` cut to ``width`` characters, keeping its end (the distinctive part of a path) or its start."""
    if len(text) <= width:
        return text
    return "..." + text[-(width - 3) :] if keep_end else text[: width - 3] + "..."


_TABLE_COLUMNS = (
    ("TASK", "task_id", 12),
    ("ANSWERED_AT (UTC)", "answered_at", 25),
    ("MODEL", "model", 32),
    ("MODE", "mode", 12),
    ("CARBON_G", "carbon_g_per_inference", 10),
    ("ENERGY_KWH", "energy_kwh_per_inference", 10),
    ("GRID_G/KWH", "grid_ci_g_per_kwh", 10),
    ("CI_SOURCE", "grid_ci_source", 16),
    ("POWER", "power_source", 12),
    ("SCALING", "scaling", 10),
    ("CACHED", "cached", 6),
    ("ERROR", "error", 70),
)


def _table(answers: Sequence[Answer]) -> str:
    rows = [[title for title, _, _ in _TABLE_COLUMNS]]
    for answer in answers:
        record = answer.record()
        if record["error"]:  # upstream's boilerplate start says nothing that the MODE column does not
            record["error"] = record["error"].removeprefix(FAILED_PREFIX)
        rows.append([_short(_cell(record[key]), width, keep_end=key == "model") for _, key, width in _TABLE_COLUMNS])
    widths = [max(len(row[i]) for row in rows) for i in range(len(_TABLE_COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append(f"{len(answers)} answer(s); per inference: carbon in gCO2e, energy in kWh; grid intensity in gCO2e/kWh")
    return "\n".join(lines)


def _csv_cell(value: Any) -> Any:
    # Booleans as JSON spells them; floats keep every digit (Python writes repr).
    return ("true" if value else "false") if isinstance(value, bool) else value


def format_answers(answers: Sequence[Answer], fmt: str) -> str:
    """``answers`` as ``table`` (aligned columns, long values shortened), ``csv`` (a header, then one row
    per answer; empty cells for None) or ``json`` (an array of objects; full precision)."""
    if fmt == "table":
        return _table(answers)
    if fmt == "json":
        return json.dumps([answer.record() for answer in answers], indent=2)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for answer in answers:
            writer.writerow({key: _csv_cell(value) for key, value in answer.record().items()})
        return buffer.getvalue().rstrip("\n")
    raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
