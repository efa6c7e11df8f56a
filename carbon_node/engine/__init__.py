"""The estimation core: task decoding, paths, grid intensity, per-inference scaling, provenance.

:class:`Engine` is what the bus runtime calls (:class:`carbon_node.core.TaskHandler`); it knows
nothing of DDS and imports neither torch, transformers nor carbontracker.

The names below are loaded on first use: importing a submodule (``carbon_node.engine.config``, which
``carbon-node run`` reads before its measurement worker starts) does not import the others, and with
them the task vocabulary and its DDS types.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from carbon_node.engine.engine import Engine
    from carbon_node.engine.intensity import Intensity, IntensityChain, IntensitySource, default_intensity_source
    from carbon_node.engine.paths import Mode
    from carbon_node.engine.task import Location, Task, decode_task

__all__ = [
    "Engine",
    "Intensity",
    "IntensityChain",
    "IntensitySource",
    "Location",
    "Mode",
    "Task",
    "decode_task",
    "default_intensity_source",
]

_HOMES = {
    "Engine": "engine",
    "Intensity": "intensity",
    "IntensityChain": "intensity",
    "IntensitySource": "intensity",
    "default_intensity_source": "intensity",
    "Mode": "paths",
    "Location": "task",
    "Task": "task",
    "decode_task": "task",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'carbon_node.engine' has no attribute {name!r}")
    return getattr(importlib.import_module(f"carbon_node.engine.{home}"), name)
