"""Per-inference arithmetic: pure functions, units in every name.

A tracker measurement gives the energy of a window of ``forward_passes`` forward passes lasting
``window_s`` seconds. Two ways turn it into "per inference", both computed and both reported:

- ``hw_latency`` (upstream, PROTOCOL.md 7.4 step 4): window energy x ``latency_s / window_s``, that is
  the local power drawn for as long as the target hardware needs for one inference. Only defined
  when the HW latency is > 0; otherwise the window energy is left unscaled (``scaling: "none"``).
- ``measured`` (F3): window energy / ``forward_passes``, the energy of one local forward pass.

When the tracker reports no energy, upstream falls back to the HW provider's
``power_w x latency_h / 1000``, which is already the energy of one inference: it is not scaled
again (F3).

Carbon is always energy x grid intensity, and the published intensity is carbon / energy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "PerInference",
    "PerInferenceMethod",
    "Scaled",
    "Scaling",
    "carbon_intensity",
    "hw_energy_kwh",
    "hw_latency_energy_kwh",
    "measured_energy_kwh",
    "scale_measurement",
]

PerInferenceMethod = Literal["hw_latency", "measured"]
Scaling = Literal["hw_latency", "measured", "none"]


@dataclass(frozen=True)
class PerInference:
    """Energy (kWh) and carbon (gCO2e) of one inference."""

    energy_kwh: float
    carbon_g: float

    def as_dict(self) -> dict[str, float]:
        return {"energy_kwh": self.energy_kwh, "carbon_g": self.carbon_g}


def hw_energy_kwh(power_w: float, latency_h: float) -> float:
    """Energy in kWh of drawing ``power_w`` watts for ``latency_h`` hours (W x h / 1000)."""
    return power_w * latency_h / 1000.0


def hw_latency_energy_kwh(window_energy_kwh: float, latency_s: float, window_s: float) -> float | None:
    """Upstream scaling: window energy x ``latency_s / window_s``; None when either time is <= 0."""
    if latency_s <= 0 or window_s <= 0:
        return None
    return window_energy_kwh * latency_s / window_s


def measured_energy_kwh(window_energy_kwh: float, forward_passes: int) -> float | None:
    """Energy of one measured forward pass: window energy / passes; None when no pass completed."""
    if forward_passes <= 0:
        return None
    return window_energy_kwh / forward_passes


def carbon_intensity(carbon_g: float, energy_kwh: float) -> float:
    """gCO2e/kWh of a result: carbon / energy, 0 when the energy is 0 (upstream)."""
    return carbon_g / energy_kwh if energy_kwh > 0 else 0.0


@dataclass(frozen=True)
class Scaled:
    """The per-inference result of a tracker measurement, with both scalings and the one chosen."""

    energy_kwh: float
    carbon_g: float
    scaling: Scaling
    hw_fallback: bool
    """True when the tracker measured nothing and the energy is the HW provider's power x latency."""
    hw_latency: PerInference | None
    measured: PerInference | None
    note: str | None = None
    """Why the chosen scaling could not be applied, when it could not."""

    @property
    def carbon_intensity_g_per_kwh(self) -> float:
        return carbon_intensity(self.carbon_g, self.energy_kwh)


def scale_measurement(
    *,
    window_energy_kwh: float,
    window_s: float,
    forward_passes: int,
    latency_s: float,
    power_w: float,
    grid_ci_g_per_kwh: float,
    method: PerInferenceMethod,
) -> Scaled:
    """Per-inference energy and carbon of a measured window (see the module docstring).

    ``method`` picks what the output doubles carry; the other scaling is still computed.
    """
    ci = grid_ci_g_per_kwh
    if window_energy_kwh <= 0:
        fallback_kwh = hw_energy_kwh(power_w, latency_s / 3600.0)
        return Scaled(
            energy_kwh=fallback_kwh,
            carbon_g=fallback_kwh * ci,
            scaling="none",
            hw_fallback=True,
            hw_latency=PerInference(fallback_kwh, fallback_kwh * ci),
            measured=None,
            note="the tracker measured no energy; HW power x latency is already per inference and is not scaled",
        )

    hw_kwh = hw_latency_energy_kwh(window_energy_kwh, latency_s, window_s)
    measured_kwh = measured_energy_kwh(window_energy_kwh, forward_passes)
    hw = PerInference(hw_kwh, hw_kwh * ci) if hw_kwh is not None else None
    measured = PerInference(measured_kwh, measured_kwh * ci) if measured_kwh is not None else None

    chosen = hw if method == "hw_latency" else measured
    if chosen is None:
        reason = "the HW latency is 0" if method == "hw_latency" else "no forward pass completed in the window"
        return Scaled(
            energy_kwh=window_energy_kwh,
            carbon_g=window_energy_kwh * ci,
            scaling="none",
            hw_fallback=False,
            hw_latency=hw,
            measured=measured,
            note=f"{method} scaling not applied: {reason}; the values are for the whole window",
        )
    return Scaled(
        energy_kwh=chosen.energy_kwh,
        carbon_g=chosen.carbon_g,
        scaling=method,
        hw_fallback=False,
        hw_latency=hw,
        measured=measured,
    )
