"""Model sources: the local directory a model string names, an absolute directory or a Hugging Face id.

:func:`resolve_model_source` turns ``spec.model`` into a local directory (PROTOCOL.md 7.4 step 4, as
the upstream node, with fixes). An absolute path must be an existing directory; anything else must look
like a Hugging Face id (``name`` or ``owner/name``) and is looked up in the local hub cache. Strings
that are neither (``..``, shell characters, control characters) are refused before any file is touched
(:mod:`carbon_node.measure.model_names`). An id not in the cache is fetched (config and pre-processor
files only) when the hub is reachable, bounded by ``spec.load_timeout_s``; offline it fails at once.

Importing this module imports neither torch nor transformers; huggingface_hub is imported by the first
lookup (it reads ``HF_HUB_OFFLINE`` once, at import: :mod:`carbon_node.measure.netcheck`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from carbon_node.measure.model_names import check_local_directory, validate_model_string
from carbon_node.measure.netcheck import run_bounded
from carbon_node.measure.protocol import ModelRejected

__all__ = ["HUB_FILE_PATTERNS", "ModelSource", "first_line", "resolve_model_source"]

HUB_FILE_PATTERNS = ["*.json", "*.txt", "*.model", "*.tiktoken", "*.py"]
"""What is fetched from the hub for a model not in the cache: config and pre-processor files, no weights."""


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are: a local directory, and whether it came from the hub cache."""

    model: str
    directory: Path
    from_hub: bool


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s text (its type's name when it has none): a refusal stays one line."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _hub_offline() -> bool:
    """Whether hub access is off: ``HF_HUB_OFFLINE`` now, or as huggingface_hub read it at import."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return flag or bool(constants.HF_HUB_OFFLINE)


def resolve_model_source(model: str, *, timeout_s: float, allowed_dirs: Sequence[str] = ()) -> ModelSource:
    """The local directory of ``model`` (see the module docstring); raises :class:`ModelRejected`.

    With ``allowed_dirs``, a local directory must be inside one of them (symbolic links resolved).
    """
    validate_model_string(model)
    if model.startswith("/"):
        return ModelSource(model, check_local_directory(model, allowed_dirs), from_hub=False)

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return ModelSource(model, Path(snapshot_download(model, local_files_only=True)), from_hub=True)
    except LocalEntryNotFoundError:
        pass
    except Exception as exc:  # a broken cache entry is reported, not raised raw
        raise ModelRejected(f"model {model!r}: the local hub cache entry is unusable ({exc})") from exc
    if _hub_offline():
        raise ModelRejected(f"model {model!r} is not available locally and the hub is offline")

    def fetch() -> str:
        return str(snapshot_download(model, allow_patterns=HUB_FILE_PATTERNS, etag_timeout=timeout_s))

    try:
        directory = run_bounded(fetch, timeout_s, f"hub lookup of {model}")
    except RepositoryNotFoundError as exc:
        raise ModelRejected(f"model {model!r} is not available locally and the hub does not know it") from exc
    except Exception as exc:  # timeout, DNS, refused connection, proxy: the hub cannot be used
        reason = first_line(exc)
        raise ModelRejected(f"model {model!r} is not available locally and the hub is unreachable ({reason})") from exc
    return ModelSource(model, Path(directory), from_hub=True)
