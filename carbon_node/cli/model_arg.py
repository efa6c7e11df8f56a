"""How a command names a model: an existing local directory is a directory, anything else a hub id.

``send-task`` and ``estimate`` take the same rule, so that ``models/tiny-bert`` means the same to both:
a directory that exists here (relative or absolute) is sent or measured as its absolute path, and the
command says so; ``NO_MODEL`` and everything else go as given (a Hugging Face id, or an absolute path
on the node's host, which need not exist here). A relative path that does not exist here
(``./models/x``, ``../x``, ``~/x``) means nothing to a node either: it is refused at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from carbon_node.service.settings import SettingsError

__all__ = ["ModelArgument", "model_argument"]


@dataclass(frozen=True)
class ModelArgument:
    """The model string to use and, when it was rewritten, a note saying how."""

    model: str
    note: str = ""


def model_argument(text: str) -> ModelArgument:
    """``text`` as a command's model argument (see the module docstring); raises :class:`SettingsError`
    (exit status 2) for a relative path that names no directory here."""
    from carbon_node.core import NO_MODEL  # here: core brings the DDS types, which `run` imports after its worker starts

    if text == NO_MODEL or not text.strip():
        return ModelArgument(text)
    path = Path(text).expanduser()
    if path.is_dir():
        absolute = os.path.abspath(path)
        if absolute == text:
            return ModelArgument(text)
        return ModelArgument(absolute, f"model {text!r} is a directory here: using its absolute path {absolute}")
    if text.startswith(("./", "../", "~")) or text in (".", ".."):
        raise SettingsError(f"model directory {text!r} does not exist (relative to {os.getcwd()})")
    return ModelArgument(text)
