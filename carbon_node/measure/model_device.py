"""Device and dtype: where a model runs, in which precision, and its inputs fitted to both (F4).

The dtype goes to the model: float32 on CPU, float16 only on CUDA. Only floating inputs are cast, to
the model's own dtype; integer inputs (ids, masks) keep theirs. ``cuda`` is refused when CUDA is not
available in the worker rather than quietly measured on the CPU.

This module imports torch: only the worker process imports it.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch

from carbon_node.measure.protocol import ModelRejected

__all__ = ["fit_inputs", "model_dtype", "pick_device"]


def pick_device(requested: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU; ``cuda`` without CUDA is refused."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelRejected("device 'cuda' was requested but CUDA is not available in the worker")
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def model_dtype(device: torch.device) -> torch.dtype:
    """F4: float16 only on CUDA; float32 on CPU (half precision is slow or unsupported there)."""
    return torch.float16 if device.type == "cuda" else torch.float32


def fit_inputs(model: Any, inputs: Mapping[str, Any], device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Keep the inputs the model's forward accepts; move tensors to ``device``; cast floats to ``dtype`` only.

    Integer tensors (ids, masks) keep their dtype (F4: never cast inputs to a dtype the model does not use).
    """
    params = inspect.signature(model.forward).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    fitted: dict[str, Any] = {}
    for name, value in inputs.items():
        if not takes_any and name not in params:
            continue
        if isinstance(value, torch.Tensor):
            value = value.to(device=device, dtype=dtype) if value.is_floating_point() else value.to(device)
        fitted[name] = value
    return fitted
