"""The output ``extra_data``: upstream's keys unchanged, then what the numbers are made of.

Upstream keys (K2, K3): ``num_outputs``, ``model_restrains`` (:func:`carbon_node.core.base_extra_data`,
F1 coercion), ``mode``, ``error`` (error and no_model outputs) and ``grid_ci_source``.

Added keys, present on every ``tracker`` and ``onnx_hw_only`` output (``null`` when not applicable):

| key | meaning |
|---|---|
| ``grid_ci_g_per_kwh``, ``grid_ci_zone``, ``grid_ci_year`` | the intensity used, its zone (``US-CA``, ``ES``, ``SE-SE3``, |
|   | ``gcp:europe-west1``, ``Europe``, ``world``) and year (null where the data does not say) |
| ``grid_ci_zone_kind`` | country, subnational, cloud_region, continent, world or configured |
| ``grid_ci_dataset`` | the dataset the figure comes from, with the package and file that ship it |
| ``grid_ci_match`` | ``{text, matched, how}``: the place text as given, what it was read as, and how (exact, alias, |
|   | city, cloud_region, zone_id, fuzzy, continent; world, configured, live) |
| ``power_source`` | rapl, nvml, tdp_table, simulated, or hw_provider (HW power x latency) |
| ``power_sources`` | per component: ``{cpu: rapl/tdp_table/simulated, gpu: nvml or null}`` (null when nothing was measured) |
| ``components`` | what carbontracker measured (cpu, gpu) |
| ``window_s``, ``forward_passes`` | the measured window (seconds) and the passes completed in it |
| ``measured_per_inference`` | ``{energy_kwh, carbon_g}``: window / forward passes (F3) |
| ``hw_latency_per_inference`` | ``{energy_kwh, carbon_g}`` from the HW latency: window x latency / window |
|   | (upstream), or HW power x latency on the ONNX path and when nothing was measured |
| ``scaling`` | what the three doubles carry: hw_latency, measured or none |
| ``scaling_note`` | why the configured scaling was not applied, when it was not |
| ``latency_unit``, ``latency_s``, ``power_w`` | the HW input as understood (F2) |
| ``pue``, ``cached``, ``measured_at``, ``carbontracker_version`` | measurement provenance |
| ``energy_figure`` | which figure the window energy is: ``carbontracker``, ``rapl_counter`` (carbontracker's |
|   | CPU share was zero or > 25 % off the RAPL counters, which replaced it) or ``load_model`` (no counter: |
|   | the CPU share from the load-to-power model, :mod:`carbon_node.measure.load_power`) |
| ``power_model`` | with ``load_model``: the model's name, inputs (TDP and its source, threads per package and |
|   | their source, logical CPUs, torch threads, CPU seconds, load, socket share) and CPU power (W); else null |
| ``uncertainty`` | ``{energy_kwh: [low, high], carbon_g: [low, high], level, parts, combination}`` bounding the |
|   | published per-inference values (:mod:`carbon_node.engine.uncertainty`) |
| ``carbontracker_energy_kwh`` | carbontracker's own figure for the window (kWh, PUE included) |
| ``counter_energy_kwh`` | the RAPL package (+ DRAM) counters over the window, wrap-corrected (kWh, PUE included); |
|   | null when the CPU was not measured by RAPL or the counters could not be read |
| ``torch_threads`` | torch's intra-op thread count during the window (the per-pass energy follows it) |
| ``model_class``, ``device``, ``dtype`` | what was run |
| ``model_identity`` | which version of the model was measured: ``files:<digest>`` of a local directory's files, |
|   | ``rev:<commit>`` of a hub snapshot (null on the ONNX path, or when it could not be told) |
| ``measurement_notes`` | ``tracker`` only, when there are some: how the model was run (weights, synthetic input, ...) |
| ``measured_on`` | ``tracker`` only: ``{host, hardware, matched, reason}``, where the window ran: ``local`` or a measure |
|   | host's id, the hardware name that matched ``hw_description`` (else the host's first), whether one did, |
|   | why that host (:class:`carbon_node.measure.placement.MeasuredOn`) |
| ``onnx_file_present`` | ``onnx_hw_only`` only: whether ``model_path`` exists on this host (never read) |
| ``units`` | units of the three published doubles |
| ``warnings`` | input problems that did not stop the task (only when there are some), a place text not |
|   | understood or read as a typo among them |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from carbon_node.core import base_extra_data
from carbon_node.engine.intensity import Intensity
from carbon_node.engine.paths import Mode
from carbon_node.engine.scaling import PerInference, Scaled
from carbon_node.engine.task import Task
from carbon_node.engine.uncertainty import hw_uncertainty, measured_uncertainty
from carbon_node.measure.protocol import Measurement

__all__ = ["UNITS", "measured_extra_data", "onnx_extra_data", "simple_extra_data"]

UNITS = {"carbon_footprint": "gCO2e", "energy_consumption": "kWh", "carbon_intensity": "gCO2e/kWh"}
"""Units of the three doubles of ``CO2FootprintImpl`` as this node produces them."""


def _intensity_keys(intensity: Intensity) -> dict[str, Any]:
    return {
        "grid_ci_source": intensity.source,
        "grid_ci_g_per_kwh": intensity.g_per_kwh,
        "grid_ci_zone": intensity.zone or None,
        "grid_ci_year": intensity.year,
        "grid_ci_zone_kind": intensity.kind or None,
        "grid_ci_dataset": intensity.dataset or None,
        "grid_ci_match": intensity.match.as_dict() if intensity.match is not None else None,
    }


def _hw_keys(task: Task) -> dict[str, Any]:
    return {"latency_unit": task.latency_unit, "latency_s": task.latency_s, "power_w": task.power_w}


def _per_inference(value: PerInference | None) -> dict[str, float] | None:
    return value.as_dict() if value is not None else None


def _tail(task: Task, intensity: Intensity | None = None) -> dict[str, Any]:
    tail: dict[str, Any] = {"units": dict(UNITS)}
    warnings = [*task.warnings, *(intensity.warnings if intensity is not None else ())]
    if warnings:
        tail["warnings"] = warnings
    return tail


def simple_extra_data(task: Task, mode: Mode, error: str | None = None) -> dict[str, Any]:
    """``extra_data`` of an output without numbers (``no_model``): upstream keys, latency unit, units."""
    data = base_extra_data(task.model, task.user_extra)
    data["mode"] = mode.value
    if error is not None:
        data["error"] = error
    data["latency_unit"] = task.latency_unit
    data.update(_tail(task))
    return data


def onnx_extra_data(task: Task, intensity: Intensity, per_inference: PerInference, *, onnx_file_present: bool) -> dict[str, Any]:
    """``extra_data`` of an ``onnx_hw_only`` output: HW power x latency, nothing measured.

    ``onnx_file_present``: whether ``model_path`` exists on this host (never read; as upstream, the
    answer does not depend on it).
    """
    data = base_extra_data(task.model, task.user_extra)
    data["mode"] = Mode.ONNX_HW_ONLY.value
    data.update(_intensity_keys(intensity))
    data.update(
        {
            "power_source": "hw_provider",
            "power_sources": None,
            "components": [],
            "window_s": None,
            "forward_passes": None,
            "measured_per_inference": None,
            "hw_latency_per_inference": per_inference.as_dict(),
            # power x latency is one inference already: nothing to scale.
            "scaling": "none",
        }
    )
    data.update(_hw_keys(task))
    data.update(
        {
            "pue": None,
            "cached": False,
            "measured_at": None,
            "carbontracker_version": None,
            "energy_figure": None,
            "carbontracker_energy_kwh": None,
            "counter_energy_kwh": None,
            "torch_threads": None,
            "model_class": None,
            "device": None,
            "dtype": None,
            "model_identity": None,
            "power_model": None,
            "uncertainty": hw_uncertainty(per_inference.energy_kwh, per_inference.carbon_g, intensity),
            "onnx_file_present": onnx_file_present,
        }
    )
    data.update(_tail(task, intensity))
    return data


def measured_extra_data(
    task: Task, intensity: Intensity, measurement: Measurement, scaled: Scaled, *, measured_on: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``extra_data`` of a ``tracker`` output; ``measured_on``: where the window ran (``MeasuredOn.as_dict()``)."""
    data = base_extra_data(task.model, task.user_extra)
    data["mode"] = Mode.TRACKER.value
    data.update(_intensity_keys(intensity))
    data.update(
        {
            "power_source": "hw_provider" if scaled.hw_fallback else measurement.power_source,
            "power_sources": {"cpu": measurement.cpu_power_source or None, "gpu": measurement.gpu_power_source},
            "components": list(measurement.components),
            "window_s": measurement.window_s,
            "forward_passes": measurement.forward_passes,
            "measured_per_inference": _per_inference(scaled.measured),
            "hw_latency_per_inference": _per_inference(scaled.hw_latency),
            "scaling": scaled.scaling,
        }
    )
    if scaled.note:
        data["scaling_note"] = scaled.note
    data.update(_hw_keys(task))
    data.update(
        {
            "pue": measurement.pue,
            "cached": measurement.cached,
            "measured_at": measurement.measured_at,
            "carbontracker_version": measurement.carbontracker_version,
            "energy_figure": measurement.energy_figure,
            "carbontracker_energy_kwh": measurement.carbontracker_energy_kwh,
            "counter_energy_kwh": measurement.counter_energy_kwh,
            "torch_threads": measurement.torch_threads,
            "model_class": measurement.model_class,
            "device": measurement.device,
            "dtype": measurement.dtype,
            "model_identity": measurement.model_identity,
            "power_model": measurement.power_model,
            "uncertainty": measured_uncertainty(measurement, scaled, intensity),
        }
    )
    notes = list(measurement.notes)
    if task.power_w > 0 and not scaled.hw_fallback:
        notes.append(
            f"HWResource.power_consumption ({task.power_w:g} W) is not used: the energy was measured (measured_on says where)"
            " (the HW power is used on the ONNX path, and when a window measures nothing)"
        )
    if notes:
        data["measurement_notes"] = notes
    if measured_on is not None:
        data["measured_on"] = dict(measured_on)
    data.update(_tail(task, intensity))
    return data
