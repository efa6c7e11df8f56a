"""Small, honest stand-ins for the node's plug points, shipped for tests, demos and the CLI.

- :class:`FakeMeasurer`: a :class:`~carbon_node.measure.protocol.Measurer` that returns a configured
  :class:`~carbon_node.measure.protocol.Measurement` (or raises a configured error) and records calls.
- :class:`FakeIntensitySource`: an intensity source with a fixed answer (or none), recording lookups.
- :func:`make_inputs`: a complete :class:`~carbon_node.core.TaskInputs` from plain keyword values.
- :func:`make_measurement`: a plausible measurement with any field overridden.

None of them imports torch, transformers or carbontracker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from carbon_node.core import make_inputs
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
        cpu_power_source="simulated",
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
