"""Decode the three wire inputs of a task, once, into a typed :class:`Task`.

Everything the engine needs is read here and nowhere else: the model name and ONNX path, the HW
provider's latency converted from its configured unit into seconds (F2), its power in watts, the
user's and the ML provider's ``extra_data`` (decoded as UTF-8 JSON, F1) and the user's location.

What one task may carry is bounded (:data:`carbon_node.core.MAX_TEXT_CHARS` per text,
:data:`~carbon_node.core.MAX_LIST_ITEMS` per list, :data:`~carbon_node.core.MAX_EXTRA_DATA_BYTES` per
``extra_data``): longer inputs are cut here, once, and the cut is named in :attr:`Task.warnings`.

Numbers are checked: a NaN, an infinity or a negative latency or power makes the task invalid
(:attr:`Task.hw_problem`); the engine answers such a task with its one error output unless the
numbers are not needed (``NO_MODEL``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from carbon_node.core import (
    LATENCY_UNIT_S,
    MAX_LIST_ITEMS,
    MAX_TEXT_CHARS,
    NO_MODEL,
    LatencyUnit,
    TaskId,
    TaskInputs,
    cut_text,
    decode_extra_data,
    extra_data_cuts,
)

__all__ = ["LATENCY_UNIT_S", "LatencyUnit", "Location", "Task", "decode_task", "latency_to_s"]


def latency_to_s(latency: float, unit: LatencyUnit) -> float:
    """``latency`` expressed in ``unit`` (h, s or ms), in seconds."""
    return latency * LATENCY_UNIT_S[unit]


@dataclass(frozen=True)
class Location:
    """Where the user said the model will run: free text from the GUI, as received."""

    region: str = ""
    continent: str = ""

    def __str__(self) -> str:
        return ", ".join(part for part in (self.region, self.continent) if part) or "unknown"


@dataclass(frozen=True)
class Task:
    """One task, decoded and checked. Units are in the names; latency is already in seconds.

    When :attr:`hw_problem` is set the HW numbers were unusable and ``latency_s``/``power_w`` are 0.
    """

    task_id: TaskId
    model: str
    model_path: str
    latency_s: float
    latency_unit: LatencyUnit
    power_w: float
    location: Location = Location()
    user_extra: Mapping[str, Any] = field(default_factory=dict)
    unsupported_models: tuple[str, ...] = ()
    hw_problem: str | None = None
    warnings: tuple[str, ...] = ()
    hw_description: str = ""
    """The hardware the HW provider selected (``HWResourceImpl.hw_description``): a measure host that has
    it measures the task (:mod:`carbon_node.measure.hardware`)."""
    """Non-fatal input problems (invalid ``extra_data``), reported in the output's ``extra_data``."""

    @property
    def latency_h(self) -> float:
        return self.latency_s / 3600.0

    @property
    def is_no_model(self) -> bool:
        return self.model.strip().upper() == NO_MODEL

    @property
    def is_onnx(self) -> bool:
        # Upstream tests endswith(".onnx"); the case of the suffix is not meaningful on a path name.
        return self.model_path.strip().lower().endswith(".onnx")


def _check_number(name: str, value: float, unit: str) -> str | None:
    """A user-facing problem with an HW number, or None when it is finite and >= 0."""
    if math.isnan(value):
        return f"HW resources {name} is NaN; expected a number >= 0 {unit}"
    if math.isinf(value):
        return f"HW resources {name} is infinite; expected a finite number >= 0 {unit}"
    if value < 0:
        return f"HW resources {name} is negative ({value!r}); expected a number >= 0 {unit}"
    return None


def _unsupported_models(ml_extra: Mapping[str, Any]) -> tuple[tuple[str, ...], str | None]:
    """The ML provider's ``unsupported_models`` substrings, lower-cased, and a problem if malformed."""
    value = ml_extra.get("unsupported_models")
    if value is None:
        return (), None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        return (), f"MLModel extra_data unsupported_models is {type(value).__name__}, expected a list of strings"
    names = tuple(item.strip().lower() for item in value if isinstance(item, str) and item.strip())
    problem = None if len(names) == len(value) else "MLModel extra_data unsupported_models has entries that are not strings"
    if len(names) > MAX_LIST_ITEMS:
        left_out = len(names) - MAX_LIST_ITEMS
        cut = f"MLModel extra_data unsupported_models: {left_out} entries beyond the first {MAX_LIST_ITEMS} left out"
        problem = f"{problem}; {cut}" if problem else cut
        names = names[:MAX_LIST_ITEMS]
    return names, problem


def _bounded(name: str, text: str, warnings: list[str]) -> str:
    """``text`` stripped and cut to :data:`MAX_TEXT_CHARS` characters (:func:`cut_text`; the cut added to ``warnings``)."""
    text = text.strip()
    if len(text) > MAX_TEXT_CHARS:
        warnings.append(f"{name} is {len(text)} characters: cut to {MAX_TEXT_CHARS} (its beginning and its end)")
    return cut_text(text)


def decode_task(inputs: TaskInputs, latency_unit: LatencyUnit) -> Task:
    """Decode complete ``inputs``; ``latency_unit`` is the unit of ``HWResource.latency`` (h, s, ms).

    Raises ``ValueError`` when an input is missing (the runtime only hands over complete tasks).
    """
    if inputs.ml_model is None or inputs.hw is None or inputs.user_input is None:
        raise ValueError(f"task {inputs.task_id} is missing {', '.join(inputs.missing)}")
    warnings: list[str] = []

    user_extra, problem = decode_extra_data(inputs.user_input.extra_data)
    if problem:
        warnings.append(f"UserInput {problem}")
    ml_extra, problem = decode_extra_data(inputs.ml_model.extra_data)
    if problem:
        warnings.append(f"MLModel {problem}")
    unsupported, problem = _unsupported_models(ml_extra)
    if problem:
        warnings.append(problem)
    model = _bounded("MLModel model", inputs.ml_model.model, warnings)
    model_path = _bounded("MLModel model_path", inputs.ml_model.model_path, warnings)
    hw_description = _bounded("HWResource hw_description", inputs.hw.hw_description, warnings)
    region = _bounded("UserInput geo_location_region", inputs.user_input.geo_location_region, warnings)
    continent = _bounded("UserInput geo_location_continent", inputs.user_input.geo_location_continent, warnings)
    warnings.extend(extra_data_cuts(model, user_extra))

    latency = float(inputs.hw.latency)
    power_w = float(inputs.hw.power_consumption)
    problems = [
        p
        for p in (_check_number("latency", latency, latency_unit), _check_number("power_consumption", power_w, "W"))
        if p is not None
    ]
    hw_problem = "; ".join(problems) if problems else None
    latency_s = 0.0 if hw_problem else latency_to_s(latency, latency_unit)
    if hw_problem:
        power_w = 0.0

    return Task(
        task_id=inputs.task_id,
        model=model,
        model_path=model_path,
        latency_s=latency_s,
        latency_unit=latency_unit,
        power_w=power_w,
        location=Location(region=region, continent=continent),
        user_extra=user_extra,
        unsupported_models=unsupported,
        hw_problem=hw_problem,
        warnings=tuple(warnings),
        hw_description=hw_description,
    )
