"""Which power source a measurement window uses, decided before carbontracker starts.

carbontracker picks its own CPU and GPU handlers; this module predicts and steers that choice so that
every Measurement says honestly how its energy was obtained:

- ``simulated``: sim settings were given; carbontracker's simulated CPU draws ``tdp_w x util`` watts.
- ``nvml``: a CUDA GPU is used and NVML answers (GPU energy is measured; the CPU part is by RAPL or TDP).
- ``rapl``: the Intel RAPL energy counters (``<powercap>/intel-rapl*/energy_uj``) are readable.
- ``tdp_table``: none of the above: carbontracker's CPU TDP table at 50 % utilisation, an estimate.

The ``tdp_table`` estimate is always computed here, with carbontracker's own table and CPU-name
matching (:func:`tdp_table_watts`, once per process), and handed to carbontracker through its ``sim_cpu``
settings (``sim_cpu_util=0.5``: its ``GenericCPU`` also draws 50 % of the TDP). Two reasons:

- carbontracker chooses its RAPL handler whenever the powercap directory is non-empty, even when the
  counters are not readable (the default since 2020), and then records zero power;
- carbontracker's ``GenericCPU`` handler asks ``cpuinfo.get_cpu_info()`` for the CPU name in its
  constructor, which runs a fresh Python interpreter (about 1.3 s of CPU here) for every
  ``CarbonTracker``, i.e. every window, competing with the window's own forward passes. Its
  ``SimulatedCPUHandler`` with the same name and figure gives the same energy and devices at no cost.

carbontracker behaviour relied on (2.4): ``GenericCPU(pids, devices_by_pid)`` sets ``cpu_brand`` and, after
``init()``, ``tdp`` = table TDP / 2 (or the table average / 2 for an unknown CPU); ``SimulatedCPUHandler``
draws ``sim_cpu_tdp x sim_cpu_util`` W. ``tests/measure/test_power.py`` pins both.

The powercap root is a parameter so tests can point it at a fixture tree.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from carbon_node.measure.protocol import PowerSource

__all__ = ["POWERCAP_ROOT", "PowerPlan", "nvml_available", "plan_power", "rapl_present", "rapl_readable"]

POWERCAP_ROOT = Path("/sys/class/powercap")
"""Where Linux exposes RAPL; carbontracker reads this exact path."""

SIMULATED_CPU_NAME = "carbon-node simulated CPU"

NVML_UPDATE_INTERVAL_S = 0.1
"""carbontracker's sampling interval (s) when a GPU is measured through NVML (its default is 1 s)."""


@dataclass(frozen=True)
class PowerPlan:
    """The power source of a window and the ``CarbonTracker`` keyword arguments that produce it."""

    source: PowerSource
    cpu_source: str
    """How the CPU part is obtained: ``rapl``, ``tdp_table`` or ``simulated``."""
    gpu_source: str | None
    """``nvml`` when a GPU is measured, else None."""
    tracker_kwargs: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def rapl_present(powercap_root: Path = POWERCAP_ROOT) -> bool:
    """Whether carbontracker would pick its RAPL handler (the directory exists and is not empty)."""
    try:
        return powercap_root.is_dir() and any(powercap_root.iterdir())
    except OSError:
        return False


def rapl_readable(powercap_root: Path = POWERCAP_ROOT) -> bool:
    """Whether at least one RAPL zone counter (``intel-rapl*/energy_uj``) can be read as an integer."""
    try:
        zones = sorted(powercap_root.glob("intel-rapl*/energy_uj"))
    except OSError:
        return False
    for counter in zones:
        try:
            int(counter.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            continue
        return True
    return False


def _rapl_problem(powercap_root: Path) -> str:
    """Why the counters under ``powercap_root`` cannot be read, in a few words."""
    from carbon_node.measure.rapl import RaplCounters, RaplError

    try:
        RaplCounters.read(RaplCounters(powercap_root).discover())
    except RaplError as exc:
        return str(exc)
    return "no zone counter answered with an integer"


def nvml_available() -> bool:
    """Whether NVML initialises and reports at least one GPU (pynvml installed, driver present)."""
    try:
        import pynvml
    except ImportError:
        return False
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, driver mismatch: all mean "no NVML"
        return False
    try:
        return int(pynvml.nvmlDeviceGetCount()) > 0
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):  # a failing shutdown must not fail the probe
            pynvml.nvmlShutdown()


_TDP_TABLE_LOCK = threading.Lock()


def tdp_table_watts() -> tuple[str, float]:
    """carbontracker's TDP-table estimate for this CPU: (CPU name, full TDP in W); its 50 % is applied later.

    Computed once per process (it costs a ``cpuinfo`` subprocess, about 1.3 s); the worker starts it in a
    thread during its warm-up, and a window that needs it meanwhile waits for that one lookup.
    """
    with _TDP_TABLE_LOCK:
        return _tdp_table_lookup()


def tdp_table_match() -> str | None:
    """The entry of carbontracker's CPU table that matched this CPU, or None when none did (carbontracker
    then uses its table's average TDP). Shares :func:`tdp_table_watts`'s one lookup."""
    with _TDP_TABLE_LOCK:
        return _tdp_table_matched()


def _matched_entry(brand: str, table: dict[str, float]) -> str | None:
    """The table entry carbontracker 2.4's ``GenericCPU.find_matching_tdp`` takes for ``brand``: the brand
    itself, else the first entry containing the brand without its ``@ frequency``; None if neither."""
    if brand in table:
        return brand
    base = brand.split("@")[0].strip()
    return next((name for name in table if base and base in name), None)


@functools.cache
def _tdp_table_lookup() -> tuple[str, float]:
    return _tdp_table_probe()[:2]


@functools.cache
def _tdp_table_matched() -> str | None:
    return _tdp_table_probe()[2]


@functools.cache
def _tdp_table_probe() -> tuple[str, float, str | None]:
    from carbontracker.components.cpu.generic import GenericCPU

    # carbontracker reports the match (or its fallback) as a warning on its own logger, which reaches the
    # node's log or the terminal as a stray line: this lookup says it in the plan's notes instead.
    err_logger = logging.getLogger("carbontracker.root.err")
    handlers, propagate = err_logger.handlers, err_logger.propagate
    err_logger.handlers, err_logger.propagate = [logging.NullHandler()], False
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            cpu = GenericCPU(pids=[], devices_by_pid=False)
            cpu.init()  # sets cpu.tdp to the matched (or average) TDP at 50 % utilisation
            matched = _matched_entry(cpu.cpu_brand or "", cpu.cpu_power_data)
    finally:
        err_logger.handlers, err_logger.propagate = handlers, propagate
    return cpu.cpu_brand or "Unknown CPU", float(cpu.tdp or 0.0) * 2.0, matched


def plan_power(
    *,
    sim_cpu_tdp_w: float | None,
    sim_cpu_util: float | None,
    uses_cuda: bool,
    powercap_root: Path = POWERCAP_ROOT,
    nvml_probe: Callable[[], bool] = nvml_available,
    tdp_table: Callable[[], tuple[str, float]] = tdp_table_watts,
    tdp_match: Callable[[], str | None] | None = None,
) -> PowerPlan:
    """Decide the power source of a window (see the module docstring).

    ``sim_cpu_tdp_w`` (W) with ``sim_cpu_util`` (0-1, default 1.0) simulates a CPU drawing
    ``sim_cpu_tdp_w x sim_cpu_util`` watts; ``uses_cuda`` says whether the model runs on a CUDA GPU.
    ``tdp_match`` (e.g. :func:`tdp_table_match`), when given, lets the notes say that the CPU is not in
    the table (its average TDP is used).
    """
    gpu_source: Literal["nvml"] | None = "nvml" if uses_cuda and nvml_probe() else None
    notes: list[str] = []
    if uses_cuda and gpu_source is None:
        notes.append("the model runs on a GPU but NVML is unavailable: GPU energy is not measured")
    # carbontracker averages its power samples over the epoch; at its default 1 s interval a 1 s GPU
    # window has one or two samples, the first taken as the epoch starts. Sample NVML faster.
    extra: dict[str, Any] = {"update_interval": NVML_UPDATE_INTERVAL_S} if gpu_source else {}

    if sim_cpu_tdp_w is not None:
        util = 1.0 if sim_cpu_util is None else sim_cpu_util
        kwargs = {"sim_cpu": SIMULATED_CPU_NAME, "sim_cpu_tdp": float(sim_cpu_tdp_w), "sim_cpu_util": float(util)}
        notes.append(f"simulated CPU power {sim_cpu_tdp_w * util:g} W ({sim_cpu_tdp_w:g} W TDP x {util:g} utilisation)")
        return PowerPlan("simulated", "simulated", gpu_source, {**kwargs, **extra}, tuple(notes))

    if rapl_readable(powercap_root):
        return PowerPlan(gpu_source or "rapl", "rapl", gpu_source, extra, tuple(notes))

    # carbontracker would use RAPL and read zeros, or GenericCPU and pay cpuinfo: hand it the estimate.
    name, tdp_w = tdp_table()
    kwargs = {"sim_cpu": name, "sim_cpu_tdp": tdp_w, "sim_cpu_util": 0.5}
    if tdp_match is not None and tdp_match() is None:
        notes.append(
            f"carbontracker's CPU table has no entry for {name!r}: its fallback, the table's average"
            f" ({tdp_w / 2:.4g} W drawn), is used"
        )
    if rapl_present(powercap_root):
        notes.append(
            f"RAPL counters are not readable ({_rapl_problem(powercap_root)}): "
            "CPU power is carbontracker's TDP-table estimate, not a measurement"
        )
    else:
        notes.append("no RAPL counters: CPU power is carbontracker's TDP-table estimate (50 % of TDP), not a measurement")
    return PowerPlan(gpu_source or "tdp_table", "tdp_table", gpu_source, {**kwargs, **extra}, tuple(notes))
