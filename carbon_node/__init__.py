"""carbon-node: a SustainML-compatible Carbon Footprint node on Cyclone DDS.

``from carbon_node import CarbonFootprintNode`` gives the upstream ``sustainml_py`` node API; it is
loaded on first use so that importing a submodule stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from carbon_node.bus.node import CarbonFootprintNode

__all__ = ["CarbonFootprintNode"]


def __getattr__(name: str) -> Any:
    if name == "CarbonFootprintNode":
        from carbon_node.bus.node import CarbonFootprintNode

        return CarbonFootprintNode
    raise AttributeError(f"module 'carbon_node' has no attribute {name!r}")
