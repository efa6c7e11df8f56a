"""The estimation engine: one complete task in, its one ``CO2FootprintImpl`` (typed) out.

A task flows through short, mostly pure steps: decode (:mod:`.task`) -> choose the path
(:mod:`.paths`) -> resolve the grid intensity (:mod:`.intensity`) -> measure (the :class:`Measurer`,
tracker path only, on the host its :class:`~carbon_node.measure.placement.PlacingMeasurer` chooses for the
task's hardware) -> scale per inference (:mod:`.scaling`) -> build ``extra_data``
(:mod:`.provenance`). Expected failures become the error output here; the runtime turns anything
else that :meth:`Engine.handle` raises into :meth:`Engine.fail`.

The engine holds no state that one task changes for the next (F5): its configuration
(:class:`~carbon_node.engine.config.EngineConfig`, plain values), the measurer and the intensity
sources are fixed at construction.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import structlog

from carbon_node.base import log_enabled
from carbon_node.core import CarbonNodeError, Lane, TaskInputs, TaskOutput, error_output
from carbon_node.engine.config import EngineConfig
from carbon_node.engine.intensity import Intensity, IntensitySource, default_intensity_source, explain, world_average
from carbon_node.engine.paths import Mode, Route, choose_route, failed
from carbon_node.engine.provenance import UNITS, measured_extra_data, onnx_extra_data, simple_extra_data
from carbon_node.engine.scaling import PerInference, hw_energy_kwh, scale_measurement
from carbon_node.engine.task import Task, decode_task
from carbon_node.measure.placement import LOCAL_QUEUE, LocalPlacer, Placement, PlacingMeasurer
from carbon_node.measure.protocol import Measurer, MeasureSpec

__all__ = ["Engine"]

log = structlog.get_logger(__name__)
_stdlib_log = logging.getLogger(__name__)

_ROUTED_MAX = 4096
"""Most tasks kept routed by :meth:`Engine.lane` and not yet handled; beyond, :meth:`Engine.handle` decodes again."""


class Engine:
    """Implements :class:`carbon_node.core.TaskHandler` for the Carbon Footprint node.

    ``intensity`` replaces the whole resolution chain (default: :func:`default_intensity_source` from
    ``config``). A ``measurer`` that is a :class:`PlacingMeasurer` (the pool of measure hosts) chooses where
    each measurement runs; any other measures everything itself (:class:`LocalPlacer`). ``clock``
    (seconds, monotonic) times each task for ``TaskOutput.timings``.
    """

    def __init__(
        self,
        config: EngineConfig,
        measurer: Measurer,
        intensity: IntensitySource | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.measurer = measurer
        self.placer: PlacingMeasurer = measurer if isinstance(measurer, PlacingMeasurer) else LocalPlacer(measurer)
        self._default_intensity = intensity is None
        if intensity is None:
            intensity = default_intensity_source(
                config.grid_ci_g_per_kwh,
                live_intensity=config.live_intensity,
                live_intensity_timeout_s=config.live_intensity_timeout_s,
                electricitymaps_api_key=config.electricitymaps_api_key,
            )
        self.intensity = intensity
        # An intensity source that does not say it never blocks (an injected one) is taken to block.
        self._onnx_lane = Lane.FAST if getattr(intensity, "may_block", True) else Lane.INLINE
        self._clock = clock
        # lane() decodes and routes each task on the bus thread; handle() reuses that work on its lane.
        # Keyed by id(inputs), the inputs kept alongside so that an id reused by a new object never matches.
        # A measured task's placement is chosen there too: the dispatcher queues it by its host.
        self._routed: dict[int, tuple[TaskInputs, Task, Route, Placement | None]] = {}

    # TaskHandler

    def lane(self, inputs: TaskInputs) -> Lane:
        """MEASURE for the tracker path; INLINE for no_model and early errors, and for ONNX unless its
        grid intensity may wait on a live lookup (then FAST)."""
        if not inputs.complete:
            return Lane.INLINE
        task, route = self.route(inputs)
        if len(self._routed) >= _ROUTED_MAX:  # tasks routed but never handled (a stop): forget them
            self._routed.clear()
        placement = self.placer.place(task.hw_description, task.model) if route.mode is Mode.TRACKER else None
        self._routed[id(inputs)] = (inputs, task, route, placement)
        if route.mode is Mode.TRACKER:
            return Lane.MEASURE
        return self._onnx_lane if route.mode is Mode.ONNX_HW_ONLY else Lane.INLINE

    def measure_queue(self, inputs: TaskInputs) -> str:
        """The measure queue of a task :meth:`lane` put on ``Lane.MEASURE``: the id of the measure host chosen
        for it, or :data:`~carbon_node.measure.placement.LOCAL_QUEUE` (the node's own lane). Cheap."""
        routed = self._routed.get(id(inputs))
        placement = routed[3] if routed is not None and routed[0] is inputs else None
        return placement.queue if placement is not None else LOCAL_QUEUE

    def handle(self, inputs: TaskInputs) -> TaskOutput:
        """The output of a complete task. Measurement failures are answered, not raised."""
        started = self._clock()
        if not inputs.complete:
            return self.fail(inputs, failed(f"missing input(s): {', '.join(inputs.missing)}"))
        routed = self._routed.pop(id(inputs), None)
        placement: Placement | None = None
        if routed is not None and routed[0] is inputs:
            _, task, route, placement = routed
        else:
            task, route = self.route(inputs)
        if route.mode is Mode.NO_MODEL:
            output = TaskOutput(task.task_id, 0.0, 0.0, 0.0, simple_extra_data(task, Mode.NO_MODEL, route.error))
        elif route.mode is Mode.ERROR:
            output = self._error(inputs, task, route.error or failed("unknown error"))
        elif route.mode is Mode.ONNX_HW_ONLY:
            output = self._onnx(task, onnx_file_present=bool(route.onnx_file_present))
        else:
            output = self._tracker(inputs, task, placement)
        timings = {**output.timings, "total_s": self._clock() - started}
        output = dataclasses.replace(output, timings=timings)
        # The bus writes the one info line per task (with queue time); this one is for debugging.
        if log_enabled(_stdlib_log, logging.DEBUG):
            log.debug(
                "engine.task_done",
                task_id=str(task.task_id),
                model=task.model,
                mode=output.mode,
                carbon_g=output.carbon_g,
                energy_kwh=output.energy_kwh,
                grid_ci_g_per_kwh=output.grid_ci_g_per_kwh,
                grid_ci_source=output.extra_data.get("grid_ci_source"),
                error=output.extra_data.get("error"),
                **{k: round(v, 4) for k, v in timings.items()},
            )
        return output

    def fail(self, inputs: TaskInputs, message: str) -> TaskOutput:
        """The error output of a task that cannot be computed. Never raises."""
        return error_output(inputs, message, latency_unit=self.config.latency_unit, units=dict(UNITS))

    def reconfigure(self, config: EngineConfig) -> None:
        """Use ``config`` from the next task on (a reloaded configuration). The intensity chain is rebuilt
        when a grid setting changed, unless it was injected; a task already running finishes as it began."""
        grid = ("grid_ci_g_per_kwh", "live_intensity", "live_intensity_timeout_s", "electricitymaps_api_key")
        if self._default_intensity and any(getattr(config, f) != getattr(self.config, f) for f in grid):
            self.intensity = default_intensity_source(
                config.grid_ci_g_per_kwh,
                live_intensity=config.live_intensity,
                live_intensity_timeout_s=config.live_intensity_timeout_s,
                electricitymaps_api_key=config.electricitymaps_api_key,
            )
            self._onnx_lane = Lane.FAST if getattr(self.intensity, "may_block", True) else Lane.INLINE
            self.warm_up()
        self.config = config

    def warm_up(self) -> None:
        """Start loading what lookups will need (the place resolver's data) in the background; the
        daemon calls it once NODE_IDLE is published. A lookup before the load ends waits for it."""
        start = getattr(self.intensity, "start", None)
        if callable(start):
            start()

    def abort(self) -> None:
        """Abort the measurement in progress, when the measurer supports it (shutdown)."""
        abort = getattr(self.measurer, "abort", None)
        if callable(abort):
            abort()

    # Steps

    def route(self, inputs: TaskInputs) -> tuple[Task, Route]:
        """Decode complete ``inputs`` and choose their path (cheap: one stat at most)."""
        task = decode_task(inputs, self.config.latency_unit)
        return task, choose_route(task)

    def spec(self, task: Task) -> MeasureSpec:
        """What the measurer is asked to measure for ``task``."""
        s = self.config
        return MeasureSpec(
            model=task.model,
            window_s=s.window_s,
            device=s.device,
            unsupported_models=task.unsupported_models,
            trust_remote_code=s.trust_remote_code,
            model_dirs=s.model_dirs,
            max_model_mb=s.max_model_mb,
            load_timeout_s=s.model_load_timeout_s,
            sim_cpu_tdp_w=s.sim_cpu_tdp_w,
            sim_cpu_util=s.sim_cpu_util,
            cpu_power_model=s.cpu_power_model,
        )

    def _intensity(self, task: Task) -> Intensity:
        answer = self.intensity.lookup(task.location)
        # An injected source may have no last resort: carbontracker's world average is ours.
        return explain(answer if answer is not None else world_average(), task.location)

    def _error(self, inputs: TaskInputs, task: Task, message: str, **extra: Any) -> TaskOutput:
        if task.warnings:
            extra["warnings"] = list(task.warnings)
        return error_output(inputs, message, latency_unit=task.latency_unit, units=dict(UNITS), **extra)

    def _onnx(self, task: Task, *, onnx_file_present: bool) -> TaskOutput:
        intensity = self._intensity(task)
        energy_kwh = hw_energy_kwh(task.power_w, task.latency_h)
        per_inference = PerInference(energy_kwh, energy_kwh * intensity.g_per_kwh)
        return TaskOutput(
            task.task_id,
            carbon_g=per_inference.carbon_g,
            energy_kwh=energy_kwh,
            # Upstream publishes the grid intensity itself on this path, even when the energy is 0.
            grid_ci_g_per_kwh=intensity.g_per_kwh,
            extra_data=onnx_extra_data(task, intensity, per_inference, onnx_file_present=onnx_file_present),
        )

    def _tracker(self, inputs: TaskInputs, task: Task, placement: Placement | None = None) -> TaskOutput:
        spec = self.spec(task)
        if placement is None:  # handled without being routed first (estimate, tests)
            placement = self.placer.place(task.hw_description, task.model)
        try:
            measurement, measured_on = self.placer.measure_placed(spec, placement)
        except CarbonNodeError as exc:  # MeasureError and its subclasses: user-facing messages
            where = getattr(exc, "measured_on", None)
            extra = {"measured_on": where.as_dict()} if where is not None else {}
            return self._error(inputs, task, failed(str(exc)), error_kind=type(exc).__name__, **extra)
        intensity = self._intensity(task)
        window_s = measurement.window_s if measurement.window_s > 0 else spec.window_s
        scaled = scale_measurement(
            window_energy_kwh=measurement.energy_kwh,
            window_s=window_s,
            forward_passes=measurement.forward_passes,
            latency_s=task.latency_s,
            power_w=task.power_w,
            grid_ci_g_per_kwh=intensity.g_per_kwh,
            method=self.config.per_inference,
        )
        return TaskOutput(
            task.task_id,
            carbon_g=scaled.carbon_g,
            energy_kwh=scaled.energy_kwh,
            grid_ci_g_per_kwh=scaled.carbon_intensity_g_per_kwh,
            extra_data=measured_extra_data(task, intensity, measurement, scaled, measured_on=measured_on.as_dict()),
            timings={"load_s": measurement.load_s, "measure_s": measurement.measure_s},
        )
