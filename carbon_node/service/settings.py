"""One settings model for the whole node: defaults < TOML file < environment < command-line flags.

Every field names its environment variable explicitly: the upstream variables keep their names and
meaning (``SUSTAINML_DOMAIN_ID``, ``SUSTAINML_GRID_CI``, ``CT_TARGET_SECONDS``, ``SUSTAINML_LATENCY_UNIT``),
new ones use the ``CARBON_NODE_`` prefix. A TOML file uses the field names as keys. Every setting has
its unit in its name or description.

:func:`load_settings` validates all layers at once and raises :class:`SettingsError` with one line
naming the setting, the value and what is allowed; the CLI turns it into exit status 2.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from carbon_node.base import CarbonNodeError

__all__ = [
    "LoadedSettings",
    "Settings",
    "SettingsError",
    "config_file_path",
    "default_state_dir",
    "env_name",
    "load_settings",
]

APP_NAME = "carbon-node"


class SettingsError(CarbonNodeError):
    """An invalid setting: the message names the setting, the value and what is allowed."""


def _field(default: Any, env: str, description: str, **constraints: Any) -> Any:
    """A settings field read from ``env`` (exact, case-sensitive) or its own name in a TOML file."""
    return Field(
        default,
        description=description,
        validation_alias=AliasChoices(env),
        json_schema_extra={"env": env},
        **constraints,
    )


def default_state_dir() -> Path:
    """systemd's ``$STATE_DIRECTORY`` (first entry), else ``$XDG_STATE_HOME/carbon-node``, else ``~/.local/state``."""
    systemd = os.environ.get("STATE_DIRECTORY", "")
    if systemd:
        return Path(systemd.split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / APP_NAME


def default_cache_dir() -> Path:
    """systemd's ``$CACHE_DIRECTORY`` (first entry), else ``$XDG_CACHE_HOME/carbon-node``, else ``~/.cache``."""
    systemd = os.environ.get("CACHE_DIRECTORY", "")
    if systemd:
        return Path(systemd.split(":")[0])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / APP_NAME


class Settings(BaseSettings):
    """The node's effective configuration. Field names carry units; see each description."""

    model_config = SettingsConfigDict(
        case_sensitive=True,
        extra="forbid",
        populate_by_name=True,
        validate_default=True,
        frozen=True,
    )

    # Bus
    domain_id: int = _field(0, "SUSTAINML_DOMAIN_ID", "DDS domain id (0-232), as every SustainML node", ge=0, le=232)
    bus: Literal["auto", "cyclone", "sustainml"] = _field(
        "auto",
        "CARBON_NODE_BUS",
        "DDS binding: cyclone, the upstream sustainml_py bindings, or auto (upstream when its node module and native "
        "libraries import, else cyclone with a warning)",
    )
    standby: bool = _field(
        True,
        "CARBON_NODE_STANDBY",
        "with other carbon nodes on the domain, answer only while this is the longest-running one; the others stand by "
        "and take over when it is gone (off: always answer, as upstream nodes do)",
    )
    standby_grace_s: float = _field(
        0.2,
        "CARBON_NODE_STANDBY_GRACE_S",
        "seconds a starting node listens for the carbon nodes already on the domain before it decides to answer; "
        "raise it where discovery is slow (unicast peer lists across routed networks)",
        ge=0,
        le=30,
    )
    input_timeout_s: float = _field(
        900.0, "CARBON_NODE_INPUT_TIMEOUT_S", "seconds a task may wait for its missing inputs before an error output", gt=0
    )
    max_pending_tasks: int = _field(
        500, "CARBON_NODE_MAX_PENDING_TASKS", "incomplete tasks kept at once (count); the oldest is answered with an error", ge=1
    )
    # Estimation
    window_s: float = _field(
        1.0, "CT_TARGET_SECONDS", "measurement window in seconds of forward passes (upstream CT_TARGET_SECONDS)", gt=0, le=3600
    )
    grid_ci_g_per_kwh: float = _field(
        0.0, "SUSTAINML_GRID_CI", "fixed grid carbon intensity in gCO2e/kWh; 0 resolves it per task", ge=0, le=5000
    )
    latency_unit: Literal["h", "s", "ms"] = _field(
        "h", "SUSTAINML_LATENCY_UNIT", "unit of HWResource.latency: h (upstream default), s or ms"
    )
    per_inference: Literal["hw_latency", "measured"] = _field(
        "hw_latency",
        "CARBON_NODE_PER_INFERENCE",
        "what the output doubles carry: hw_latency (upstream scaling) or measured (window energy / forward passes)",
    )
    live_intensity: bool = _field(
        False, "CARBON_NODE_LIVE_INTENSITY", "ask carbontracker's live intensity providers (network) before the world average"
    )
    live_intensity_timeout_s: float = _field(
        5.0, "CARBON_NODE_LIVE_INTENSITY_TIMEOUT_S", "seconds a live intensity lookup may take", gt=0, le=60
    )
    electricitymaps_api_key: str = _field(
        "", "CARBON_NODE_ELECTRICITYMAPS_API_KEY", "API key for carbontracker's Electricity Maps provider (secret; never logged)"
    )
    # Measurement worker
    device: Literal["auto", "cpu", "cuda"] = _field(
        "auto", "CARBON_NODE_DEVICE", "where models run: cuda when available (auto), or forced"
    )
    task_timeout_s: float = _field(
        75.0, "CARBON_NODE_TASK_TIMEOUT_S", "seconds one measurement (load + window) may take before the worker is replaced", gt=0
    )
    model_load_timeout_s: float = _field(
        10.0, "CARBON_NODE_MODEL_LOAD_TIMEOUT_S", "seconds to resolve a model id that is not available locally", gt=0
    )
    measure_cache_ttl_s: float = _field(
        3600.0, "CARBON_NODE_MEASURE_CACHE_TTL_S", "seconds a measurement is reused for the same model; 0 disables", ge=0
    )
    model_cache_max_models: int = _field(
        4, "CARBON_NODE_MODEL_CACHE_MAX_MODELS", "loaded models kept in the worker (count)", ge=0
    )
    model_cache_max_mb: float = _field(
        2048.0, "CARBON_NODE_MODEL_CACHE_MAX_MB", "parameter memory of loaded models kept in the worker (MiB)", ge=0
    )
    max_model_mb: float = _field(
        4096.0, "CARBON_NODE_MAX_MODEL_MB", "largest model the worker will build (parameter MiB, from its config)", gt=0
    )
    trust_remote_code: bool = _field(
        False, "CARBON_NODE_TRUST_REMOTE_CODE", "allow models that execute code from their repository (off: it runs foreign code)"
    )
    model_dirs: str = _field(
        "",
        "CARBON_NODE_MODEL_DIRS",
        "colon-separated directories that local model paths must be inside; empty allows any absolute directory",
    )
    torch_threads: int | None = _field(
        None,
        "CARBON_NODE_TORCH_THREADS",
        "torch intra-op threads in the measurement worker; unset keeps torch's default (one per physical core). "
        "The measured per-pass energy follows it",
        ge=1,
        le=1024,
    )
    sim_cpu_tdp_w: float | None = _field(
        None, "CARBON_NODE_SIM_CPU_TDP_W", "simulated CPU power in W for carbontracker (tests, demos); unset measures", gt=0
    )
    sim_cpu_util: float | None = _field(
        None, "CARBON_NODE_SIM_CPU_UTIL", "simulated CPU utilisation (0-1) with CARBON_NODE_SIM_CPU_TDP_W", ge=0, le=1
    )
    cpu_power_model: Literal["load_model", "carbontracker"] = _field(
        "load_model",
        "CARBON_NODE_CPU_POWER_MODEL",
        "CPU power without an energy counter: load_model (the TDP-to-load curve at the worker's CPU load, for its "
        "share of the socket) or carbontracker (its 50 % of TDP, upstream's figure)",
    )
    # Measurement pool (README: "A pool of measure hosts")
    measure_pool: bool = _field(
        True,
        "CARBON_NODE_MEASURE_POOL",
        "measure each task on a live measure host (carbon-node serve-measurements, same DDS domain) whose hardware "
        "matches its hw_description; off: every measurement on this host",
    )
    pool_fallback: Literal["local", "error"] = _field(
        "local",
        "CARBON_NODE_POOL_FALLBACK",
        "when the chosen measure host fails (gone, no reply within task_timeout_s, cannot load the model): measure "
        "on this host (local) or answer mode error naming the host (error)",
    )
    hardware_names: str = _field(
        "",
        "CARBON_NODE_HARDWARE_NAMES",
        "comma-separated names this host's hardware answers to, besides its detected CPU and GPU models (a measure "
        "host announces them; tasks whose hw_description matches one are measured there)",
    )
    # Service
    state_dir: Path = _field(
        None, "CARBON_NODE_STATE_DIR", "journal and per-task scratch; default $STATE_DIRECTORY or the user's state dir"
    )
    cache_dir: Path = _field(None, "CARBON_NODE_CACHE_DIR", "model cache; default $CACHE_DIRECTORY or the user's cache dir")
    journal: bool = _field(True, "CARBON_NODE_JOURNAL", "persist answered tasks and answer replays from them")
    journal_max_tasks: int = _field(100_000, "CARBON_NODE_JOURNAL_MAX_TASKS", "answered tasks kept in the journal (count)", ge=1)
    journal_retention_s: float = _field(
        30 * 86400.0, "CARBON_NODE_JOURNAL_RETENTION_S", "seconds an answered task is kept in the journal", gt=0
    )
    shutdown_timeout_s: float = _field(
        30.0,
        "CARBON_NODE_SHUTDOWN_TIMEOUT_S",
        "seconds a running measurement may go on after SIGTERM before it is aborted",
        ge=0,
    )
    log_format: Literal["auto", "console", "json"] = _field(
        "auto", "CARBON_NODE_LOG_FORMAT", "console on a terminal, JSON otherwise (auto), or forced"
    )
    log_level: Literal["debug", "info", "warning", "error"] = _field("info", "CARBON_NODE_LOG_LEVEL", "log threshold")
    metrics_port: int | None = _field(
        None, "CARBON_NODE_METRICS_PORT", "TCP port for Prometheus metrics on 127.0.0.1; unset disables", ge=1, le=65535
    )
    metrics_host: str = _field("127.0.0.1", "CARBON_NODE_METRICS_HOST", "address the metrics endpoint binds")

    @field_validator("state_dir", mode="before")
    @classmethod
    def _default_state_dir(cls, value: Any) -> Any:
        return default_state_dir() if value in (None, "") else value

    @field_validator("cache_dir", mode="before")
    @classmethod
    def _default_cache_dir(cls, value: Any) -> Any:
        return default_cache_dir() if value in (None, "") else value

    @field_validator("sim_cpu_tdp_w", "sim_cpu_util", "metrics_port", "torch_threads", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @property
    def allowed_model_dirs(self) -> tuple[str, ...]:
        """``model_dirs`` as a tuple of directory paths (empty: any directory)."""
        return tuple(part.strip() for part in self.model_dirs.split(":") if part.strip())

    @property
    def hardware_name_list(self) -> tuple[str, ...]:
        """``hardware_names`` as a tuple of names (blanks dropped)."""
        return tuple(" ".join(part.split()) for part in self.hardware_names.split(",") if part.strip())

    @property
    def simulated_power(self) -> bool:
        return self.sim_cpu_tdp_w is not None

    def public_dict(self) -> dict[str, Any]:
        """Settings as JSON-ready values, secrets masked (for ``describe`` and ``config show``)."""
        data = self.model_dump(mode="json")
        if data.get("electricitymaps_api_key"):
            data["electricitymaps_api_key"] = "***"
        return data

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Layers are merged by load_settings so that it can say where each value came from.
        return (init_settings,)


def env_name(field_name: str) -> str:
    """The environment variable of a setting."""
    extra = Settings.model_fields[field_name].json_schema_extra
    assert isinstance(extra, dict)
    return str(extra["env"])


class LoadedSettings:
    """Effective settings plus the layer each value came from (default, file, env or flag)."""

    def __init__(self, settings: Settings, sources: Mapping[str, str], config_file: Path | None) -> None:
        self.settings = settings
        self.sources = dict(sources)
        self.config_file = config_file

    def rows(self) -> list[tuple[str, str, Any, str]]:
        """``(setting, environment variable, value, source)`` for each setting."""
        data = self.settings.public_dict()
        return [(name, env_name(name), data[name], self.sources.get(name, "default")) for name in Settings.model_fields]


def _describe_allowed(info: FieldInfo) -> str:
    parts = [info.description or ""]
    for item in info.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            bound = getattr(item, attr, None)
            if bound is not None:
                parts.append(f"{sign} {bound}")
    return "; ".join(p for p in parts if p)


def _error_message(exc: ValidationError, origin: Mapping[str, str]) -> str:
    err = exc.errors()[0]
    name = str(err["loc"][0]) if err["loc"] else "?"
    if name not in Settings.model_fields:
        return f"unknown setting {name!r} (from {origin.get(name, 'config')}); see `carbon-node config show`"
    info = Settings.model_fields[name]
    where = origin.get(name, "default")
    return (
        f"invalid setting {name} ({env_name(name)}, from {where}): {err.get('input')!r}: {err['msg']}."
        f" Allowed: {_describe_allowed(info)}"
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise SettingsError(f"cannot read configuration file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"configuration file {path} is not valid TOML: {exc}") from exc
    section = data.get("carbon_node", data)
    if not isinstance(section, dict):
        raise SettingsError(f"configuration file {path}: [carbon_node] must be a table")
    return section


DEFAULT_CONFIG_NAME = "carbon-node.toml"
"""The configuration file read, when present, from systemd's ``$CONFIGURATION_DIRECTORY``."""


def default_config_file(env: Mapping[str, str]) -> Path | None:
    """``$CONFIGURATION_DIRECTORY/carbon-node.toml`` (first entry; set by the unit's
    ``ConfigurationDirectory=carbon-node``, i.e. ``/etc/carbon-node``), or None outside systemd."""
    directory = env.get("CONFIGURATION_DIRECTORY", "").split(":")[0]
    return Path(directory) / DEFAULT_CONFIG_NAME if directory else None


def config_file_path(config_file: str | Path | None, env: Mapping[str, str]) -> tuple[Path | None, bool]:
    """The TOML file to read and whether it was named explicitly.

    A file named by ``--config`` or ``CARBON_NODE_CONFIG`` must exist (a typo must not silently run on
    defaults); the default file of the service manager's configuration directory is optional.
    """
    path_text = str(config_file) if config_file else env.get("CARBON_NODE_CONFIG", "")
    if path_text:
        return Path(path_text), True
    return default_config_file(env), False


def load_settings(
    flags: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    fields: Iterable[str] | None = None,
) -> LoadedSettings:
    """Merge defaults < TOML (``config_file``, ``CARBON_NODE_CONFIG``, or an existing
    ``$CONFIGURATION_DIRECTORY/carbon-node.toml``) < environment < ``flags``.

    ``flags`` holds only the options given on the command line (None values are ignored). With
    ``fields``, only those settings are read from the file and the environment (the others keep their
    defaults, unvalidated values included): a command that uses a few settings is not stopped by an
    invalid one it never reads. A key that is no setting at all is still refused.
    Raises :class:`SettingsError` with one line on any invalid value or an explicitly named file that
    cannot be read.
    """
    env = dict(os.environ if environ is None else environ)
    path, explicit = config_file_path(config_file, env)
    if path is not None and not explicit and not path.exists():
        path = None  # the optional default file is absent: defaults and environment only
    file_values = _read_toml(path) if path is not None else {}

    read = set(Settings.model_fields if fields is None else fields)
    file_values = {k: v for k, v in file_values.items() if k in read or k not in Settings.model_fields}

    env_values: dict[str, Any] = {}
    for name in (n for n in Settings.model_fields if n in read):
        key = env_name(name)
        # An empty variable means "not set" (upstream reads an empty SUSTAINML_GRID_CI and
        # SUSTAINML_DOMAIN_ID so; an EnvironmentFile line "NAME=" does the same).
        if env.get(key, "").strip():
            env_values[name] = env[key]

    flag_values = {k: v for k, v in (flags or {}).items() if v is not None}
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for layer, values in ((f"file {path}", file_values), ("env", env_values), ("flag", flag_values)):
        for name, value in values.items():
            merged[name] = value
            origin[name] = layer
    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        raise SettingsError(_error_message(exc, origin)) from None
    if settings.sim_cpu_util is not None and settings.sim_cpu_tdp_w is None:
        raise SettingsError("invalid setting sim_cpu_util (CARBON_NODE_SIM_CPU_UTIL): it needs CARBON_NODE_SIM_CPU_TDP_W as well")
    return LoadedSettings(settings, origin, path)
