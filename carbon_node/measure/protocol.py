"""The measurer plug point: "measure this model spec for this long", nothing about tasks or DDS.

The engine asks a :class:`Measurer` for a :class:`Measurement` of a :class:`MeasureSpec`. The real
implementation runs the model in a long-lived worker process under carbontracker
(:mod:`carbon_node.measure.client`); :class:`carbon_node.testing.FakeMeasurer` stands in where no
measurement is wanted.

Everything here is plain data that crosses a process boundary (picklable, no torch objects).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from carbon_node.base import CarbonNodeError
from carbon_node.measure.uncertainty import EnergyUncertainty

__all__ = [
    "CpuPowerModel",
    "EnergyFigure",
    "MeasureError",
    "MeasureSpec",
    "MeasureTimeout",
    "Measurement",
    "Measurer",
    "ModelRejected",
    "PowerSource",
    "WorkerCrashed",
]

PowerSource = Literal["rapl", "nvml", "tdp_table", "simulated", "hw_provider", "none"]
"""How the window energy was obtained: a counter (rapl, nvml), carbontracker's CPU TDP table, simulated
power (sim_cpu settings), the HW provider's power x latency, or nothing."""

EnergyFigure = Literal["carbontracker", "rapl_counter", "load_model"]
"""Which figure a window's energy is: carbontracker's integral, or for the CPU share the RAPL counters or
the load-to-power model (:mod:`carbon_node.measure.load_power`)."""

CpuPowerModel = Literal["load_model", "carbontracker"]
"""Which CPU power a window without a counter publishes: the load model's, or carbontracker's 50 % of TDP."""


class MeasureError(CarbonNodeError):
    """A measurement could not be made; the message is user-facing."""


class ModelRejected(MeasureError):
    """The model cannot be measured: unknown id, unsupported class, too large, corrupt config."""


class MeasureTimeout(MeasureError):
    """The measurement exceeded its time limit; the worker was replaced."""


class WorkerCrashed(MeasureError):
    """The worker process died during the measurement; it was replaced."""


@dataclass(frozen=True)
class MeasureSpec:
    """What to measure: a model id or local directory, where, in which dtype, for how long (seconds)."""

    model: str
    window_s: float
    device: Literal["auto", "cpu", "cuda"] = "auto"
    unsupported_models: tuple[str, ...] = ()
    trust_remote_code: bool = False
    model_dirs: tuple[str, ...] = ()
    """Directories a local model path must be inside (empty: any absolute directory)."""
    max_model_mb: float = 4096.0
    load_timeout_s: float = 10.0
    sim_cpu_tdp_w: float | None = None
    sim_cpu_util: float | None = None
    cpu_power_model: CpuPowerModel = "load_model"
    """Without a CPU energy counter: publish the load model's CPU power, or carbontracker's."""


@dataclass(frozen=True)
class Measurement:
    """One measurement window of forward passes.

    ``energy_kwh`` is carbontracker's energy for the whole window, PUE included; ``window_s`` the
    wall time of the window in seconds; ``forward_passes`` the passes completed in it.
    """

    model: str
    model_class: str
    device: str
    dtype: str
    energy_kwh: float
    window_s: float
    forward_passes: int
    power_source: PowerSource
    components: tuple[str, ...]
    pue: float
    carbontracker_version: str
    measured_at: str
    """UTC ISO 8601 time the window ended."""
    load_s: float = 0.0
    """Seconds spent loading the model for this measurement (0 when it was cached in the worker)."""
    measure_s: float = 0.0
    """Seconds the tracker run took, window and carbontracker overhead included."""
    cached: bool = False
    """True when answered from the measurement cache without running the model."""
    cpu_power_source: str = ""
    """How the CPU share was obtained: ``rapl``, ``tdp_table`` or ``simulated``."""
    gpu_power_source: str | None = None
    """``nvml`` when a GPU was measured, else None."""
    notes: tuple[str, ...] = field(default_factory=tuple)
    model_identity: str | None = None
    """What the model string named when it was measured (:mod:`carbon_node.measure.identity`): the
    measurement cache answers only while the model still has this identity."""
    energy_figure: EnergyFigure = "carbontracker"
    """Which figure ``energy_kwh`` is (see :mod:`carbon_node.measure.tracker`)."""
    carbontracker_energy_kwh: float | None = None
    """carbontracker's own figure for the window (kWh, PUE included)."""
    counter_energy_kwh: float | None = None
    """The RAPL counters over the window (kWh, PUE included), when they were read."""
    torch_threads: int | None = None
    """torch's intra-op thread count in the worker during the window (the per-pass energy follows it)."""
    power_model: dict[str, str | int | float] | None = None
    """With ``energy_figure`` ``load_model``: the model's name, inputs and CPU power (see
    :meth:`carbon_node.measure.load_power.LoadPowerModel.describe`)."""
    uncertainty: EnergyUncertainty | None = None
    """What bounds the window's per-inference energy: the power source's part and the window's spread."""

    @property
    def energy_per_pass_kwh(self) -> float:
        return self.energy_kwh / self.forward_passes if self.forward_passes > 0 else 0.0


class Measurer(Protocol):
    """The one method the engine needs. Implementations raise :class:`MeasureError` subclasses."""

    def measure(self, spec: MeasureSpec) -> Measurement:
        """Measure ``spec`` (blocking, bounded by the implementation's timeouts)."""
