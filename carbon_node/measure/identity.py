"""What a model string names right now: the identity both caches key on (issue 9, item 5).

The same string can name different models over time: a local directory overwritten by a new
``save_pretrained``, a hub id whose cached snapshot moved to another commit. The worker's model
cache and the client's measurement cache therefore key on :func:`model_identity`, not on the string:

- a local directory: ``files:`` and a digest of its top-level regular files' names, sizes and
  modification times (nanoseconds), plus the bytes of ``config.json``. One ``scandir`` and a stat per
  file, one small read: cheap enough for every task (weights are never read, never hashed).
- a hub id: ``rev:`` and the commit of the snapshot the worker loads, which offline (and first, when
  online: see :func:`carbon_node.measure.model_sources.resolve_model_source`) is the cached ``refs/main``.

Both the worker (which knows the directory it loaded) and the client (which must decide before asking
the worker whether a remembered measurement still applies) compute it with these functions, so the
strings compare. ``None`` means the identity cannot be told now (no such directory, hub id not
cached): nothing cached is reused then.

Importing this module is cheap: no torch, no transformers, no huggingface_hub.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["CONFIG_FILE", "directory_identity", "hub_identity", "model_identity", "snapshot_identity"]

CONFIG_FILE = "config.json"
"""Read whole (it is small) so that an edit that keeps its size and time still changes the identity."""

_MAX_CONFIG_BYTES = 1 << 20
"""A config larger than this is identified by its size and time only."""


def directory_identity(directory: Path | str) -> str | None:
    """``files:<digest>`` of a local model directory, or None when it cannot be listed."""
    digest = hashlib.sha256()
    try:
        with os.scandir(directory) as entries:
            files = []
            for entry in entries:
                if entry.is_file():  # follows symbolic links (hub snapshots are links to blobs)
                    stat = entry.stat()
                    files.append((entry.name, stat.st_size, stat.st_mtime_ns))
    except OSError:
        return None
    for name, size, mtime_ns in sorted(files):
        digest.update(f"{name}\0{size}\0{mtime_ns}\n".encode("utf-8", "surrogateescape"))
        if name == CONFIG_FILE and size <= _MAX_CONFIG_BYTES:
            try:
                digest.update(Path(directory, name).read_bytes())
            except OSError:
                return None
    return "files:" + digest.hexdigest()[:32]


def snapshot_identity(snapshot_dir: Path | str) -> str:
    """``rev:<commit>`` of a hub snapshot directory (``.../snapshots/<commit>``)."""
    return "rev:" + Path(snapshot_dir).name


def hub_identity(model: str, hub_cache: Path | str) -> str | None:
    """``rev:<commit>`` of the cached ``refs/main`` of hub id ``model`` in ``hub_cache``, or None."""
    ref = Path(hub_cache, "models--" + model.replace("/", "--"), "refs", "main")
    try:
        commit = ref.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return "rev:" + commit if commit else None


def model_identity(model: str, hub_cache: Path | str | None) -> str | None:
    """The identity of ``model`` now: a local directory's files, or a hub id's cached revision."""
    if model.startswith("/"):
        return directory_identity(model)
    if hub_cache is None:
        return None
    return hub_identity(model, hub_cache)
