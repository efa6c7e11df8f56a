"""The measure service: measure one spec (resolve the model, load it or reuse it, run a tracker window).

:class:`MeasureService` runs in the worker process (:mod:`carbon_node.measure.worker`) and can also run
in the calling process. Loaded models stay in a :class:`~carbon_node.measure.model_cache.ModelCache`,
bounded by count and parameter bytes, keyed on the model's identity (:mod:`carbon_node.measure.identity`:
a local directory's files, a hub snapshot's commit), so a model replaced at the same path is loaded anew
and its old version dropped.

Importing this module is cheap: torch, transformers and carbontracker are imported by the first
measurement (the worker has imported them in its warm-up by then).
"""

from __future__ import annotations

import gc
import time
from typing import TYPE_CHECKING, Literal

import structlog

from carbon_node.measure.heap import EvictedMemory
from carbon_node.measure.identity import directory_identity, snapshot_identity
from carbon_node.measure.model_cache import ModelCache
from carbon_node.measure.protocol import MeasureError, Measurement, MeasureSpec, ModelRejected
from carbon_node.measure.worker_pipe import Reply, WorkerConfig

if TYPE_CHECKING:
    from carbon_node.measure.model_loading import LoadedModel

__all__ = ["MeasureService"]

log = structlog.get_logger(__name__)


class MeasureService:
    """Measures specs: resolves and loads models (kept in a :class:`ModelCache`) and runs tracker windows."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.evicted = EvictedMemory()
        self.models: ModelCache[LoadedModel] = ModelCache(
            config.model_cache_max_models,
            int(config.model_cache_max_mb * 2**20),
            on_evict=self.evicted.watch,
            after_evict=self.evicted.free,
        )

    def resize_cache(self, max_models: int, max_mb: float) -> None:
        """Bound the loaded models anew (count, parameter MiB), evicting what no longer fits."""
        self.models.resize(max_models, int(max_mb * 2**20))
        log.info("worker.cache_resized", max_models=max_models, max_mb=max_mb, loaded=len(self.models))

    def measure(self, spec: MeasureSpec) -> Measurement:
        """Measure ``spec``; raises :class:`ModelRejected` or :class:`MeasureError` with a user-facing message."""
        import torch

        from carbon_node.measure.model_checks import check_allowed
        from carbon_node.measure.model_loading import load_model
        from carbon_node.measure.model_sources import resolve_model_source
        from carbon_node.measure.power import plan_power
        from carbon_node.measure.tracker import run_window

        load_started = time.perf_counter()
        source = resolve_model_source(spec.model, timeout_s=spec.load_timeout_s, allowed_dirs=spec.model_dirs)
        identity = snapshot_identity(source.directory) if source.from_hub else directory_identity(source.directory)
        key = (str(source.directory), identity, spec.device, spec.trust_remote_code)
        self._drop_other_versions(key)
        loaded = self.models.get(key)
        notes: list[str] = []
        if loaded is not None:
            check_allowed(spec, loaded.model_class, loaded.param_bytes)
            load_s = 0.0
        else:
            try:
                loaded = load_model(spec, source, make_room=self.models.make_room)
            except BaseException:
                # A refused or failed load leaves a large half-built model behind. Only then: a full
                # collection in a process holding torch and transformers takes 0.2-0.8 s, which a
                # successful load (nothing left behind) must not pay on every first-seen model.
                gc.collect()
                raise
            load_s = time.perf_counter() - load_started
            if not self.models.put(key, loaded, loaded.param_bytes):
                notes.append("model too large for the worker's model cache: it is not kept")
        if self.config.torch_threads is not None and torch.get_num_threads() != self.config.torch_threads:
            torch.set_num_threads(self.config.torch_threads)
        uses_cuda = loaded.device.startswith("cuda")
        plan = plan_power(sim_cpu_tdp_w=spec.sim_cpu_tdp_w, sim_cpu_util=spec.sim_cpu_util, uses_cuda=uses_cuda)
        with torch.inference_mode():
            result = run_window(
                loaded.forward,
                window_s=spec.window_s,
                scratch_dir=self.config.scratch_dir,
                plan=plan,
                synchronize=torch.cuda.synchronize if uses_cuda else None,
            )
        return Measurement(
            model=spec.model,
            model_class=loaded.model_class,
            device=loaded.device,
            dtype=loaded.dtype,
            energy_kwh=result.energy_kwh,
            window_s=result.window_s,
            forward_passes=result.forward_passes,
            power_source=plan.source,
            cpu_power_source=plan.cpu_source,
            gpu_power_source=plan.gpu_source,
            components=result.components,
            pue=result.pue,
            carbontracker_version=result.carbontracker_version,
            measured_at=result.measured_at,
            load_s=load_s,
            measure_s=result.measure_s,
            notes=(*loaded.notes, *plan.notes, *notes, *result.notes),
            model_identity=identity,
            energy_figure=result.energy_figure,
            carbontracker_energy_kwh=result.carbontracker_energy_kwh,
            counter_energy_kwh=result.counter_energy_kwh,
            torch_threads=torch.get_num_threads(),
        )

    def _drop_other_versions(self, key: tuple[str, str | None, str, bool]) -> None:
        """Evict entries of the same directory and options whose identity differs: they are stale."""
        directory, identity, *options = key
        for other in self.models.keys():  # noqa: SIM118 - a list copy: entries are discarded while looping
            if isinstance(other, tuple) and other[0] == directory and list(other[2:]) == options and other[1] != identity:
                log.info("worker.model_changed", directory=directory, old=other[1], new=identity)
                self.models.discard(other)

    def reply(self, request_id: int, spec: MeasureSpec) -> Reply:
        """:meth:`measure` with every failure turned into a typed :class:`Reply` (never raises)."""
        measurement: Measurement | None = None
        kind: Literal["rejected", "error"] | None = None
        message = ""
        try:
            measurement = self.measure(spec)
        except ModelRejected as exc:
            kind, message = "rejected", str(exc)
        except MeasureError as exc:
            kind, message = "error", str(exc)
        except SystemExit as exc:  # carbontracker calls sys.exit(70) when it finds no component
            kind, message = "error", f"carbontracker stopped the measurement (exit code {exc.code}): no usable power source"
        except Exception as exc:  # anything else is reported, the worker lives on
            kind, message = "error", f"measuring {spec.model!r} failed: {type(exc).__name__}: {exc}"
        if kind is not None:
            log.warning("worker.measure_failed", model=spec.model, kind=kind, error=message)
        return Reply(
            request_id,
            measurement,
            kind,
            message,
            cached_models=len(self.models),
            cached_mb=self.models.total_bytes / 2**20,
        )
