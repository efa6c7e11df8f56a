"""systemd's notify protocol (``sd_notify``) without a dependency.

A ``Type=notify`` unit passes ``$NOTIFY_SOCKET`` (a unix datagram socket path, or an abstract name
written with a leading ``@``) and, with ``WatchdogSec=``, ``$WATCHDOG_USEC`` (microseconds) and
``$WATCHDOG_PID``. The node sends ``READY=1`` once NODE_IDLE is published, ``STATUS=...`` lines for
``systemctl status``, ``WATCHDOG=1`` every half watchdog period from its main loop and ``STOPPING=1``
on shutdown. Outside systemd every call is a no-op. Sending never raises: a lost notification must not
take the node down (systemd notices a missing watchdog ping by itself).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import structlog

__all__ = ["Notifier"]

log = structlog.get_logger(__name__)

_SEND_TIMEOUT_S = 1.0


def _socket_address(value: str) -> str | bytes:
    """The address to ``sendto``: abstract names (``@name``) start with a NUL byte on the wire."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


class Notifier:
    """Talks to the service manager through ``$NOTIFY_SOCKET`` (read once, from ``environ``)."""

    def __init__(self, environ: Mapping[str, str] | None = None, *, pid: int | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = env.get("NOTIFY_SOCKET", "")
        self._pid = os.getpid() if pid is None else pid
        self.watchdog_interval_s = self._watchdog_interval_s(env)
        """Seconds between ``WATCHDOG=1`` pings (half of ``WatchdogSec``), or None without a watchdog."""

    def _watchdog_interval_s(self, env: Mapping[str, str]) -> float | None:
        try:
            usec = int(env.get("WATCHDOG_USEC", "0"))
        except ValueError:
            return None
        # WATCHDOG_PID names the process that must ping; a child that inherited the variable must not.
        watchdog_pid = env.get("WATCHDOG_PID", "")
        if usec <= 0 or (watchdog_pid and watchdog_pid != str(self._pid)):
            return None
        return usec / 1e6 / 2

    @property
    def enabled(self) -> bool:
        """True when running under a service manager that listens for notifications."""
        return bool(self._address)

    def send(self, **fields: str) -> bool:
        """Send ``KEY=value`` lines (keys upper-cased) in one datagram. Returns True when it was sent."""
        if not self._address:
            return False
        message = "\n".join(f"{key.upper()}={value}" for key, value in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.settimeout(_SEND_TIMEOUT_S)
                sock.sendto(message, _socket_address(self._address))
        except OSError as exc:
            log.warning("systemd.notify_failed", socket=self._address, error=str(exc))
            return False
        return True

    def ready(self, status: str = "") -> bool:
        """``READY=1``: start-up is complete (the node published NODE_IDLE)."""
        return self.send(ready="1", status=status) if status else self.send(ready="1")

    def status(self, text: str) -> bool:
        """``STATUS=...``: one line shown by ``systemctl status``."""
        return self.send(status=text)

    def reloading(self, status: str = "") -> bool:
        """``RELOADING=1``: the configuration is being read again (``READY=1`` follows when it is done)."""
        return self.send(RELOADING="1", **({"STATUS": status} if status else {}))

    def stopping(self, status: str = "") -> bool:
        """``STOPPING=1``: shutdown has begun."""
        return self.send(stopping="1", status=status) if status else self.send(stopping="1")

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the main loop is alive."""
        return self.send(watchdog="1")
