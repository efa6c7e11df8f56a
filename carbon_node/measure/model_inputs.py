"""Model inputs: the model's pre-processor and the dummy input it makes, or a synthetic one in its place.

Pre-processors are tried in upstream order (tokenizer, image processor, feature extractor, processor),
except that a config with both a text and a vision tower tries the joint processor first (upstream
picked the tokenizer and then failed the forward pass). The dummy input is upstream's: a short text, a
white image, 16 white frames, or text and image together.

A directory with no pre-processor files, or whose pre-processor loads nothing usable, gets a synthetic
input built from the config instead (:mod:`carbon_node.measure.synthetic_inputs`), and the notes say
why. Without pre-processor files transformers 5 still "loads" a tokenizer with an empty vocabulary,
which encodes the dummy text as zero tokens (the forward pass then fails with "cannot reshape tensor of
0 elements"): such a tokenizer is never used.

This module imports torch and transformers: only the worker process imports it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import transformers

from carbon_node.measure.model_sources import ModelSource, first_line
from carbon_node.measure.protocol import MeasureSpec, ModelRejected
from carbon_node.measure.synthetic_inputs import InputKind, NoSyntheticInput, is_text_and_vision, synthetic_inputs

__all__ = [
    "DUMMY_TEXT",
    "PREPROCESSOR_FILES",
    "dummy_or_synthetic",
    "has_preprocessor_files",
    "load_preprocessor",
    "make_dummy_inputs",
]

DUMMY_TEXT = "How to prepare coffee?"
"""The dummy text input (upstream's)."""

DUMMY_IMAGE_PX = 224
"""Side of the dummy white RGB image in pixels (the processor resizes it to the model's size)."""

VIDEO_FRAMES = 16
"""Frames of the dummy video input."""

PREPROCESSOR_FILES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "vocab.json",
        "merges.txt",
        "special_tokens_map.json",
        "preprocessor_config.json",
        "processor_config.json",
        "video_preprocessor_config.json",
        "chat_template.json",
    }
)
"""Files whose presence means the directory has a tokenizer or processor to try (also ``*.model``,
``*.tiktoken``: sentencepiece and tiktoken vocabularies)."""


def has_preprocessor_files(directory: Path) -> bool:
    """Whether ``directory`` holds any tokenizer or processor file (see :data:`PREPROCESSOR_FILES`)."""
    try:
        names = [entry.name for entry in os.scandir(directory) if entry.is_file()]
    except OSError:
        return False
    return any(name in PREPROCESSOR_FILES or name.endswith((".model", ".tiktoken")) for name in names)


def load_preprocessor(source: ModelSource, config: Any, spec: MeasureSpec) -> tuple[str, Any]:
    """The first pre-processor that loads, as (label, object); see the module docstring for the order."""
    candidates: list[tuple[str, Any, dict[str, Any]]] = [
        ("tokenizer", transformers.AutoTokenizer, {}),
        ("image", transformers.AutoImageProcessor, {}),
        ("feature_extractor", transformers.AutoFeatureExtractor, {}),
        ("processor", transformers.AutoProcessor, {}),
    ]
    if is_text_and_vision(config):
        candidates.insert(0, candidates.pop())
    errors: list[str] = []
    for label, auto, extra in candidates:
        try:
            loaded = auto.from_pretrained(
                source.directory, trust_remote_code=spec.trust_remote_code, local_files_only=True, **extra
            )
        except Exception as exc:  # try the next kind, as upstream does
            errors.append(f"{label}: {first_line(exc)}")
            continue
        return label, loaded
    raise ModelRejected(f"model {spec.model!r}: no tokenizer or processor could be loaded ({'; '.join(errors)[:500]})")


def _dummy_image() -> Any:
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.full((DUMMY_IMAGE_PX, DUMMY_IMAGE_PX, 3), 255, dtype=np.uint8))


def make_dummy_inputs(label: str, preprocessor: Any, config: Any) -> tuple[InputKind, dict[str, Any]]:
    """The dummy input for the pre-processor kind: text, a white image, 16 white frames, or text + image."""
    class_name = type(preprocessor).__name__.lower()
    if label == "processor" and is_text_and_vision(config):
        encoded = preprocessor(text=DUMMY_TEXT, images=_dummy_image(), return_tensors="pt", padding=True)
        return "text+image", dict(encoded)
    if label in ("image", "feature_extractor") or "image" in class_name or "video" in class_name:
        if "video" in class_name:
            return "video", dict(preprocessor([_dummy_image()] * VIDEO_FRAMES, return_tensors="pt"))
        return "image", dict(preprocessor(_dummy_image(), return_tensors="pt"))
    tokenizer = getattr(preprocessor, "tokenizer", preprocessor)
    if getattr(tokenizer, "pad_token", None) is None:
        # Upstream's fallback: models without a pad token pad with EOS (or GPT-2's end-of-text).
        if getattr(tokenizer, "eos_token", None) is None:
            tokenizer.eos_token = "<|endoftext|>"
        tokenizer.pad_token = tokenizer.eos_token
    return "text", dict(tokenizer(DUMMY_TEXT, return_tensors="pt", padding=True, truncation=True))


def _usable(inputs: Mapping[str, Any]) -> bool:
    """An encoded input is usable when it has at least one tensor and no empty one."""
    tensors = [value for value in inputs.values() if isinstance(value, torch.Tensor)]
    return bool(tensors) and all(t.numel() > 0 for t in tensors)


def dummy_or_synthetic(
    spec: MeasureSpec,
    cls: Any,
    config: Any,
    preprocessor: tuple[str, Any] | None,
    problem: str,
    notes: list[str],
) -> tuple[InputKind, dict[str, Any]]:
    """The pre-processor's dummy input when it gives a usable one, else a synthetic input (noted)."""
    if preprocessor is not None:
        label, loaded = preprocessor
        with_what = type(loaded).__name__
        try:
            kind, raw_inputs = make_dummy_inputs(label, loaded, config)
        except Exception as exc:
            problem = f"could not make a dummy input with {with_what}: {first_line(exc)}"
        else:
            if _usable(raw_inputs):
                return kind, raw_inputs
            problem = f"{with_what} encoded the dummy {kind} input as an empty tensor"
    main_input = getattr(cls, "main_input_name", None) or "input_ids"
    try:
        kind, raw_inputs, described = synthetic_inputs(config, str(main_input))
    except NoSyntheticInput as exc:
        raise ModelRejected(f"model {spec.model!r}: no input can be built: {problem}, and {exc}") from None
    notes.append(f"synthetic input built from the config ({described}): {problem}")
    return kind, raw_inputs
