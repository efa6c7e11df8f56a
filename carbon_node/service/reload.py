"""What a reload (SIGHUP) may change in a running node, and what needs a restart.

``systemctl reload carbon-node`` (the unit's ``ExecReload=``) and ``kill -HUP`` make the node read its
configuration again: the same command-line flags and the same environment as at start (a process's
environment cannot change), with the configuration file read anew. :func:`plan_reload` compares the
result with the running settings: the settings in :data:`RELOADABLE` take effect from the next task on
(a task already running finishes as it began), every other change is named as needing a restart and
left as it was, so that ``describe`` and ``config`` keep saying what the node really uses. A file that
is invalid leaves the running settings untouched (the error is logged).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from carbon_node.service.settings import Settings

__all__ = ["RELOADABLE", "ReloadPlan", "plan_reload"]

RELOADABLE = frozenset(
    {
        # logs
        "log_level",
        "log_format",
        # the engine (carbon_node.engine.config.EngineConfig): from the next task on
        "window_s",
        "grid_ci_g_per_kwh",
        "latency_unit",
        "per_inference",
        "live_intensity",
        "live_intensity_timeout_s",
        "device",
        "model_load_timeout_s",
        "max_model_mb",
        "trust_remote_code",
        "model_dirs",
        "sim_cpu_tdp_w",
        "sim_cpu_util",
        # the measurement worker and its caches
        "task_timeout_s",
        "measure_cache_ttl_s",
        "model_cache_max_models",
        "model_cache_max_mb",
        # the journal's retention
        "journal_max_tasks",
        "journal_retention_s",
        # task assembly and shutdown
        "input_timeout_s",
        "max_pending_tasks",
        "shutdown_timeout_s",
    }
)
"""Settings a reload applies without a restart; any other change is reported as needing one (the DDS
domain and bus, the directories, the journal on or off, the metrics endpoint, torch's thread count)."""


@dataclass(frozen=True)
class ReloadPlan:
    """The outcome of comparing the running settings with the configuration read again."""

    settings: Settings
    """The settings to run with: the old ones with every reloadable change applied."""
    applied: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    """Reloadable settings that changed: name -> (old value, new value), secrets masked."""
    restart_needed: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    """Settings that changed but need a restart (not applied): name -> (old value, new value)."""

    @property
    def changed(self) -> bool:
        return bool(self.applied or self.restart_needed)


def plan_reload(running: Settings, reread: Settings) -> ReloadPlan:
    """What a reload from ``running`` to ``reread`` applies and what it leaves for a restart."""
    old, new = running.public_dict(), reread.public_dict()
    applied: dict[str, tuple[Any, Any]] = {}
    restart: dict[str, tuple[Any, Any]] = {}
    for name in Settings.model_fields:
        if getattr(running, name) == getattr(reread, name):
            continue
        (applied if name in RELOADABLE else restart)[name] = (old[name], new[name])
    updates = {name: getattr(reread, name) for name in applied}
    settings = running.model_copy(update=updates) if updates else running
    return ReloadPlan(settings, applied, restart)
