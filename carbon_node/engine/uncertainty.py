"""The interval on a published answer: ``extra_data.uncertainty`` of every ``tracker`` and ONNX answer.

``{"energy_kwh": [low, high], "carbon_g": [low, high], "level": "95%", "parts": {...}, "combination": ...}``
bounds the published per-inference energy and carbon (the output's doubles), and always contains them.

- Energy: the window's parts (the power source's, and the spread of the published scaling), carried by
  the :class:`~carbon_node.measure.protocol.Measurement` (so a cached answer carries its own), see
  :mod:`carbon_node.measure.uncertainty`.
- Carbon: the energy's parts and the grid intensity's (:mod:`carbon_node.engine.grid_uncertainty`).
- ONNX / HW-provider answers (HW power x latency): the intensity's part only; the HW figures' own error
  is unknown to the node, and a part says so (it widens nothing).

Parts are independent and combined root-sum-square in log space, each side on its own, at about 95 %
(:func:`carbon_node.measure.uncertainty.combine`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from carbon_node.engine.grid_uncertainty import intensity_part
from carbon_node.engine.intensity import Intensity
from carbon_node.engine.scaling import Scaled
from carbon_node.measure.protocol import Measurement
from carbon_node.measure.uncertainty import LEVEL, EnergyUncertainty, Part, interval, power_part, spread_part

__all__ = ["COMBINATION", "HW_UNKNOWN", "hw_uncertainty", "measured_uncertainty"]

COMBINATION = "independent parts, root-sum-square of their log factors, each side apart"

HW_UNKNOWN = Part(
    "hw_provider", 1.0, 1.0, "the HW provider's power and latency: their error is unknown to the node (not included)"
)


def _answer(energy_kwh: float, carbon_g: float, energy_parts: Sequence[Part], grid: Part) -> dict[str, Any]:
    parts = {part.name: part.as_dict() for part in (*energy_parts, grid)}
    return {
        "energy_kwh": interval(energy_kwh, energy_parts),
        "carbon_g": interval(carbon_g, (*energy_parts, grid)),
        "level": LEVEL,
        "parts": parts,
        "combination": COMBINATION,
    }


def hw_uncertainty(energy_kwh: float, carbon_g: float, intensity: Intensity) -> dict[str, Any]:
    """The interval of an answer computed from the HW provider's power x latency."""
    return _answer(energy_kwh, carbon_g, (HW_UNKNOWN,), intensity_part(intensity))


def _window_parts(measurement: Measurement) -> EnergyUncertainty:
    """The measurement's own parts; for a measurement that carries none (an injected measurer's), the power
    source's part from its fields, and the spread as not estimated."""
    if measurement.uncertainty is not None:
        return measurement.uncertainty
    power = power_part(
        energy_figure=measurement.energy_figure,
        cpu_source=measurement.cpu_power_source or measurement.power_source,
        gpu_source=measurement.gpu_power_source,
        power_model=measurement.power_model,
        table_matched=True,
        table_spread=lambda: (1.0, 1.0),
    )
    none = spread_part((), None, per_pass=True)
    return EnergyUncertainty(power, none, none)


def measured_uncertainty(measurement: Measurement, scaled: Scaled, intensity: Intensity) -> dict[str, Any]:
    """The interval of a ``tracker`` answer (its published scaling's parts)."""
    if scaled.hw_fallback:
        return hw_uncertainty(scaled.energy_kwh, scaled.carbon_g, intensity)
    energy_parts = _window_parts(measurement).parts(scaled.scaling)
    return _answer(scaled.energy_kwh, scaled.carbon_g, energy_parts, intensity_part(intensity))
