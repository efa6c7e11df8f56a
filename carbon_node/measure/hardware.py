"""Hardware names: the rule that matches a task's ``hw_description`` to a host, and this host's own names.

The HW provider names the selected hardware in ``HWResourceImpl.hw_description`` (free text: "NVIDIA
H100 80GB HBM3", "PIM_AI_1chip", "Intel Xeon"). A host answers to a list of names: those its operator
gives (``--hardware-name``, ``CARBON_NODE_HARDWARE_NAMES``) and the models it detects (its CPU's model
name, its NVIDIA GPUs' names). The match rule, the same everywhere (:func:`match_quality`):

1. both texts are *normalised*: lower case (``casefold``), every run of characters other than letters
   and digits becomes one space, no space at either end. "NVIDIA-H100 (80GB)" becomes "nvidia h100 80gb";
2. an empty text matches nothing;
3. they match *exactly* when the normalised texts are equal, and *by words* when the words of one are a
   contiguous run of the words of the other ("h100" and "nvidia h100 80gb hbm3" match; "a100" and
   "nvidia a1000" do not: a word is never cut).

An exact match ranks before a match by words. Predictable by design: no fuzzy distance, no vendor
tables.

The readers of ``/proc`` take their root as a parameter, so tests point them at fixture trees.
Importing this module is cheap (no torch, no NVML).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "EXACT",
    "MAX_NAME_CHARS",
    "NO_MATCH",
    "WORDS",
    "best_match",
    "cpu_model",
    "gpu_models",
    "host_hardware",
    "match_quality",
    "normalise_hardware",
]

NO_MATCH = 0
WORDS = 1
"""The words of one name are a contiguous run of the other's words."""
EXACT = 2
"""The normalised names are equal."""

_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
MAX_NAME_CHARS = 256
"""Longest hardware name kept (a peer may announce anything); longer names are cut."""


def normalise_hardware(name: str) -> str:
    """``name`` lower-cased, with every run of characters other than letters and digits turned into one
    space, and no space at either end."""
    return _NOT_ALNUM.sub(" ", name[:MAX_NAME_CHARS].casefold()).strip()


def _contains_words(longer: list[str], shorter: list[str]) -> bool:
    width = len(shorter)
    return any(longer[i : i + width] == shorter for i in range(len(longer) - width + 1))


def match_quality(description: str, name: str) -> int:
    """How ``name`` matches ``description``: :data:`EXACT`, :data:`WORDS` or :data:`NO_MATCH` (see the module
    docstring); symmetric."""
    a, b = normalise_hardware(description), normalise_hardware(name)
    if not a or not b:
        return NO_MATCH
    if a == b:
        return EXACT
    words_a, words_b = a.split(), b.split()
    longer, shorter = (words_a, words_b) if len(words_a) >= len(words_b) else (words_b, words_a)
    return WORDS if _contains_words(longer, shorter) else NO_MATCH


def best_match(description: str, names: Iterable[str]) -> tuple[int, str | None]:
    """The best quality among ``names`` for ``description`` and the first name with it (None: no match)."""
    best, found = NO_MATCH, None
    for name in names:
        quality = match_quality(description, name)
        if quality > best:
            best, found = quality, name
    return best, found


def cpu_model(proc_root: Path = Path("/proc")) -> str | None:
    """This machine's CPU model name from ``cpuinfo`` (x86 ``model name``; ``Model`` or ``Hardware`` on
    ARM boards), None when it says none."""
    try:
        text = (proc_root / "cpuinfo").read_text(errors="replace")
    except OSError:
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and value.strip():
            fields.setdefault(name.strip().lower(), " ".join(value.split()))
    for name in ("model name", "model", "hardware", "cpu model"):
        if fields.get(name):
            return fields[name][:MAX_NAME_CHARS]
    return None


def gpu_models(proc_root: Path = Path("/proc")) -> list[str]:
    """The NVIDIA GPUs' model names the driver lists (``driver/nvidia/gpus/*/information``, ``Model:``):
    the devices torch sees as CUDA devices. Empty without the NVIDIA driver."""
    names: list[str] = []
    try:
        files = sorted((proc_root / "driver" / "nvidia" / "gpus").glob("*/information"))
    except OSError:
        return names
    for info in files:
        try:
            lines = info.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() == "model" and value.strip():
                names.append(" ".join(value.split())[:MAX_NAME_CHARS])
                break
    return names


def host_hardware(given: Sequence[str], proc_root: Path = Path("/proc")) -> list[str]:
    """The names this host answers to: ``given`` first, then the detected GPU and CPU models; blanks and
    names equal after normalising dropped (the first kept)."""
    names: list[str] = []
    seen: set[str] = set()
    for name in (*given, *gpu_models(proc_root), cpu_model(proc_root) or ""):
        name = " ".join(name.split())[:MAX_NAME_CHARS]
        normal = normalise_hardware(name)
        if normal and normal not in seen:
            seen.add(normal)
            names.append(name)
    return names
