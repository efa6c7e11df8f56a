"""Bounded network checks for the worker: is the Hugging Face hub reachable, and a bounded call helper.

Nothing here imports torch or transformers: :func:`ensure_offline_flag` must run before they are
imported, because huggingface_hub reads ``HF_HUB_OFFLINE`` once, at import.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, MutableMapping
from typing import Any

__all__ = ["ensure_offline_flag", "hub_reachable", "run_bounded"]

HUB_HOST = "huggingface.co"
HUB_PORT = 443


def run_bounded(func: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Run ``func`` in a daemon thread and wait at most ``timeout_s`` seconds for its result.

    Raises ``TimeoutError`` naming ``what`` when it takes longer (the stuck call is abandoned: it
    cannot be interrupted, and the daemon thread dies with the worker), else re-raises its exception.
    """
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = func()
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=target, name=f"bounded-{what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"{what} took more than {timeout_s:g} s")
    if "error" in result:
        raise result["error"]
    return result.get("value")


def hub_reachable(timeout_s: float, host: str = HUB_HOST, port: int = HUB_PORT) -> bool:
    """Whether a TCP connection to the hub opens within ``timeout_s`` seconds, name resolution included."""

    def connect() -> bool:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True

    try:
        return bool(run_bounded(connect, timeout_s, "hub probe"))
    except (OSError, TimeoutError):
        return False


def ensure_offline_flag(timeout_s: float = 2.0, environ: MutableMapping[str, str] | None = None) -> bool:
    """Set ``HF_HUB_OFFLINE=1`` when it is unset and the hub is unreachable; returns whether offline."""
    env = os.environ if environ is None else environ
    if env.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    if hub_reachable(timeout_s):
        return False
    env["HF_HUB_OFFLINE"] = "1"
    return True
