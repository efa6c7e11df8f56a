"""Liveness: a heartbeat file that the bus thread refreshes, and the check ``carbon-node health`` runs.

The node writes ``<state_dir>/heartbeat`` (its pid and start time, as JSON) when its bus starts, and
the bus thread refreshes the file's modification time at most every :data:`HEARTBEAT_INTERVAL_S`
seconds (one ``os.utime``; the thread wakes at least every second, so the file is never older than
about ``HEARTBEAT_INTERVAL_S + 1`` s while the bus thread runs). A graceful stop removes the file.

:func:`check_heartbeat` reads it: healthy when it is younger than ``max_age_s``; unhealthy when it is
missing (the node never started here, or stopped) or stale (the process is wedged, stopped with
SIGSTOP, killed, or its bus thread is stuck). Container health checks (``HEALTHCHECK``) run it.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

__all__ = ["DEFAULT_MAX_AGE_S", "HEARTBEAT_INTERVAL_S", "Health", "Heartbeat", "check_heartbeat", "heartbeat_path"]

log = structlog.get_logger(__name__)

HEARTBEAT_NAME = "heartbeat"
HEARTBEAT_INTERVAL_S = 2.0
"""Seconds between two refreshes of the heartbeat file by the bus thread."""

DEFAULT_MAX_AGE_S = 10.0
"""Seconds after which ``carbon-node health`` calls a heartbeat stale (several missed refreshes)."""


def heartbeat_path(state_dir: Path) -> Path:
    """Where the node of ``state_dir`` keeps its heartbeat."""
    return state_dir / HEARTBEAT_NAME


class Heartbeat:
    """The node's heartbeat file. :meth:`beat` is cheap and thread-safe; call it from the loop it vouches for."""

    def __init__(self, path: Path, interval_s: float = HEARTBEAT_INTERVAL_S) -> None:
        self.path = path
        self.interval_s = interval_s
        self._last = float("-inf")
        self._lock = threading.Lock()
        self._failed = False

    def start(self) -> None:
        """Write the file (pid, start time); raises OSError when the state directory is not writable."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "started_unix_s": round(time.time(), 3)}) + "\n")
        os.replace(tmp, self.path)
        self._last = time.monotonic()

    def note(self, **fields: object) -> None:
        """Rewrite the file with ``fields`` added (the node's role): a health check says them. Never raises."""
        try:
            current = json.loads(self.path.read_text())
            current = current if isinstance(current, dict) else {}
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps({**current, **fields}) + "\n")
            os.replace(tmp, self.path)
        except (OSError, ValueError) as exc:
            log.warning("heartbeat_note_failed", path=str(self.path), error=str(exc))

    def beat(self) -> None:
        """Refresh the file's modification time if the last refresh is ``interval_s`` old; never raises."""
        now = time.monotonic()
        if now - self._last < self.interval_s or not self._lock.acquire(blocking=False):
            return
        try:
            self._last = now
            os.utime(self.path)
            self._failed = False
        except OSError as exc:
            if not self._failed:  # log once per failure streak, not every interval
                log.warning("heartbeat_failed", path=str(self.path), error=exc.strerror or str(exc))
            self._failed = True
        finally:
            self._lock.release()

    def remove(self) -> None:
        """Delete the file (graceful stop): a health check then says the node is not running. Never raises
        (a state directory that turned read-only keeps a stale heartbeat, which reads as not running)."""
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("heartbeat_not_removed", path=str(self.path), error=exc.strerror or str(exc))


@dataclass(frozen=True)
class Health:
    """The outcome of a liveness check; ``message`` says why."""

    healthy: bool
    message: str
    age_s: float | None = None


def check_heartbeat(path: Path, max_age_s: float = DEFAULT_MAX_AGE_S, now_unix_s: float | None = None) -> Health:
    """Healthy when ``path`` was refreshed within the last ``max_age_s`` seconds."""
    now = time.time() if now_unix_s is None else now_unix_s
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return Health(False, f"unhealthy: no heartbeat at {path}: the node is not running (never started here, or stopped)")
    except OSError as exc:
        return Health(False, f"unhealthy: cannot read the heartbeat {path}: {exc.strerror or exc}")
    pid = ""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):  # the age decides; the pid only helps the message
        content = json.loads(path.read_text())
        pid = f" (pid {int(content['pid'])})"
        if content.get("role") == "standby":
            pid += f"; standby for {content.get('active_node')} on {content.get('active_host')}"
        elif content.get("role") == "active":
            pid += "; active"
    age_s = max(0.0, now - mtime)
    if age_s > max_age_s:
        return Health(
            False,
            f"unhealthy: heartbeat {age_s:.1f} s old (limit {max_age_s:g} s){pid}: the node is wedged, stopped or killed",
            age_s,
        )
    return Health(True, f"healthy: heartbeat {age_s:.1f} s old (limit {max_age_s:g} s){pid}", age_s)
