"""What a model string may be, checked without torch: a Hugging Face id or an absolute directory.

The measurement worker refuses anything else before touching the filesystem (:mod:`.model_sources` uses
these checks); ``carbon-node estimate`` runs the same checks before it starts a worker, so that a
refused model fails in milliseconds instead of after the worker's warm-up.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from carbon_node.measure.protocol import ModelRejected

__all__ = ["HF_ID", "check_local_directory", "validate_model_string"]

HF_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?(?:/[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?)?")
"""A Hugging Face repo id: ``name`` or ``owner/name``, alphanumerics with ``.``, ``_``, ``-`` inside."""


def validate_model_string(model: str) -> None:
    """Refuse a model string that is neither a plausible HF id nor an absolute directory path.

    Raises :class:`ModelRejected` without touching the filesystem.
    """
    if not model or not model.strip():
        raise ModelRejected("model name is empty")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in model) or len(model) > 4096:
        raise ModelRejected(f"model {model!r} contains control characters or is too long")
    if model.startswith("/"):
        if any(part in ("..", ".") for part in model.split("/")) or re.search(r"[;&|`$<>*?\\\"'!]", model):
            raise ModelRejected(f"model path {model!r} must be a plain absolute directory path (no '..', no shell characters)")
        return
    if ".." in model or not HF_ID.fullmatch(model):
        raise ModelRejected(f"model {model!r} is neither a Hugging Face id (owner/name) nor an absolute directory path")


def check_local_directory(model: str, allowed_dirs: Sequence[str] = ()) -> Path:
    """The directory an absolute ``model`` path names; raises :class:`ModelRejected` when it is outside
    ``allowed_dirs`` (symbolic links resolved; empty: anywhere) or is not an existing directory."""
    directory = Path(model)
    if allowed_dirs:
        real = Path(os.path.realpath(directory))
        if not any(real.is_relative_to(os.path.realpath(root)) for root in allowed_dirs):
            raise ModelRejected(
                f"model directory {model!r} is outside the allowed model directories (model_dirs: {':'.join(allowed_dirs)})"
            )
    if not directory.is_dir():
        raise ModelRejected(f"model directory {model!r} does not exist")
    return directory
