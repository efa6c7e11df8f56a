"""Settings as command-line flags, and how a command loads the settings it uses.

Every setting of :class:`~carbon_node.service.settings.Settings` is a flag named after its field
(``window_s`` is ``--window-s``); precedence is flag > environment > TOML file (``--config`` or
``CARBON_NODE_CONFIG``) > default. An invalid value ends the command with one line naming the setting,
the value and what is allowed, and exit status 2 (argparse's own status for usage errors). A command
that uses a few settings reads only those (``ESTIMATE_FIELDS``...): an invalid setting it never reads
does not stop it.
"""

from __future__ import annotations

import argparse
import json
import os
import typing
from collections.abc import Iterable
from typing import Any

from carbon_node.service.settings import LoadedSettings, Settings, SettingsError, env_name, load_settings

__all__ = [
    "ALL_SETTINGS",
    "ESTIMATE_FIELDS",
    "PROG",
    "add_settings_flags",
    "configure_logs",
    "flag_name",
    "load_for",
    "result_exit_code",
]

PROG = "carbon-node"
EXIT_OK = 0
EXIT_ERROR_ANSWER = 1
EXIT_USAGE = 2
EXIT_NO_ANSWER = 3

RESULT_EXIT_CODES = (
    "exit status: 0 the node answered (mode tracker or onnx_hw_only, or no_model for NO_MODEL); 1 the "
    "answer is an error (mode error; the result is still printed); 2 invalid options or settings; "
    "3 no answer within the time limit (send-task: no node, or too slow)"
)
"""The exit statuses ``send-task`` and ``estimate`` share (also in their ``--help`` and the README)."""

SECRET_FIELDS = frozenset({"electricitymaps_api_key"})
"""Settings never taken from the command line (other users can read a process's arguments)."""

LOG_FIELDS = ("log_format", "log_level")

SEND_TASK_FIELDS = ("domain_id", *LOG_FIELDS)
"""The settings ``send-task`` uses (the only ones it reads)."""

ESTIMATE_FIELDS = (
    "window_s",
    "grid_ci_g_per_kwh",
    "latency_unit",
    "per_inference",
    "live_intensity",
    "live_intensity_timeout_s",
    "electricitymaps_api_key",
    "device",
    "task_timeout_s",
    "model_load_timeout_s",
    "max_model_mb",
    "trust_remote_code",
    "model_dirs",
    "sim_cpu_tdp_w",
    "sim_cpu_util",
    "torch_threads",
    "cache_dir",
    *LOG_FIELDS,
)
"""The settings ``estimate`` uses: only these are flags of the command and only these are read (an
invalid bus, journal or metrics setting in the environment does not concern it)."""


WHERE_FIELDS = ("grid_ci_g_per_kwh", "live_intensity", "live_intensity_timeout_s", "electricitymaps_api_key", *LOG_FIELDS)
"""The settings ``where`` uses: those of the intensity chain."""


def flag_name(field_name: str) -> str:
    """The command-line flag of a setting."""
    return "--" + field_name.replace("_", "-")


def default_text(name: str) -> str:
    info = Settings.model_fields[name]
    if name in ("state_dir", "cache_dir"):
        return "see description"
    return "unset" if info.default is None else str(info.default)


def _metavar(name: str) -> str:
    """A placeholder that shows the unit when the name carries one (``--window-s SECONDS``)."""
    units = {"_s": "SECONDS", "_w": "WATTS", "_mb": "MIB", "_dir": "DIR", "_port": "PORT", "_per_kwh": "G_PER_KWH"}
    for suffix, metavar in units.items():
        if name.endswith(suffix):
            return metavar
    annotation = Settings.model_fields[name].annotation
    return "N" if annotation is int else "X" if annotation in (float, float | None) else "TEXT"


FLAG_ALIASES: dict[str, tuple[str, ...]] = {"domain_id": ("--domain",)}
"""Short spellings kept for the commands the issues and upstream docs name."""


def add_settings_flags(parser: argparse.ArgumentParser, fields: Iterable[str]) -> None:
    group = parser.add_argument_group("settings (flag > environment > --config file > default)")
    group.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="TOML file with settings (field names as keys, optionally under [carbon_node]); env CARBON_NODE_CONFIG",
    )
    for name in fields:
        info = Settings.model_fields[name]
        help_text = f"{info.description} [env {env_name(name)}; default {default_text(name)}]".replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help_text}
        annotation = info.annotation
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(annotation) is typing.Literal:
            kwargs["choices"] = [str(choice) for choice in typing.get_args(annotation)]
        else:
            # Values are validated by the settings model, so the error names the setting and its bounds.
            kwargs["metavar"] = _metavar(name)
        group.add_argument(flag_name(name), *FLAG_ALIASES.get(name, ()), **kwargs)


ALL_SETTINGS = tuple(name for name in Settings.model_fields if name not in SECRET_FIELDS)


def settings_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {name: value for name, value in vars(args).items() if name in Settings.model_fields}


def load_for(args: argparse.Namespace, fields: Iterable[str] | None = None) -> LoadedSettings:
    return load_settings(settings_flags(args), config_file=getattr(args, "config", None), environ=os.environ, fields=fields)


def configure_logs(settings: Settings, *, quiet: bool = False) -> None:
    """Logs to stderr; ``quiet`` holds them at WARNING (``estimate``, whose stderr carries its own plain
    progress lines, when no log level was asked for)."""
    from carbon_node.service.logs import configure_logging

    configure_logging(settings.log_format, "warning" if quiet else settings.log_level)


def json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SettingsError(f"{option} must be a JSON object, got {type(value).__name__}")
    return value


def result_exit_code(mode: str) -> int:
    """The exit status of ``send-task`` and ``estimate`` for an answer's mode (see :data:`RESULT_EXIT_CODES`)."""
    return EXIT_ERROR_ANSWER if mode == "error" else EXIT_OK
