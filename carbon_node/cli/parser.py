"""The ``carbon-node`` argument parser: every command, its options and its help text.

A command's settings flags come from :func:`~carbon_node.cli.flags.add_settings_flags` (only the
settings it uses); its body is in :mod:`carbon_node.cli.commands`.
"""

from __future__ import annotations

import argparse
from typing import Any

from carbon_node.base import version
from carbon_node.cli.flags import (
    ALL_SETTINGS,
    ESTIMATE_FIELDS,
    LOG_FIELDS,
    PROG,
    RESULT_EXIT_CODES,
    SECRET_FIELDS,
    SEND_TASK_FIELDS,
    WHERE_FIELDS,
    add_settings_flags,
)
from carbon_node.cli.pool import add_pool_commands

__all__ = ["MODEL_KINDS", "build_parser"]

MODEL_KINDS = ("text", "image", "video", "multimodal", "seq2seq", "bert-base", "gpt2", "vit-base")
"""What ``make-model`` writes: the tiny models of :mod:`carbon_node.measure.tiny` and the real-size ones of
:mod:`carbon_node.measure.full_size`."""


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
    add_settings_flags(run, ALL_SETTINGS)

    send = commands.add_parser(
        "send-task",
        help="act as the orchestrator: send one task to a running node and print its result",
        description=(
            "Publish the three inputs of one task (MLModel, HWResource, UserInput) as the SustainML "
            "orchestrator and providers would, wait for the node's CO2FootprintImpl and print it."
        ),
        epilog=RESULT_EXIT_CODES,
    )
    send.add_argument(
        "--model",
        required=True,
        help="model: a directory that exists here (relative or absolute: sent as its absolute path), NO_MODEL, "
        "or anything else as given (a Hugging Face id, or an absolute path on the node's host)",
    )
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
    send.add_argument(
        "--power",
        type=float,
        default=0.0,
        help="HWResource.power_consumption in W: the node uses it on the ONNX path (--model-path *.onnx); "
        "a model it measures gets its energy from the window (measurement_notes says the power was not used)",
    )
    send.add_argument(
        "--hw-description",
        default="",
        metavar="TEXT",
        help="HWResource.hw_description: the selected hardware's name; a measure host whose hardware matches it "
        "measures the model (carbon-node hosts lists them)",
    )
    send.add_argument(
        "--region",
        default="",
        metavar="PLACE",
        help="UserInput.geo_location_region: where the model runs, as a user writes it (a country, region, city, "
        "cloud region or grid zone id; carbon-node where PLACE shows what it resolves to)",
    )
    send.add_argument("--continent", default="", metavar="TEXT", help="UserInput.geo_location_continent")
    send.add_argument("--user-extra", default="{}", metavar="JSON", help="UserInput.extra_data as a JSON object")
    send.add_argument("--ml-extra", default="{}", metavar="JSON", help="MLModel.extra_data as a JSON object")
    send.add_argument("--task-id", default=None, metavar="P.I", help="task id problem.iteration (default: a fresh one)")
    send.add_argument("--timeout-s", "--timeout", type=float, default=120.0, help="seconds to wait for the result (default 120)")
    send.add_argument(
        "--discovery-timeout-s",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds to wait for a carbon node to be discovered (its status) before giving up with exit status 3 (default 10)",
    )
    send.add_argument("--json", action="store_true", help="print the result as JSON")
    add_settings_flags(send, SEND_TASK_FIELDS)

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
    add_settings_flags(estimate, tuple(name for name in ESTIMATE_FIELDS if name not in SECRET_FIELDS))

    where = commands.add_parser(
        "where",
        help="the grid intensity the node would use for a place (zone, figure, source, year, how it matched)",
        description=(
            "Read a place as the node reads a task's geo_location (a country, region, city, cloud region, grid "
            "zone id or 'City, Region, Country') and print the zone, the intensity, its source, dataset and year, "
            "and how the text matched. Exit status 0 when the place was understood, 1 when not (the fallback it "
            "would use is printed)."
        ),
    )
    where.add_argument("place", metavar="PLACE", help='the place text, e.g. "Madrid", "US-CA", "us-east-1", "Paris, Texas"')
    where.add_argument("--continent", default="", help="geo_location_continent, as a task would carry it")
    where.add_argument("--json", action="store_true", help="print the grid_ci_* keys as JSON")
    add_settings_flags(where, tuple(name for name in WHERE_FIELDS if name not in SECRET_FIELDS))

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
    add_settings_flags(doctor, ALL_SETTINGS)

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
    add_settings_flags(health, ("state_dir",))

    config = commands.add_parser("config", help="inspect the configuration", description="Inspect the configuration.")
    config_commands = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    show = config_commands.add_parser(
        "show",
        help="print the effective settings and where each value came from",
        description="Print every setting, its environment variable, its effective value and its source "
        "(default, file, env or flag). Secrets are masked.",
    )
    show.add_argument("--json", action="store_true", help="print as JSON")
    add_settings_flags(show, ALL_SETTINGS)
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
    add_settings_flags(demo, ("domain_id", "window_s", "sim_cpu_tdp_w", *LOG_FIELDS))
    make_model = commands.add_parser(
        "make-model",
        help="write a model directory to try the node offline (weights included; no model hub)",
        description=(
            "Write a Hugging Face model directory built locally, with its weights, to try the node without a model "
            "hub: a tiny model (a few thousand parameters, with its tokenizer or image processor) or a real-size "
            "one from transformers' default configuration (random weights, measured on a synthetic input). "
            "Needs the measure extra (torch, transformers)."
        ),
    )
    make_model.add_argument("directory", metavar="DIR", help="the directory to write (created; must be empty if it exists)")
    make_model.add_argument(
        "--kind",
        default="text",
        choices=MODEL_KINDS,
        help="text: tiny BERT with a tokenizer (default); image: tiny ViT; video: tiny VideoMAE; multimodal: tiny "
        "CLIP; seq2seq: tiny T5; bert-base (110M parameters, 420 MiB), gpt2 (124M, 475 MiB), vit-base (86M, 330 MiB)",
    )
    _add_results_commands(commands)
    add_pool_commands(commands)
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
    add_settings_flags(parser, ("state_dir",))


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
