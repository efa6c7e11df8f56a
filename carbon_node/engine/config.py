"""What the engine reads from the node's settings, as plain values (one frozen dataclass).

The service builds it from its settings model (``Settings.engine_config()``); the engine never sees
that model, so a setting of the service (a port, a directory, the log format) cannot reach the
arithmetic. The defaults are those of the node's settings (a test keeps them equal), so that
``EngineConfig()`` is the engine of a node started without configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # core brings the DDS types: ``carbon-node run`` reads this before its worker starts
    from carbon_node.core import LatencyUnit

__all__ = ["EngineConfig", "PerInferenceMethod"]

PerInferenceMethod = Literal["hw_latency", "measured"]
"""What the published doubles carry: upstream's HW-latency scaling or the measured forward passes."""


@dataclass(frozen=True)
class EngineConfig:
    """The engine's settings; each field is the node setting of the same name (units in the names)."""

    latency_unit: LatencyUnit = "h"
    per_inference: PerInferenceMethod = "hw_latency"
    window_s: float = 1.0
    # Grid intensity (the default chain of carbon_node.engine.intensity)
    grid_ci_g_per_kwh: float = 0.0
    live_intensity: bool = False
    live_intensity_timeout_s: float = 5.0
    electricitymaps_api_key: str = ""
    # What a measurement request carries (carbon_node.measure.protocol.MeasureSpec)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    trust_remote_code: bool = False
    model_dirs: tuple[str, ...] = ()
    """Directories that local model paths must be inside; empty allows any absolute directory."""
    max_model_mb: float = 4096.0
    model_load_timeout_s: float = 10.0
    sim_cpu_tdp_w: float | None = None
    sim_cpu_util: float | None = None
    cpu_power_model: Literal["load_model", "carbontracker"] = "load_model"
