"""The bodies of the ``carbon-node`` commands: each reads its settings, does its work, returns the exit status.

Each body imports what it needs when it runs: this module is imported by the daemon process, and
torch, transformers, carbontracker and matplotlib never load here.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carbon_node.base import CarbonNodeError
from carbon_node.cli.flags import (
    ESTIMATE_FIELDS,
    EXIT_NO_ANSWER,
    PROG,
    SECRET_FIELDS,
    SEND_TASK_FIELDS,
    WHERE_FIELDS,
    configure_logs,
    default_text,
    flag_name,
    json_object,
    load_for,
    result_exit_code,
    settings_flags,
)
from carbon_node.cli.model_arg import model_argument
from carbon_node.cli.pool import POOL_COMMANDS
from carbon_node.service.settings import LoadedSettings, Settings, SettingsError, env_name, load_settings

if TYPE_CHECKING:
    from carbon_node.report.results import Query

__all__ = ["COMMANDS", "config_reference", "format_config"]


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
    loaded = load_for(args)
    configure_logs(loaded.settings)
    from carbon_node.service.dirs import prepare_directories

    prepare_directories(loaded.settings, loaded.sources)  # an unusable directory: one line, exit status 2
    flags, config_file, environ = settings_flags(args), getattr(args, "config", None), dict(os.environ)

    def reread() -> Settings:
        """The configuration as at start (same flags, same environment), its file read anew (SIGHUP)."""
        return load_settings(flags, config_file=config_file, environ=environ).settings

    from carbon_node.service.daemon import exit_process, run_daemon

    exit_process(run_daemon(loaded.settings, reread))  # a fast stop: see the daemon's module docstring


def _cmd_send_task(args: argparse.Namespace) -> int:
    loaded = load_for(args, SEND_TASK_FIELDS)
    configure_logs(loaded.settings)
    user_extra = json_object(args.user_extra, "--user-extra")
    ml_extra = json_object(args.ml_extra, "--ml-extra")
    if not args.discovery_timeout_s > 0:
        raise SettingsError(f"--discovery-timeout-s must be > 0 seconds, got {args.discovery_timeout_s:g}")
    model = model_argument(args.model)
    if model.note:
        print(f"{PROG} send-task: {model.note} (the node must see the same path)", file=sys.stderr)
    from carbon_node.bus.orchestrator import NodeNotSeen, OrchestratorTimeout
    from carbon_node.bus.send_task import format_result, send_task

    try:
        result = send_task(
            model=model.model,
            model_path=args.model_path,
            latency=args.latency,
            power=args.power,
            user_extra=user_extra,
            ml_extra=ml_extra,
            domain_id=loaded.settings.domain_id,
            timeout_s=args.timeout_s,
            task_id=_task_id(args.task_id),
            latency_unit=args.latency_unit,
            discovery_timeout_s=args.discovery_timeout_s,
            hw_description=args.hw_description,
            region=args.region,
            continent=args.continent,
        )
    except NodeNotSeen as exc:
        print(f"{PROG}: {exc}: {NO_NODE_HINT}", file=sys.stderr)
        return EXIT_NO_ANSWER
    except OrchestratorTimeout as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_NO_ANSWER
    print(format_result(result, args.json))
    return result_exit_code(str(result.extra_data.get("mode", "")))


NO_NODE_HINT = (
    "is `carbon-node run` (or an upstream carbon node) running with the same SUSTAINML_DOMAIN_ID, and can "
    "multicast reach it? (README: Troubleshooting)"
)
"""What ``send-task`` suggests when no carbon node was discovered."""


def _cmd_estimate(args: argparse.Namespace) -> int:
    model = args.model if args.model is not None else args.model_arg
    if not model or (args.model is not None and args.model_arg is not None and args.model != args.model_arg):
        print(f"{PROG} estimate: give the model once, as MODEL or as --model", file=sys.stderr)
        return 2
    loaded = load_for(args, ESTIMATE_FIELDS)
    from carbon_node.cli.estimate import check_model_argument, run_estimate

    # Checked here, before a measurement worker is started (seconds): a refused model fails at once.
    model = check_model_argument(model, loaded.settings.allowed_model_dirs)
    configure_logs(loaded.settings, quiet="log_level" not in loaded.sources)
    return run_estimate(loaded.settings, model, args.latency, args.power, args.region, args.model_path, args.json, sys.stdout)


def _cmd_where(args: argparse.Namespace) -> int:
    loaded = load_for(args, WHERE_FIELDS)
    configure_logs(loaded.settings, quiet="log_level" not in loaded.sources)
    from carbon_node.cli.where import run_where

    return run_where(loaded.settings, args.place, args.continent, args.json, sys.stdout)


def _cmd_doctor(args: argparse.Namespace) -> int:
    loaded = load_for(args)
    configure_logs(loaded.settings)
    from carbon_node.service.doctor import format_report, run_checks

    report = run_checks(loaded.settings, quick=args.quick, sources=loaded.sources)
    print(format_report(report, as_json=args.json))
    return 0 if report.can_run else 1


def _cmd_health(args: argparse.Namespace) -> int:
    loaded = load_for(args)
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
        lines.append(f"| `{name}` | `{env_name(name)}` | {flag} | {default_text(name)} | {description} |")
    return "\n".join(lines)


def _cmd_config(args: argparse.Namespace) -> int:
    if args.config_command == "reference":
        print(config_reference())
        return 0
    loaded = load_for(args)
    print(format_config(loaded, args.json))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    loaded = load_for(args)
    configure_logs(loaded.settings)
    from carbon_node.service.demo import run_demo

    return run_demo(loaded, timeout_s=args.timeout_s, as_json=args.json, out=sys.stdout)


def _cmd_make_model(args: argparse.Namespace) -> int:
    directory = Path(args.directory).expanduser()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise SettingsError(f"{directory} exists and is not an empty directory: choose a new one")
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        raise CarbonNodeError("make-model needs torch and transformers: pip install torch==2.13.0 'carbon-node[measure]'")
    from transformers.utils import logging as transformers_logging

    from carbon_node.measure import full_size, tiny

    transformers_logging.disable_progress_bar()  # "Writing model shards" on stderr says nothing here

    builders = {
        "text": tiny.build_tiny_text_model,
        "image": tiny.build_tiny_image_model,
        "video": tiny.build_tiny_video_model,
        "multimodal": tiny.build_tiny_multimodal_model,
        "seq2seq": tiny.build_tiny_seq2seq_model,
    }
    try:
        if args.kind in builders:
            builders[args.kind](directory, weights=True)
        else:
            full_size.build_full_size_model(directory, args.kind)
    except OSError as exc:
        raise CarbonNodeError(f"cannot write the model to {directory}: {exc.strerror or exc}") from None
    size_mib = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()) / 2**20
    absolute = directory.resolve()
    print(f"wrote a {args.kind} model to {absolute} ({size_mib:.1f} MiB, weights included); try it with:")
    print(f"  carbon-node estimate {absolute}")
    print(f"  carbon-node send-task --model {absolute} --latency 50 --latency-unit ms   # to a running node")
    return 0


def _journal_query(args: argparse.Namespace, limit: int | None = None) -> tuple[Path, Query]:
    """The journal's path and the query of a ``results`` or ``report`` command."""
    import time

    from carbon_node.report.results import Query, journal_path, parse_since

    path = Path(args.journal) if args.journal else journal_path(load_for(args).settings.state_dir)
    if limit is not None and limit < 1:
        raise SettingsError(f"--limit must be >= 1, got {limit}")
    try:
        since_s = None if args.since is None else parse_since(args.since, time.time())
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    return path, Query(model=args.model, mode=args.mode, since_s=since_s, limit=limit)


def _cmd_results(args: argparse.Namespace) -> int:
    from carbon_node.report.results import format_answers, read_answers

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

    from carbon_node.report.results import read_answers

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


COMMANDS = {
    "run": _cmd_run,
    "send-task": _cmd_send_task,
    "estimate": _cmd_estimate,
    "where": _cmd_where,
    "doctor": _cmd_doctor,
    "health": _cmd_health,
    "config": _cmd_config,
    "demo": _cmd_demo,
    "make-model": _cmd_make_model,
    "results": _cmd_results,
    "report": _cmd_report,
    **POOL_COMMANDS,
}
