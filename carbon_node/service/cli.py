"""The ``carbon-node`` command line: ``run``, ``send-task``, ``estimate``, ``doctor``, ``health``, ``config``,
``demo``, ``results``, ``report``.

Every setting of :class:`~carbon_node.service.settings.Settings` is a flag named after its field
(``window_s`` is ``--window-s``); precedence is flag > environment > TOML file (``--config`` or
``CARBON_NODE_CONFIG``) > default. An invalid value ends the command with one line naming the setting,
the value and what is allowed, and exit status 2 (argparse's own status for usage errors).

This module is imported by the daemon process, so it imports nothing heavy at module level: each
subcommand imports what it needs when it runs (torch, transformers and carbontracker never load here).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carbon_node.base import CarbonNodeError, version
from carbon_node.service.settings import LoadedSettings, Settings, SettingsError, env_name, load_settings

if TYPE_CHECKING:
    from carbon_node.service.results import Query

__all__ = ["build_parser", "main", "version"]

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


def flag_name(field_name: str) -> str:
    """The command-line flag of a setting."""
    return "--" + field_name.replace("_", "-")


def _default_text(name: str) -> str:
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


def _add_settings_flags(parser: argparse.ArgumentParser, fields: Iterable[str]) -> None:
    group = parser.add_argument_group("settings (flag > environment > --config file > default)")
    group.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="TOML file with settings (field names as keys, optionally under [carbon_node]); env CARBON_NODE_CONFIG",
    )
    for name in fields:
        info = Settings.model_fields[name]
        help_text = f"{info.description} [env {env_name(name)}; default {_default_text(name)}]".replace("%", "%%")
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


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (used by :func:`main` and by the README/help tests)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "SustainML Carbon Footprint node: measures the energy of a model's forward pass and publishes "
            "its carbon footprint per inference on the SustainML DDS bus."
        ),
        epilog="Run `carbon-node COMMAND --help` for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="run the node (daemon) until SIGTERM/SIGINT",
        description=(
            "Run the node on the DDS bus until SIGTERM or SIGINT. It publishes NODE_INITIALIZING then "
            "NODE_IDLE, answers each task with one CO2FootprintImpl, and on the first signal stops accepting "
            "tasks, finishes or aborts the running one within --shutdown-timeout-s, publishes "
            "NODE_TERMINATING and exits 0. A second signal exits at once."
        ),
    )
    _add_settings_flags(run, ALL_SETTINGS)

    send = commands.add_parser(
        "send-task",
        help="act as the orchestrator: send one task to a running node and print its result",
        description=(
            "Publish the three inputs of one task (MLModel, HWResource, UserInput) as the SustainML "
            "orchestrator and providers would, wait for the node's CO2FootprintImpl and print it."
        ),
        epilog=RESULT_EXIT_CODES,
    )
    send.add_argument("--model", required=True, help="model: a Hugging Face id, a local model directory, or NO_MODEL")
    send.add_argument("--model-path", default="", help="MLModel.model_path, e.g. an .onnx file (selects the HW-only path)")
    send.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="HWResource.latency: the target hardware's time for one inference, in --latency-unit "
        "(without --latency-unit: sent as given, in the node's unit, hours by default as upstream)",
    )
    send.add_argument(
        "--latency-unit",
        choices=("h", "s", "ms"),
        default=None,
        help="unit of --latency: send-task asks the node which unit it reads (describe) and converts; "
        "a node that does not describe itself (upstream) is taken to read hours",
    )
    send.add_argument("--power", type=float, default=0.0, help="HWResource.power_consumption in W")
    send.add_argument("--user-extra", default="{}", metavar="JSON", help="UserInput.extra_data as a JSON object")
    send.add_argument("--ml-extra", default="{}", metavar="JSON", help="MLModel.extra_data as a JSON object")
    send.add_argument("--task-id", default=None, metavar="P.I", help="task id problem.iteration (default: a fresh one)")
    send.add_argument("--timeout-s", "--timeout", type=float, default=120.0, help="seconds to wait for the result (default 120)")
    send.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_settings_flags(send, SEND_TASK_FIELDS)

    estimate = commands.add_parser(
        "estimate",
        help="estimate one model's footprint in this process, without DDS",
        description="Run the node's estimation for one model locally (no bus) and print the output fields.",
        epilog=RESULT_EXIT_CODES,
    )
    estimate.add_argument("model_arg", nargs="?", metavar="MODEL", help="same as --model")
    estimate.add_argument(
        "--model", default=None, help="a Hugging Face id, a local model directory (relative to here or absolute), or NO_MODEL"
    )
    estimate.add_argument("--model-path", default="", help="an .onnx path (selects the HW-only path)")
    estimate.add_argument(
        "--latency", type=float, default=0.0, help="the target hardware's time for one inference, in --latency-unit"
    )
    estimate.add_argument("--power", type=float, default=0.0, help="HW power in W")
    estimate.add_argument("--region", default="", help="grid region/zone for the carbon intensity (default: resolved)")
    estimate.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_settings_flags(estimate, tuple(name for name in ESTIMATE_FIELDS if name not in SECRET_FIELDS))

    doctor = commands.add_parser(
        "doctor",
        help="check what this host can measure and whether the node can run here",
        description=(
            "Report power sources (RAPL readable or not and why, NVML, carbontracker components, simulated "
            "power), the grid-intensity source, DDS domain and network interfaces, the upstream sustainml_py "
            "bindings, and the state/cache directories. Exit status 1 when the node cannot run."
        ),
    )
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.add_argument("--quick", action="store_true", help="skip checks that import heavy libraries (for health checks)")
    _add_settings_flags(doctor, ALL_SETTINGS)

    health = commands.add_parser(
        "health",
        help="liveness: is the node on this state directory running (its heartbeat is fresh)?",
        description=(
            "Read the heartbeat file that a running node's bus thread refreshes every few seconds in its "
            "state directory. Exit 0 when it is younger than --max-age-s, 1 when it is stale (the node is "
            "wedged, stopped or killed) or missing (not running); one line says which. Cheap: for "
            "container health checks."
        ),
    )
    health.add_argument(
        "--max-age-s", type=float, default=None, metavar="SECONDS", help="oldest heartbeat still healthy (default 10)"
    )
    _add_settings_flags(health, ("state_dir",))

    config = commands.add_parser("config", help="inspect the configuration", description="Inspect the configuration.")
    config_commands = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    show = config_commands.add_parser(
        "show",
        help="print the effective settings and where each value came from",
        description="Print every setting, its environment variable, its effective value and its source "
        "(default, file, env or flag). Secrets are masked.",
    )
    show.add_argument("--json", action="store_true", help="print as JSON")
    _add_settings_flags(show, ALL_SETTINGS)
    config_commands.add_parser(
        "reference",
        help="print the configuration reference (Markdown table of every setting, as in the README)",
        description="Print every setting with its environment variable, flag, default and description as a Markdown table.",
    )

    demo = commands.add_parser(
        "demo",
        help="the whole loop on this machine: start a node, send one task with a tiny model, print the result",
        description=(
            "Start a node in a child process on a private DDS domain (loopback only unless CYCLONEDDS_URI is "
            "set), build a tiny text model locally (no model hub), send one task through the bus, print the "
            "result as a table and exit. Without readable energy counters the power is carbontracker's TDP-table estimate."
        ),
    )
    demo.add_argument("--timeout-s", type=float, default=180.0, help="seconds to wait for the result (default 180)")
    demo.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    _add_settings_flags(demo, ("domain_id", "window_s", "sim_cpu_tdp_w", *LOG_FIELDS))
    _add_results_commands(commands)
    return parser


def _add_journal_query_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--journal", metavar="PATH", default=None, help="a journal file (default: journal.sqlite3 in the node's state_dir)"
    )
    parser.add_argument("--model", default=None, help="only this model (its name, or a part of it)")
    parser.add_argument("--mode", default=None, choices=("tracker", "onnx_hw_only", "no_model", "error"), help="only this mode")
    parser.add_argument(
        "--since", default=None, metavar="WHEN", help="only answers since an age (30m, 2h, 7d, 1w) or an ISO date/time (UTC)"
    )
    _add_settings_flags(parser, ("state_dir",))


def _add_results_commands(commands: Any) -> None:
    results = commands.add_parser(
        "results",
        help="list the answered tasks in the journal (table, CSV or JSON)",
        description=(
            "List the answered tasks kept in the node's journal, newest first: task id, answered at, model, mode, "
            "carbon (gCO2e) and energy (kWh) per inference, grid intensity and its source, power source, scaling, "
            "cached, error. Reads the file read-only: safe while the node runs. Exit status 1 for a missing or "
            "unreadable journal."
        ),
    )
    results.add_argument(
        "--format", default=None, choices=("table", "csv", "json"), help="output format (default: table on a terminal, else csv)"
    )
    results.add_argument("--limit", type=int, default=None, metavar="N", help="at most N answers (the newest)")
    _add_journal_query_flags(results)

    report = commands.add_parser(
        "report",
        help="write an HTML report comparing the models in the journal",
        description=(
            "Write one self-contained HTML file (inline charts, no network needed to open it): per model, carbon "
            "and energy per inference (median, min to max, count) for the measured and HW-latency scalings, a "
            "chart comparing the models and one over time, how the figures were obtained, and the errors grouped "
            "by message. Needs matplotlib (pip install 'carbon-node[report]')."
        ),
    )
    report.add_argument(
        "-o", "--output", default="carbon-node-report.html", metavar="FILE", help="the HTML file to write (default %(default)s)"
    )
    _add_journal_query_flags(report)


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    return {name: value for name, value in vars(args).items() if name in Settings.model_fields}


def _load(args: argparse.Namespace, fields: Iterable[str] | None = None) -> LoadedSettings:
    return load_settings(_flags(args), config_file=getattr(args, "config", None), environ=os.environ, fields=fields)


def _configure_logs(settings: Settings, *, quiet: bool = False) -> None:
    """Logs to stderr; ``quiet`` holds them at WARNING (``estimate``, whose stderr carries its own plain
    progress lines, when no log level was asked for)."""
    from carbon_node.service.logs import configure_logging

    configure_logging(settings.log_format, "warning" if quiet else settings.log_level)


def _json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SettingsError(f"{option} must be a JSON object, got {type(value).__name__}")
    return value


def _task_id(text: str | None) -> Any:
    if text is None:
        return None
    from carbon_node.core import TaskId

    try:
        problem, iteration = (int(part) for part in text.split("."))
    except ValueError:
        raise SettingsError(f"--task-id must be PROBLEM.ITERATION (two integers), got {text!r}") from None
    return TaskId(problem, iteration)


def _cmd_run(args: argparse.Namespace) -> int:
    loaded = _load(args)
    _configure_logs(loaded.settings)
    from carbon_node.service.daemon import exit_process, run_daemon

    exit_process(run_daemon(loaded.settings))  # a fast stop: see the daemon's module docstring


def _cmd_send_task(args: argparse.Namespace) -> int:
    loaded = _load(args, SEND_TASK_FIELDS)
    _configure_logs(loaded.settings)
    user_extra = _json_object(args.user_extra, "--user-extra")
    ml_extra = _json_object(args.ml_extra, "--ml-extra")
    from carbon_node.bus.orchestrator import OrchestratorTimeout, format_result, send_task

    try:
        result = send_task(
            model=args.model,
            model_path=args.model_path,
            latency=args.latency,
            power=args.power,
            user_extra=user_extra,
            ml_extra=ml_extra,
            domain_id=loaded.settings.domain_id,
            timeout_s=args.timeout_s,
            task_id=_task_id(args.task_id),
            latency_unit=args.latency_unit,
        )
    except OrchestratorTimeout as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_NO_ANSWER
    print(format_result(result, args.json))
    return result_exit_code(str(result.extra_data.get("mode", "")))


def result_exit_code(mode: str) -> int:
    """The exit status of ``send-task`` and ``estimate`` for an answer's mode (see :data:`RESULT_EXIT_CODES`)."""
    return EXIT_ERROR_ANSWER if mode == "error" else EXIT_OK


def _cmd_estimate(args: argparse.Namespace) -> int:
    model = args.model if args.model is not None else args.model_arg
    if not model or (args.model is not None and args.model_arg is not None and args.model != args.model_arg):
        print(f"{PROG} estimate: give the model once, as MODEL or as --model", file=sys.stderr)
        return 2
    loaded = _load(args, ESTIMATE_FIELDS)
    from carbon_node.engine.estimate import check_model_argument, run_estimate

    # Checked here, before a measurement worker is started (seconds): a refused model fails at once.
    model = check_model_argument(model, loaded.settings.allowed_model_dirs)
    _configure_logs(loaded.settings, quiet="log_level" not in loaded.sources)
    return run_estimate(loaded.settings, model, args.latency, args.power, args.region, args.model_path, args.json, sys.stdout)


def _cmd_doctor(args: argparse.Namespace) -> int:
    loaded = _load(args)
    _configure_logs(loaded.settings)
    from carbon_node.service.doctor import format_report, run_checks

    report = run_checks(loaded.settings, quick=args.quick)
    print(format_report(report, as_json=args.json))
    return 0 if report.can_run else 1


def _cmd_health(args: argparse.Namespace) -> int:
    loaded = _load(args)
    from carbon_node.service.health import DEFAULT_MAX_AGE_S, check_heartbeat, heartbeat_path

    max_age_s = DEFAULT_MAX_AGE_S if args.max_age_s is None else args.max_age_s
    if not max_age_s > 0:
        raise SettingsError(f"--max-age-s must be > 0 seconds, got {max_age_s:g}")
    health = check_heartbeat(heartbeat_path(loaded.settings.state_dir), max_age_s)
    print(health.message)
    return 0 if health.healthy else 1


def format_config(loaded: LoadedSettings, as_json: bool) -> str:
    """``config show`` output: one row per setting with its environment variable, value and source."""
    rows = loaded.rows()
    if as_json:
        payload = {
            "config_file": str(loaded.config_file) if loaded.config_file else None,
            "settings": [{"setting": n, "env": e, "value": v, "source": s} for n, e, v, s in rows],
        }
        return json.dumps(payload, indent=2, default=str)
    table = [("SETTING", "ENVIRONMENT", "VALUE", "SOURCE")]
    table += [(n, e, "unset" if v is None else json.dumps(v) if isinstance(v, bool) else str(v), s) for n, e, v, s in rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3] for row in table]
    return "\n".join(lines)


def config_reference() -> str:
    """The Markdown table of every setting (the README's configuration section is this text)."""
    lines = ["| Setting | Environment | Flag | Default | Description |", "|---|---|---|---|---|"]
    for name, info in Settings.model_fields.items():
        flag = "(environment only)" if name in SECRET_FIELDS else f"`{flag_name(name)}`"
        description = (info.description or "").replace("|", "\\|")
        lines.append(f"| `{name}` | `{env_name(name)}` | {flag} | {_default_text(name)} | {description} |")
    return "\n".join(lines)


def _cmd_config(args: argparse.Namespace) -> int:
    if args.config_command == "reference":
        print(config_reference())
        return 0
    loaded = _load(args)
    print(format_config(loaded, args.json))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    loaded = _load(args)
    _configure_logs(loaded.settings)
    from carbon_node.service.demo import run_demo

    return run_demo(loaded, timeout_s=args.timeout_s, as_json=args.json, out=sys.stdout)


def _journal_query(args: argparse.Namespace, limit: int | None = None) -> tuple[Path, Query]:
    """The journal's path and the query of a ``results`` or ``report`` command."""
    import time

    from carbon_node.service.results import Query, journal_path, parse_since

    path = Path(args.journal) if args.journal else journal_path(_load(args).settings.state_dir)
    if limit is not None and limit < 1:
        raise SettingsError(f"--limit must be >= 1, got {limit}")
    try:
        since_s = None if args.since is None else parse_since(args.since, time.time())
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    return path, Query(model=args.model, mode=args.mode, since_s=since_s, limit=limit)


def _cmd_results(args: argparse.Namespace) -> int:
    from carbon_node.service.results import format_answers, read_answers

    path, query = _journal_query(args, args.limit)
    fmt = args.format or ("table" if sys.stdout.isatty() else "csv")
    text = format_answers(read_answers(path, query), fmt)
    try:
        print(text, flush=True)
    except BrokenPipeError:  # `carbon-node results | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    import time

    from carbon_node.service.results import read_answers

    path, query = _journal_query(args)
    answers = read_answers(path, query)
    if importlib.util.find_spec("matplotlib") is None:
        raise CarbonNodeError("the report needs matplotlib, which is not installed: pip install 'carbon-node[report]'")
    from carbon_node.report.page import render_report

    filters = "".join(
        f", {name} {value}" for name, value in (("model", args.model), ("mode", args.mode), ("since", args.since)) if value
    )
    started = time.monotonic()
    try:
        summary = render_report(answers, Path(args.output), source=str(path), filters=filters)
    except OSError as exc:
        raise CarbonNodeError(f"cannot write the report to {args.output}: {exc.strerror or exc}") from None
    size_kb = Path(args.output).stat().st_size / 1024
    print(
        f"wrote {args.output}: {summary.answers} answers, {len(summary.models)} model(s) with figures, "
        f"{len(summary.errors)} error message(s); {size_kb:.0f} KB in {time.monotonic() - started:.1f} s"
    )
    return 0


_COMMANDS = {
    "run": _cmd_run,
    "send-task": _cmd_send_task,
    "estimate": _cmd_estimate,
    "doctor": _cmd_doctor,
    "health": _cmd_health,
    "config": _cmd_config,
    "demo": _cmd_demo,
    "results": _cmd_results,
    "report": _cmd_report,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``carbon-node``, ``python -m carbon_node`` and ``carbon_node.py``; the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except SettingsError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CarbonNodeError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
