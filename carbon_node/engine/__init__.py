"""The estimation core: task decoding, paths, grid intensity, per-inference scaling, provenance.

:class:`Engine` is what the bus runtime calls (:class:`carbon_node.core.TaskHandler`); it knows
nothing of DDS and imports neither torch, transformers nor carbontracker.
"""

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
