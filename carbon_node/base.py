"""What every process of the node needs, without the DDS types that :mod:`carbon_node.core` brings.

The measurement worker and the start of ``carbon-node run`` import this module: cyclonedds costs about
0.2 s of start-up there, before the worker can begin importing torch (:mod:`carbon_node.core` re-exports
both names).
"""

from __future__ import annotations

import logging

import structlog

__all__ = ["CarbonNodeError", "log_enabled", "version"]


class CarbonNodeError(Exception):
    """Root of every error the node raises on purpose; its message is shown to users as is."""


def version() -> str:
    """The installed carbon-node version (``0+unknown`` when run from a tree that is not installed)."""
    from importlib import metadata

    try:
        return metadata.version("carbon-node")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def log_enabled(logger: logging.Logger, level: int) -> bool:
    """Whether an event at ``level`` (``logging.INFO``...) from the structlog logger of the same name as
    the standard ``logger`` is written, for a hot path to skip building one that is not (a filtered
    structlog call still costs about 20 us). When structlog writes through the standard library, as
    ``carbon-node`` configures it, the standard logger's level decides; otherwise (structlog's own
    default) every event is written."""
    if isinstance(structlog.get_config()["logger_factory"], structlog.stdlib.LoggerFactory):
        return logger.isEnabledFor(level)
    return True
