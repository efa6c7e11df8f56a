"""Model loading for the measurement worker: resolve, check, build, and make a dummy input.

Behaviour follows the upstream node (PROTOCOL.md 7.4 step 4), with fixes. The steps, each in its room:

1. :func:`~carbon_node.measure.model_sources.resolve_model_source` turns ``spec.model`` into a local
   directory: an existing absolute directory, or a Hugging Face id from the local hub cache, fetched
   (config and pre-processor files only, bounded by ``spec.load_timeout_s``) when the hub is reachable.
2. :func:`load_model` reads the config, takes the model class from transformers' ``AutoModel``
   mapping, refuses ``unsupported_models`` and a model over ``spec.max_model_mb`` by its size on the
   ``meta`` device (:mod:`carbon_node.measure.model_checks`); then loads the weights when the directory
   has them, else builds random weights from the config (as upstream) and says so in the notes.
3. F4: the dtype goes to the model (float32 on CPU, float16 only on CUDA); only floating inputs are
   cast, to the model's own dtype (:mod:`carbon_node.measure.model_device`). Encoder-decoder models get
   decoder inputs, decided from the config.
4. The input is the pre-processor's dummy input, or one synthesised from the config when there is no
   usable pre-processor (:mod:`carbon_node.measure.model_inputs`,
   :mod:`carbon_node.measure.synthetic_inputs`); one forward pass on it proves the model runs.

This module imports torch and transformers: only the worker process imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import torch

from carbon_node.measure.model_checks import build_model, check_size, estimate_model_bytes, load_config, resolve_model_class
from carbon_node.measure.model_device import fit_inputs, model_dtype, pick_device
from carbon_node.measure.model_inputs import dummy_or_synthetic, has_preprocessor_files, load_preprocessor
from carbon_node.measure.model_sources import ModelSource, first_line
from carbon_node.measure.protocol import MeasureSpec, ModelRejected
from carbon_node.measure.synthetic_inputs import InputKind, add_decoder_inputs

__all__ = ["WEIGHT_FILES", "LoadedModel", "load_model"]

log = structlog.get_logger(__name__)

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
"""Files whose presence means the directory holds weights to load."""


@dataclass
class LoadedModel:
    """A model ready to run: the module (eval mode, on its device), one dummy input, and facts."""

    model: Any
    inputs: dict[str, Any]
    model_class: str
    input_kind: InputKind
    device: str
    dtype: str
    param_bytes: int
    notes: list[str] = field(default_factory=list)

    def forward(self) -> None:
        """One forward pass on the dummy input (call inside ``torch.inference_mode()``)."""
        self.model(**self.inputs)


def _has_weights(directory: Path) -> bool:
    return any((directory / name).is_file() for name in WEIGHT_FILES)


def load_model(spec: MeasureSpec, source: ModelSource, *, make_room: Callable[[int], None] | None = None) -> LoadedModel:
    """Load ``source`` for ``spec`` and prove it with one forward pass; raises :class:`ModelRejected`.

    ``make_room`` is called with the estimated size in bytes once the model is accepted, before its
    weights are loaded (the worker's model cache evicts what the new model replaces).
    """
    device = pick_device(spec.device)
    dtype = model_dtype(device)
    config = load_config(source, spec)
    cls = resolve_model_class(config, spec)
    param_bytes = estimate_model_bytes(cls, config, spec, dtype)
    check_size(spec, param_bytes)
    if make_room is not None:
        make_room(param_bytes)

    notes: list[str] = []
    preprocessor: tuple[str, Any] | None = None
    preprocessor_problem = "no tokenizer or processor files in the model directory"
    if has_preprocessor_files(source.directory):
        try:
            preprocessor = load_preprocessor(source, config, spec)
        except ModelRejected as exc:
            preprocessor_problem = str(exc).removeprefix(f"model {spec.model!r}: ")
    try:
        if _has_weights(source.directory):
            model = cls.from_pretrained(
                source.directory, dtype=dtype, local_files_only=True, trust_remote_code=spec.trust_remote_code
            )
            notes.append("weights loaded from the model directory")
        else:
            model = build_model(cls, config, spec).to(dtype=dtype)
            notes.append("no weights available locally: random weights built from the config (same compute cost)")
    except ModelRejected:
        raise
    except Exception as exc:  # construction failures are the model's problem, reported as such
        raise ModelRejected(f"model {spec.model!r} could not be built: {first_line(exc)}") from exc
    model = model.to(device).eval()

    kind, raw_inputs = dummy_or_synthetic(spec, cls, config, preprocessor, preprocessor_problem, notes)
    inputs = fit_inputs(model, add_decoder_inputs(raw_inputs, config), device, dtype)
    loaded = LoadedModel(model, inputs, cls.__name__, kind, str(device), str(dtype).removeprefix("torch."), param_bytes, notes)
    try:
        with torch.inference_mode():
            loaded.forward()
    except Exception as exc:
        raise ModelRejected(f"model {spec.model!r}: the forward pass on a dummy {kind} input failed: {first_line(exc)}") from exc
    log.debug("model.loaded", model=spec.model, cls=cls.__name__, kind=kind, device=str(device), param_bytes=param_bytes)
    return loaded
