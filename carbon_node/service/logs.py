"""Structured logs: readable on a terminal, one JSON object per line for journald and collectors.

:func:`configure_logging` sets up structlog and routes the standard library's ``logging`` (and
``warnings``) through the same renderer, so a line from Cyclone's Python binding, carbontracker or
transformers looks like one of ours. Those libraries' own chatter is held at WARNING: their INFO lines
(download progress, tracker banners) would otherwise drown the one line per task that matters.
Logs go to stderr; stdout is kept for command results.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog

__all__ = ["NOISY_LOGGERS", "configure_logging", "resolve_format", "tame_library_loggers"]

LogFormat = Literal["auto", "console", "json"]

NOISY_LOGGERS = (
    "carbontracker",
    "transformers",
    "torch",
    "huggingface_hub",
    "filelock",
    "urllib3",
    "requests",
    "geocoder",
    "matplotlib",
    "PIL",
)
"""Third-party loggers kept at WARNING whatever the node's level."""


def resolve_format(log_format: LogFormat, stream: TextIO) -> Literal["console", "json"]:
    """``auto`` means console on a terminal and JSON otherwise (systemd, containers, pipes)."""
    if log_format != "auto":
        return log_format
    isatty = getattr(stream, "isatty", None)
    return "console" if isatty is not None and isatty() else "json"


def configure_logging(
    log_format: LogFormat = "auto",
    level: str = "info",
    *,
    stream: TextIO | None = None,
) -> Literal["console", "json"]:
    """Configure structlog and stdlib logging for this process; returns the format chosen.

    ``level`` is a name (debug, info, warning, error). Safe to call again (tests, the worker process).
    """
    out = sys.stderr if stream is None else stream
    chosen = resolve_format(log_format, out)
    numeric_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if chosen == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
        final: list[Any] = [structlog.processors.dict_tracebacks, renderer]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=bool(getattr(out, "isatty", lambda: False)()))
        final = [renderer]

    structlog.configure(
        # Level first: an event below the level (the per-task line at "warning") costs no rendering.
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, numeric_level))
    tame_library_loggers()
    logging.captureWarnings(True)
    return chosen


def tame_library_loggers() -> None:
    """Route the chatty libraries' loggers through ours, at WARNING.

    carbontracker creates ``carbontracker.<id>.err``/``.output`` loggers that print to stdout and do
    not propagate, each time a tracker is built; call this again after building one. Their file
    handlers are kept: carbontracker parses its own log files.
    """
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if not isinstance(logger, logging.Logger) or name.split(".")[0] not in NOISY_LOGGERS:
            continue
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:  # exact type: FileHandler subclasses it
                logger.removeHandler(handler)
        logger.setLevel(max(logging.WARNING, logging.getLogger().level))
        logger.propagate = True
