"""What every process of the node needs, without the DDS types that :mod:`carbon_node.core` brings.

The measurement worker and the start of ``carbon-node run`` import this module: cyclonedds costs about
0.2 s of start-up there, before the worker can begin importing torch (:mod:`carbon_node.core` re-exports
both names).
"""

from __future__ import annotations

__all__ = ["CarbonNodeError", "version"]


class CarbonNodeError(Exception):
    """Root of every error the node raises on purpose; its message is shown to users as is."""


def version() -> str:
    """The installed carbon-node version (``0+unknown`` when run from a tree that is not installed)."""
    from importlib import metadata

    try:
        return metadata.version("carbon-node")
    except metadata.PackageNotFoundError:
        return "0+unknown"
