"""Small, honest stand-ins for the node's plug points, shipped for tests, demos and the CLI.

- :class:`FakeMeasurer`: a :class:`~carbon_node.measure.protocol.Measurer` that returns a configured
  :class:`~carbon_node.measure.protocol.Measurement` (or raises a configured error) and records calls.
- :class:`FakeIntensitySource`: an intensity source with a fixed answer (or none), recording lookups.
- :func:`make_inputs`: a complete :class:`~carbon_node.core.TaskInputs` from plain keyword values.
- :func:`make_measurement`: a plausible measurement with any field overridden.

None of them imports torch, transformers or carbontracker.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from carbon_node.bus.types import HWResourceImpl, MLModelImpl, TaskIdImpl, UserInputImpl
from carbon_node.core import TaskId, TaskInputs
from carbon_node.engine.intensity import Intensity
from carbon_node.engine.task import Location
from carbon_node.measure.protocol import MeasureError, Measurement, MeasureSpec

__all__ = ["FakeIntensitySource", "FakeMeasurer", "make_inputs", "make_measurement"]


def make_measurement(**overrides: Any) -> Measurement:
    """A measurement of 1e-6 kWh over a 1 s window of 100 passes on a simulated CPU; override any field."""
    base = Measurement(
        model="tiny-model",
        model_class="BertModel",
        device="cpu",
        dtype="float32",
        energy_kwh=1e-6,
        window_s=1.0,
        forward_passes=100,
        power_source="simulated",
        components=("cpu",),
        pue=1.0,
        carbontracker_version="2.4.7",
        measured_at="2026-01-01T00:00:00+00:00",
        load_s=0.5,
        measure_s=1.2,
    )
    return replace(base, **overrides)


class FakeMeasurer:
    """Returns ``result`` for every spec (or calls it, when it is a function), or raises ``error``.

    ``calls`` lists the specs received; ``aborted`` counts :meth:`abort` calls.
    """

    def __init__(
        self,
        result: Measurement | Callable[[MeasureSpec], Measurement] | None = None,
        error: MeasureError | None = None,
    ) -> None:
        self.result = result if result is not None else make_measurement()
        self.error = error
        self.calls: list[MeasureSpec] = []
        self.aborted = 0
        self._lock = threading.Lock()

    @property
    def call_count(self) -> int:
        return len(self.calls)

    def measure(self, spec: MeasureSpec) -> Measurement:
        with self._lock:
            self.calls.append(spec)
        if self.error is not None:
            raise self.error
        if callable(self.result):
            return self.result(spec)
        return replace(self.result, model=spec.model)

    def abort(self) -> None:
        self.aborted += 1


class FakeIntensitySource:
    """Answers every lookup with ``intensity`` (None: no answer); ``lookups`` lists the locations asked."""

    def __init__(self, intensity: Intensity | float | None = 100.0, source: str = "fake") -> None:
        if isinstance(intensity, (int, float)):
            intensity = Intensity(float(intensity), source)
        self.intensity = intensity
        self.lookups: list[Location] = []

    def lookup(self, location: Location) -> Intensity | None:
        self.lookups.append(location)
        return self.intensity


def _extra(value: Mapping[str, Any] | str | bytes | None) -> list[int]:
    """``extra_data`` octets: a mapping as JSON, a string as UTF-8, bytes as they are."""
    if value is None:
        return []
    if isinstance(value, bytes):
        return list(value)
    if isinstance(value, str):
        return list(value.encode("utf-8"))
    return list(json.dumps(dict(value)).encode("utf-8"))


def make_inputs(
    model: str = "tiny-model",
    model_path: str = "",
    latency: float = 0.0,
    power: float = 0.0,
    user_extra: Mapping[str, Any] | str | bytes | None = None,
    ml_extra: Mapping[str, Any] | str | bytes | None = None,
    region: str = "",
    continent: str = "",
    task_id: tuple[int, int] = (1, 1),
) -> TaskInputs:
    """Complete task inputs from plain values: ``latency`` in the configured unit, ``power`` in W.

    ``user_extra``/``ml_extra`` are the ``extra_data`` of the UserInput and MLModel samples (a mapping
    is JSON-encoded; str or bytes are sent as they are, to test invalid data).
    """
    wire_id = TaskIdImpl(problem_id=task_id[0], iteration_id=task_id[1])
    return TaskInputs(
        task_id=TaskId(*task_id),
        ml_model=MLModelImpl(model=model, model_path=model_path, extra_data=_extra(ml_extra), task_id=wire_id),
        user_input=UserInputImpl(
            geo_location_region=region, geo_location_continent=continent, extra_data=_extra(user_extra), task_id=wire_id
        ),
        hw=HWResourceImpl(power_consumption=power, latency=latency, task_id=wire_id),
    )
