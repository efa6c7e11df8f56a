"""The pool's commands: ``serve-measurements`` (run a measure host) and ``hosts`` (list the live pool).

:func:`add_pool_commands` adds both to the parser; :data:`POOL_COMMANDS` maps them to their bodies.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from carbon_node.cli.flags import LOG_FIELDS, add_settings_flags, configure_logs, load_for
from carbon_node.service.settings import SettingsError

__all__ = ["POOL_COMMANDS", "add_pool_commands", "format_hosts"]

HOSTS_WAIT_S = 2.0
"""Seconds ``hosts`` listens by default: discovery and the TRANSIENT_LOCAL announcements take about 0.5-1.5 s."""


def add_pool_commands(commands: Any) -> None:
    """Add ``serve-measurements`` and ``hosts`` to the ``carbon-node`` subcommands."""
    from carbon_node.service.measure_host import HOST_FIELDS

    serve = commands.add_parser(
        "serve-measurements",
        help="run a measure host: measure models for the carbon nodes of the domain on this host's hardware",
        description=(
            "Serve measurement requests from carbon nodes on the DDS domain, one window at a time, with this host's "
            "measurement worker and settings (device, simulated power, model directories), never reading a SustainML "
            "topic. The host announces its hardware names (--hardware-name, hardware_names, then the detected GPU and "
            "CPU models) and the power sources it can read; a node measures a task here when the task's hw_description "
            "matches one of these names. Stops on SIGTERM/SIGINT (queued requests are answered with an error, the "
            "running window finishes within --shutdown-timeout-s)."
        ),
    )
    serve.add_argument(
        "--hardware-name",
        dest="hardware_name",
        action="append",
        default=[],
        metavar="NAME",
        help="a name this host's hardware answers to, e.g. 'NVIDIA H100' (repeat for several; before hardware_names "
        "and the detected models)",
    )
    add_settings_flags(serve, HOST_FIELDS)

    hosts = commands.add_parser(
        "hosts",
        help="list the live measure hosts of the DDS domain (the pool)",
        description=(
            "Join the DDS domain, read the measure hosts' announcements for --wait-s seconds and list them: id, host "
            "name, idle or busy, queue, hardware names, power sources, version, uptime. Exit status 0 when at least one "
            "host is live, 1 when none is."
        ),
    )
    hosts.add_argument(
        "--wait-s", type=float, default=HOSTS_WAIT_S, metavar="SECONDS", help=f"seconds to listen (default {HOSTS_WAIT_S:g})"
    )
    hosts.add_argument("--json", action="store_true", help="print the hosts as JSON")
    add_settings_flags(hosts, ("domain_id", *LOG_FIELDS))


def _cmd_serve_measurements(args: argparse.Namespace) -> int:
    from carbon_node.service.measure_host import HOST_FIELDS, run_measure_host

    loaded = load_for(args, HOST_FIELDS)
    configure_logs(loaded.settings)
    from carbon_node.service.dirs import prepare_directories

    prepare_directories(loaded.settings, loaded.sources)  # an unusable directory: one line, exit status 2
    names = tuple(" ".join(name.split()) for name in args.hardware_name if name.strip())
    from carbon_node.service.daemon import exit_process

    exit_process(run_measure_host(loaded.settings, names))


def format_hosts(hosts: list[dict[str, Any]], as_json: bool, domain_id: int) -> str:
    """``hosts`` output: one aligned line per host, or JSON."""
    if as_json:
        return json.dumps({"domain_id": domain_id, "hosts": hosts}, indent=2)
    if not hosts:
        return f"no live measure host on DDS domain {domain_id}"
    header = ("HOST_ID", "HOST_NAME", "STATE", "QUEUE", "SERVED", "UP_S", "POWER", "VERSION", "HARDWARE")
    rows = [
        (
            h["host_id"],
            h["host_name"],
            h["state"],
            "-" if h.get("queue") is None else str(h["queue"]),
            "-" if h.get("served") is None else str(h["served"]),
            f"{h['up_s']:g}",
            ",".join(h["power_sources"]) or "-",
            h["version"],
            "; ".join(h["hardware"]) or "-",
        )
        for h in hosts
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in (header, *rows)
    ]
    lines.append(f"{len(hosts)} live measure host(s) on DDS domain {domain_id}")
    return "\n".join(line.rstrip() for line in lines)


def _cmd_hosts(args: argparse.Namespace) -> int:
    loaded = load_for(args, ("domain_id", *LOG_FIELDS))
    configure_logs(loaded.settings)
    if not 0 < args.wait_s <= 60:
        raise SettingsError(f"--wait-s must be > 0 and <= 60 seconds, got {args.wait_s:g}")
    from carbon_node.service.pool import live_hosts

    hosts = live_hosts(loaded.settings.domain_id, args.wait_s)
    print(format_hosts(hosts, args.json, loaded.settings.domain_id))
    return 0 if hosts else 1


POOL_COMMANDS = {"serve-measurements": _cmd_serve_measurements, "hosts": _cmd_hosts}
