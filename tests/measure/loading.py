"""Resolve and load a model as the measurement worker does, for the model tests."""

from __future__ import annotations

from typing import Any

from carbon_node.measure.model_loading import LoadedModel, load_model
from carbon_node.measure.model_sources import resolve_model_source
from carbon_node.measure.protocol import MeasureSpec


def load(model: str, **spec_fields: Any) -> LoadedModel:
    """Resolve and load ``model`` as the worker does."""
    spec = MeasureSpec(model=model, window_s=0.3, **spec_fields)
    return load_model(spec, resolve_model_source(model, timeout_s=spec.load_timeout_s))
