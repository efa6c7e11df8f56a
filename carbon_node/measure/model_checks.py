"""Model checks: the config, the model class, and the refusals made before any weight is loaded.

As the upstream node (PROTOCOL.md 7.4 step 4), with fixes: :func:`load_config` reads the config
(``trust_remote_code`` only when the spec allows it); :func:`resolve_model_class` takes the model class
from transformers' ``AutoModel`` mapping and refuses ``unsupported_models`` by class-name substring
(case-insensitive); :func:`estimate_model_bytes` builds the model on the ``meta`` device (no memory) to
size its parameters, and :func:`check_size` refuses a model over ``spec.max_model_mb``. A model the
worker already holds is checked again for each spec (:func:`check_allowed`).

This module imports torch and transformers: only the worker process imports it.
"""

from __future__ import annotations

from typing import Any

import torch
import transformers

from carbon_node.measure.model_sources import ModelSource, first_line
from carbon_node.measure.protocol import MeasureSpec, ModelRejected

__all__ = [
    "build_model",
    "check_allowed",
    "check_size",
    "check_supported",
    "estimate_model_bytes",
    "load_config",
    "resolve_model_class",
]


def load_config(source: ModelSource, spec: MeasureSpec) -> Any:
    """The model's transformers config from ``config.json``; raises :class:`ModelRejected`."""
    config_path = source.directory / "config.json"
    if not config_path.is_file():
        raise ModelRejected(f"model {spec.model!r} has no config.json")
    try:
        return transformers.AutoConfig.from_pretrained(
            source.directory, trust_remote_code=spec.trust_remote_code, local_files_only=True
        )
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise ModelRejected(f"model {spec.model!r} needs its own code (trust_remote_code), which is not allowed") from exc
        raise ModelRejected(f"model {spec.model!r}: config.json is not usable ({first_line(exc)})") from exc
    except (OSError, KeyError, TypeError) as exc:
        raise ModelRejected(f"model {spec.model!r}: config.json is not usable ({first_line(exc)})") from exc


def resolve_model_class(config: Any, spec: MeasureSpec) -> Any:
    """The transformers model class for ``config`` (``AutoModel`` mapping), checked against the spec."""
    try:
        cls: Any = transformers.AutoModel._model_mapping.get(type(config), None)
    except Exception:  # the lazy mapping imports modules; any failure means unsupported
        cls = None
    if cls is None:
        auto_map = getattr(config, "auto_map", None) or {}
        if spec.trust_remote_code and "AutoModel" in auto_map:
            cls = transformers.AutoModel  # resolved through the remote code
        else:
            raise ModelRejected(f"model {spec.model!r}: transformers has no model class for {type(config).__name__}")
    check_supported(spec, cls.__name__)
    return cls


def check_supported(spec: MeasureSpec, class_name: str) -> None:
    """Refuse a model class whose name contains an ``unsupported_models`` entry (case-insensitive)."""
    for unsupported in spec.unsupported_models:
        if unsupported and unsupported.lower() in class_name.lower():
            raise ModelRejected(f"model {spec.model!r}: models that use '{unsupported}' are not supported ({class_name})")


def check_size(spec: MeasureSpec, param_bytes: int) -> None:
    """Refuse a model whose parameters and buffers need more than ``spec.max_model_mb`` MiB."""
    need_mib = param_bytes / 2**20
    if need_mib > spec.max_model_mb:
        raise ModelRejected(
            f"model {spec.model!r} is too large: it needs {need_mib:.2f} MiB, "
            f"over the {spec.max_model_mb:g} MiB limit (max_model_mb)"
        )


def check_allowed(spec: MeasureSpec, class_name: str, param_bytes: int) -> None:
    """Both checks, for a model already loaded under another spec."""
    check_supported(spec, class_name)
    check_size(spec, param_bytes)


def build_model(cls: Any, config: Any, spec: MeasureSpec) -> Any:
    """A model of class ``cls`` built from ``config``: random weights, on torch's default device."""
    if cls is transformers.AutoModel:
        return transformers.AutoModel.from_config(config, trust_remote_code=spec.trust_remote_code)
    return cls(config)


def estimate_model_bytes(cls: Any, config: Any, spec: MeasureSpec, dtype: torch.dtype) -> int:
    """Bytes of parameters and buffers of the model in ``dtype``, built on the ``meta`` device (no memory)."""
    try:
        with torch.device("meta"):
            skeleton = build_model(cls, config, spec)
    except Exception as exc:  # a config that cannot build is a rejected model
        raise ModelRejected(f"model {spec.model!r} cannot be built from its config ({first_line(exc)})") from exc
    itemsize = torch.empty((), dtype=dtype).element_size()
    tensors = [*skeleton.parameters(), *skeleton.buffers()]
    return sum(t.numel() * (itemsize if t.is_floating_point() else t.element_size()) for t in tensors)
