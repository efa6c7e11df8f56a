"""The measurement pool's parts built from the settings, for the node and for a measure host.

- the node: :func:`node_placer` wraps the node's own measurer in a
  :class:`~carbon_node.bus.pool_measurer.PoolMeasurer` (``measure_pool`` on) or a
  :class:`~carbon_node.measure.placement.LocalPlacer` (off), and :func:`connect_pool` joins the domain
  (a pool that cannot join is logged and the node measures locally: the pool never stops the node);
- a measure host: :func:`host_names` (what it answers to), :func:`power_sources` (what it can measure
  with), :func:`spec_template` (its own measurement settings);
- both, and ``carbon-node hosts`` / ``doctor``: :func:`live_hosts` (who is on the domain now).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from carbon_node.measure.hardware import host_hardware
from carbon_node.measure.placement import LocalPlacer, PlacingMeasurer
from carbon_node.measure.protocol import Measurement, Measurer, MeasureSpec
from carbon_node.service.settings import Settings

__all__ = ["connect_pool", "host_names", "live_hosts", "node_placer", "power_sources", "spec_template"]

log = structlog.get_logger(__name__)


def host_names(settings: Settings, given: tuple[str, ...] = (), proc_root: Path = Path("/proc")) -> list[str]:
    """The hardware names this host answers to: ``given`` (``--hardware-name``), ``hardware_names``, then
    the detected GPU and CPU models (:func:`carbon_node.measure.hardware.host_hardware`)."""
    return host_hardware((*given, *settings.hardware_name_list), proc_root)


def node_placer(
    settings: Settings, local: Measurer, on_measurement: Callable[[Measurement], None] | None = None
) -> PlacingMeasurer:
    """Where the node's measurements run: the pool (``measure_pool``) or always on ``local``."""
    names = host_names(settings)
    if not settings.measure_pool:
        return LocalPlacer(local, names, reason="the measure host pool is off (measure_pool)")
    from carbon_node.bus.pool_measurer import PoolMeasurer

    return PoolMeasurer(
        local,
        hardware=names,
        fallback=settings.pool_fallback,
        # Read per request: a reload changes the worker's time limit, and the pool follows it.
        task_timeout_s=lambda: float(getattr(local, "task_timeout_s", settings.task_timeout_s)),
        on_measurement=on_measurement,
    )


def connect_pool(placer: PlacingMeasurer, settings: Settings, node_id: str | None = None) -> None:
    """Join the domain with ``placer``'s pool client (nothing for a :class:`LocalPlacer`), its requests named
    after ``node_id`` (the node's announced id); a failure is logged and leaves every measurement local."""
    connect = getattr(placer, "connect", None)
    if not callable(connect):
        return
    from carbon_node.bus.pool_client import PoolClient

    try:
        connect(PoolClient(settings.domain_id, node_id=node_id))
    except Exception as exc:  # a DDS error must not stop the node: it measures locally as before
        log.warning("pool.unavailable", error=f"{type(exc).__name__}: {exc}"[:300], consequence="every measurement on this host")


def power_sources(settings: Settings, powercap_root: Path | None = None) -> list[str]:
    """What a host measures with: ``simulated`` (sim settings), else ``rapl`` when its counters are
    readable, ``nvml`` when NVML answers, ``tdp_table`` (carbontracker's estimate) when neither."""
    if settings.simulated_power:
        return ["simulated"]
    from carbon_node.measure.power import POWERCAP_ROOT, nvml_available, rapl_readable

    found = ["rapl"] if rapl_readable(powercap_root or POWERCAP_ROOT) else []
    if nvml_available():
        found.append("nvml")
    return found or ["tdp_table"]


def spec_template(settings: Settings) -> MeasureSpec:
    """A measure host's own measurement settings; each request brings its model, window and unsupported
    models (:class:`~carbon_node.bus.pool_host.MeasureHost`)."""
    return MeasureSpec(
        model="",
        window_s=settings.window_s,
        device=settings.device,
        trust_remote_code=settings.trust_remote_code,
        model_dirs=settings.allowed_model_dirs,
        max_model_mb=settings.max_model_mb,
        load_timeout_s=settings.model_load_timeout_s,
        sim_cpu_tdp_w=settings.sim_cpu_tdp_w,
        sim_cpu_util=settings.sim_cpu_util,
        cpu_power_model=settings.cpu_power_model,
    )


def live_hosts(domain_id: int, wait_s: float) -> list[dict[str, Any]]:
    """The measure hosts live on ``domain_id``, as seen after ``wait_s`` seconds of discovery (the
    announcements are TRANSIENT_LOCAL: a new reader gets them as soon as it has found their writers)."""
    import time

    from carbon_node.bus.announce import AnnouncementBoard
    from carbon_node.bus.cyclone import create_participant, delete_entity

    participant = create_participant(domain_id, "CARBON_NODE_HOSTS")
    try:
        board = AnnouncementBoard(participant)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        now = time.time()
        return [
            {
                "host_id": a.node_id,
                "host_name": a.host_name,
                "state": a.state,
                "hardware": list(a.hardware),
                "power_sources": list(a.power_sources),
                "version": a.version,
                "up_s": round(max(0.0, now - a.started_at_s), 1),
                "queue": a.details().get("queue"),
                "served": a.details().get("served"),
            }
            for a in board.live("measure_host")
        ]
    finally:
        delete_entity(participant)
