"""The node's parts built from its settings: the engine's configuration and the measurement worker.

The settings model stays in this layer; the engine and the measurer receive plain values
(:class:`~carbon_node.engine.config.EngineConfig`, the worker's constructor arguments). The daemon and
``carbon-node estimate`` build their parts here, so the two cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from carbon_node.engine.config import EngineConfig
from carbon_node.service.settings import Settings

if TYPE_CHECKING:
    from carbon_node.measure.client import WorkerMeasurer

__all__ = ["engine_config", "worker_measurer"]


def engine_config(settings: Settings) -> EngineConfig:
    """What the engine reads from ``settings``."""
    return EngineConfig(
        latency_unit=settings.latency_unit,
        per_inference=settings.per_inference,
        window_s=settings.window_s,
        grid_ci_g_per_kwh=settings.grid_ci_g_per_kwh,
        live_intensity=settings.live_intensity,
        live_intensity_timeout_s=settings.live_intensity_timeout_s,
        electricitymaps_api_key=settings.electricitymaps_api_key,
        device=settings.device,
        trust_remote_code=settings.trust_remote_code,
        model_dirs=settings.allowed_model_dirs,
        max_model_mb=settings.max_model_mb,
        model_load_timeout_s=settings.model_load_timeout_s,
        sim_cpu_tdp_w=settings.sim_cpu_tdp_w,
        sim_cpu_util=settings.sim_cpu_util,
        cpu_power_model=settings.cpu_power_model,
    )


def worker_measurer(settings: Settings, scratch_dir: Path) -> WorkerMeasurer:
    """The worker measurer ``settings`` describe (not started). Importing the client does not import
    torch: the worker process does, once started."""
    from carbon_node.measure.client import WorkerMeasurer

    return WorkerMeasurer(
        task_timeout_s=settings.task_timeout_s,
        model_cache_max_models=settings.model_cache_max_models,
        model_cache_max_mb=settings.model_cache_max_mb,
        measure_cache_ttl_s=settings.measure_cache_ttl_s,
        scratch_dir=scratch_dir,
        hub_cache_dir=settings.cache_dir / "huggingface",
        torch_threads=settings.torch_threads,
        prime_tdp_table=not settings.simulated_power,
    )
