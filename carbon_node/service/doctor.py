"""``carbon-node doctor``: what this host can measure and whether the node can run here.

Each check gives a status (ok, warn, fail) and one line of detail. ``fail`` means the node cannot run
(the DDS binding is missing, the state directory is not writable, the requested bus is unavailable);
``warn`` means it runs but something is degraded (no energy counter: carbontracker falls back to its
TDP table or simulated power). Readers of ``/sys`` take their root as a parameter so that tests point
them at fixture trees.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from carbon_node.service.settings import Settings

__all__ = ["Check", "Report", "format_report", "network_interfaces", "probe_rapl", "run_checks"]

CheckStatus = Literal["ok", "warn", "fail"]

_IFF_UP = 0x1
_IFF_MULTICAST = 0x1000
_UDEV_HINT = "install deploy/udev/99-carbon-node-powercap.rules and add the node's user to group 'powercap'"


@dataclass(frozen=True)
class Check:
    """One line of the report: a section, a name, a status and what was found."""

    section: str
    name: str
    status: CheckStatus
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    """All checks; the node can run when none failed."""

    checks: list[Check] = field(default_factory=list)

    @property
    def can_run(self) -> bool:
        return all(check.status != "fail" for check in self.checks)

    def add(self, section: str, name: str, status: CheckStatus, detail: str, **data: Any) -> None:
        self.checks.append(Check(section, name, status, detail, data))


def probe_rapl(sys_root: Path = Path("/sys")) -> tuple[CheckStatus, str, list[str]]:
    """Whether RAPL energy counters (``class/powercap/*/energy_uj``) exist and are readable, and why not."""
    powercap = sys_root / "class" / "powercap"
    counters = sorted(powercap.glob("*/energy_uj")) if powercap.is_dir() else []
    if not counters:
        return "warn", f"no RAPL counters under {powercap} (virtual machine, container without /sys, or not x86)", []
    readable, denied = [], []
    for counter in counters:
        try:
            counter.read_text()
            readable.append(counter.parent.name)
        except PermissionError:
            denied.append(counter.parent.name)
        except OSError:
            denied.append(counter.parent.name)
    if readable and not denied:
        return "ok", f"{len(readable)} RAPL zone(s) readable: {', '.join(readable)}", readable
    if readable:
        return "warn", f"RAPL zones readable: {', '.join(readable)}; not readable: {', '.join(denied)}", readable
    return (
        "warn",
        f"{len(denied)} RAPL zone(s) present but energy_uj is not readable (root-only since Linux 5.10): {_UDEV_HINT}",
        [],
    )


def probe_nvml() -> tuple[CheckStatus, str]:
    """Whether NVIDIA's management library answers, and with how many GPUs."""
    if importlib.util.find_spec("pynvml") is None:
        return "warn", "pynvml not installed: GPU energy is not measured"
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            count = int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception as exc:  # NVMLError subclasses differ per version; any failure means "no NVML"
        return "warn", f"NVML not available: {exc}"
    return "ok", f"NVML answers: {count} GPU(s)"


def probe_carbontracker_components(settings: Settings) -> tuple[CheckStatus, str]:
    """Which carbontracker components (cpu, gpu) would measure in the worker, with the node's sim settings."""
    try:
        from carbontracker.components.component import create_components

        from carbon_node.service.logs import tame_library_loggers

        tame_library_loggers()  # its module-level loggers print to stdout as soon as a CPU is probed

        class _Quiet:  # carbontracker logs through this object; the doctor only needs the result
            def __getattr__(self, _name: str) -> Any:
                return lambda *args, **kwargs: None

        components = create_components(
            "all",
            pids=[os.getpid()],
            devices_by_pid=False,
            logger=_Quiet(),
            sim_cpu="simulated" if settings.simulated_power else None,
            sim_cpu_tdp=settings.sim_cpu_tdp_w,
            sim_cpu_util=settings.sim_cpu_util,
        )
        available = [c.name for c in components if c.available()]
    except Exception as exc:  # carbontracker missing or failing to probe: the worker would fail the same way
        return "warn", f"carbontracker cannot probe components: {exc}"
    if not available:
        return "warn", "no carbontracker component available: tracker tasks fall back to HW power x latency or error"
    return "ok", f"carbontracker components available: {', '.join(available)}"


def _power_plan(settings: Settings) -> tuple[CheckStatus, str]:
    """How a measurement window would get its energy here (the worker's own decision)."""
    try:
        from carbon_node.measure.power import plan_power, tdp_table_match

        plan = plan_power(
            sim_cpu_tdp_w=settings.sim_cpu_tdp_w,
            sim_cpu_util=settings.sim_cpu_util,
            uses_cuda=settings.device == "cuda",
            tdp_match=tdp_table_match,
            cpu_power_model=settings.cpu_power_model,
            threads=settings.torch_threads or 1,
        )
    except Exception as exc:  # carbontracker missing or failing: the worker would fail the same way
        return "warn", f"cannot plan the power source: {exc}"
    status: CheckStatus = "ok" if plan.source in ("rapl", "nvml", "simulated") else "warn"
    return status, "; ".join((f"windows use {plan.source}", *plan.notes))


def network_interfaces(sys_root: Path = Path("/sys")) -> list[dict[str, Any]]:
    """Network interfaces with their up and multicast flags (DDS discovery needs multicast)."""
    result = []
    net = sys_root / "class" / "net"
    for entry in sorted(net.iterdir()) if net.is_dir() else []:
        try:
            flags = int((entry / "flags").read_text().strip(), 16)
        except (OSError, ValueError):
            continue
        result.append({"name": entry.name, "up": bool(flags & _IFF_UP), "multicast": bool(flags & _IFF_MULTICAST)})
    return result


def _check_node(report: Report, settings: Settings, quick: bool) -> None:
    spec = importlib.util.find_spec("cyclonedds")
    if spec is None:
        report.add("node", "cyclonedds", "fail", "the DDS binding (PyPI cyclonedds) is not installed")
    else:
        from importlib import metadata

        report.add("node", "cyclonedds", "ok", f"cyclonedds {metadata.version('cyclonedds')}")
    missing = [name for name in ("torch", "transformers", "carbontracker") if importlib.util.find_spec(name) is None]
    if missing:
        report.add(
            "node",
            "measure extra",
            "warn",
            f"not installed: {', '.join(missing)}; tracker tasks answer with an error (pip install '.[measure]')",
        )
    else:
        report.add("node", "measure extra", "ok", "torch, transformers and carbontracker are installed")


def _check_power(report: Report, settings: Settings, quick: bool, sys_root: Path) -> None:
    status, detail, zones = probe_rapl(sys_root)
    report.add("power", "rapl", status, detail, zones=zones)
    if not quick:
        nvml_status, nvml_detail = probe_nvml()
        report.add("power", "nvml", nvml_status, nvml_detail)
        ct_status, ct_detail = probe_carbontracker_components(settings)
        report.add("power", "carbontracker", ct_status, ct_detail)
        report.add("power", "window_source", *_power_plan(settings))
    if settings.simulated_power:
        util = settings.sim_cpu_util if settings.sim_cpu_util is not None else "carbontracker default"
        report.add("power", "simulated", "ok", f"simulated CPU power {settings.sim_cpu_tdp_w} W, utilisation {util}")
    else:
        report.add("power", "simulated", "ok", "off (CARBON_NODE_SIM_CPU_TDP_W unset)")


def _check_intensity(report: Report, settings: Settings, quick: bool) -> None:
    if settings.grid_ci_g_per_kwh > 0:
        report.add("intensity", "source", "ok", f"fixed {settings.grid_ci_g_per_kwh} gCO2e/kWh from SUSTAINML_GRID_CI (env)")
    chain = (
        "the user's geo_location read as a country, region, city, cloud region or zone id (the place resolver: "
        "carbontracker's country table, CodeCarbon's sub-national and cloud figures), else its continent's average"
    )
    if settings.live_intensity:
        chain += f", then carbontracker's live providers (network, {settings.live_intensity_timeout_s} s)"
    fallback = "carbontracker's world average"
    if not quick:
        from carbon_node.engine.intensity import world_average

        average = world_average()
        fallback += f" ({average.g_per_kwh} gCO2e/kWh, {average.year})"
    if settings.grid_ci_g_per_kwh <= 0:
        report.add("intensity", "source", "ok", f"per task: {chain}, else {fallback}")
    if not quick:
        _check_places(report)


def _check_places(report: Report) -> None:
    """The place resolver's data loads, as the node would load it (the same resolver), and reads a place."""
    from carbon_node.engine.places import PlaceIntensity
    from carbon_node.engine.task import Location

    places = PlaceIntensity()
    data = places.data()
    if data is None:
        report.add(
            "intensity", "places", "fail", f"the place data did not load: {places.error}; every task gets the world average"
        )
        return
    summary = data.summary()
    sample = places.lookup(Location(region="California"))
    example = f"; 'California' -> {sample.zone} {sample.g_per_kwh:.0f} gCO2e/kWh ({sample.source})" if sample is not None else ""
    report.add(
        "intensity",
        "places",
        "ok",
        f"{summary['countries']} countries, {summary['regions']} regions, {summary['cities']} cities, "
        f"{summary['zones_with_figures']} sub-national and cloud zones with figures, loaded in {summary['load_s']:.2f} s "
        f"({', '.join(summary['packages'])}){example}",
        **summary,
    )


def _check_dds(report: Report, settings: Settings, sys_root: Path) -> None:
    uri = os.environ.get("CYCLONEDDS_URI", "")
    report.add(
        "dds",
        "domain",
        "ok",
        f"domain {settings.domain_id}; CYCLONEDDS_URI {'set' if uri else 'unset (Cyclone defaults)'}",
        domain_id=settings.domain_id,
    )
    interfaces = network_interfaces(sys_root)
    usable = [i["name"] for i in interfaces if i["up"] and i["multicast"] and i["name"] != "lo"]
    listing = ", ".join(
        f"{i['name']}({'up' if i['up'] else 'down'}{', multicast' if i['multicast'] else ''})" for i in interfaces
    )
    if usable:
        report.add("dds", "interfaces", "ok", f"{listing}; discovery can use {', '.join(usable)}", interfaces=interfaces)
    else:
        report.add(
            "dds",
            "interfaces",
            "warn",
            f"{listing or 'none found'}; no multicast interface is up: peers on other hosts will not be discovered",
            interfaces=interfaces,
        )
    report.add("dds", "hostname", "ok", socket.gethostname())


NODES_LISTEN_S = 1.0
"""Seconds ``doctor`` listens for the carbon nodes announced on the domain."""


def _check_nodes(report: Report, settings: Settings, quick: bool) -> None:
    """Which carbon nodes answer on the domain, and which one is active (the standby rule)."""
    if quick:
        return
    try:
        from carbon_node.bus.announce import AnnouncementBoard
        from carbon_node.bus.cyclone import create_participant, delete_entity
        from carbon_node.bus.standby import active_node

        participant = create_participant(settings.domain_id, "CARBON_NODE_DOCTOR")
        try:
            board = AnnouncementBoard(participant)
            time.sleep(NODES_LISTEN_S)
            nodes = board.live("node")
        finally:
            delete_entity(participant)
    except Exception as exc:  # no network, a bad CYCLONEDDS_URI: the DDS checks above say more
        report.add("dds", "carbon_nodes", "warn", f"cannot listen on domain {settings.domain_id}: {exc}")
        return
    mode = "on" if settings.standby else "off (this node would always answer)"
    if not nodes:
        report.add("dds", "carbon_nodes", "ok", f"no carbon node announced on domain {settings.domain_id}; standby {mode}")
        return
    active = active_node(nodes)
    listing = "; ".join(
        f"{n.node_id} on {n.host_name}: {n.state or '?'}{' (standby off)' if not n.standby_enabled else ''}" for n in nodes
    )
    first = f"active: {active.node_id}" if active is not None else "none takes part in the standby rule"
    report.add("dds", "carbon_nodes", "ok", f"{len(nodes)} on domain {settings.domain_id} ({first}): {listing}; standby {mode}")


def _check_upstream(report: Report, settings: Settings) -> None:
    """Which bus ``carbon-node run`` will use, and why: the probe ``run`` makes (it imports the bindings'
    node module and, through it, their native libraries)."""
    from carbon_node.bus.upstream import LOADER_PATH_FIX, choose_bus, probe_upstream

    probe = probe_upstream()
    choice = choose_bus(settings.bus)
    if settings.bus == "sustainml" and not probe.usable:
        why = "not installed" if not probe.installed else f"installed but does not import ({probe.error}); {LOADER_PATH_FIX}"
        report.add("upstream", "sustainml_py", "fail", f"bus sustainml is set, but the bindings are {why}")
    elif choice.fallback_error is not None:
        report.add("upstream", "sustainml_py", "warn", f"run uses cyclone: {choice.reason}; {LOADER_PATH_FIX}")
    else:
        report.add("upstream", "sustainml_py", "ok", f"run uses {choice.kind}: {choice.reason}")


POOL_LISTEN_S = 1.5
"""Seconds ``doctor`` listens for measure hosts on the domain (skipped with ``--quick``)."""


def _check_pool(report: Report, settings: Settings, quick: bool) -> None:
    """The measurement pool: this host's hardware names, whether the node uses the pool, who is live."""
    from carbon_node.service.pool import host_names, live_hosts

    names = host_names(settings)
    report.add("pool", "hardware", "ok", f"this host answers to: {'; '.join(names) or 'no names'}", hardware=names)
    if not settings.measure_pool:
        report.add("pool", "measure_pool", "ok", "off: every measurement on this host")
        return
    report.add(
        "pool",
        "measure_pool",
        "ok",
        f"on: a task goes to a live measure host with the hardware of its hw_description (on failure: {settings.pool_fallback})",
    )
    if quick:
        return
    try:
        hosts = live_hosts(settings.domain_id, POOL_LISTEN_S)
    except Exception as exc:  # the DDS check above says more; this one only lists hosts
        report.add("pool", "hosts", "warn", f"cannot list the measure hosts: {exc}")
        return
    listing = "; ".join(f"{h['host_id']} ({', '.join(h['hardware'])}, {h['state']})" for h in hosts)
    detail = (
        f"{len(hosts)} live measure host(s) on domain {settings.domain_id}: {listing}"
        if hosts
        else (
            f"no live measure host on domain {settings.domain_id} (heard for {POOL_LISTEN_S:g} s): every measurement on this host"
        )
    )
    report.add("pool", "hosts", "ok", detail, hosts=hosts)


def _check_dirs(report: Report, settings: Settings, sources: Mapping[str, str]) -> None:
    """The check ``carbon-node run`` makes before it starts (:mod:`carbon_node.service.dirs`), without
    creating anything: a directory it cannot use stops the node with exit status 2."""
    from carbon_node.service.dirs import DIRECTORY_SETTINGS, setting_problem

    for name in DIRECTORY_SETTINGS:
        path = Path(getattr(settings, name))
        problem = setting_problem(settings, name, sources)
        if problem is None:
            report.add("dirs", name, "ok", str(path) if path.exists() else f"{path} (created at start)")
        else:
            report.add("dirs", name, "fail", f"{problem}; `carbon-node run` stops with exit status 2")


def run_checks(
    settings: Settings, *, quick: bool = False, sys_root: Path = Path("/sys"), sources: Mapping[str, str] | None = None
) -> Report:
    """Run every check; ``quick`` skips those that import heavy libraries (health checks). ``sources``
    says where each setting came from (``LoadedSettings.sources``; None: all defaults)."""
    report = Report()
    _check_node(report, settings, quick)
    _check_power(report, settings, quick, sys_root)
    _check_intensity(report, settings, quick)
    _check_dds(report, settings, sys_root)
    _check_nodes(report, settings, quick)
    _check_upstream(report, settings)
    _check_pool(report, settings, quick)
    _check_dirs(report, settings, sources or {})
    return report


def format_report(report: Report, *, as_json: bool = False) -> str:
    """The report as aligned text lines (``[ok] section/name: detail``) or as JSON."""
    if as_json:
        return json.dumps({"can_run": report.can_run, "checks": [dataclasses.asdict(check) for check in report.checks]}, indent=2)
    width = max((len(f"{c.section}/{c.name}") for c in report.checks), default=0)
    lines = [f"[{c.status:<4}] {f'{c.section}/{c.name}':<{width}}  {c.detail}" for c in report.checks]
    lines.append("the node can run on this host" if report.can_run else "the node cannot run on this host (see [fail] lines)")
    return "\n".join(lines)
