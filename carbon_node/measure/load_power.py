"""CPU power from what a window did, where no counter measures it: the Boavizta/Teads TDP-to-load curve.

The model (Boavizta's CPU consumption profile adapted from a TDP, and its cloud-instance allocation):

- **Curve.** A CPU package at load ``u`` (0-1) draws ``TDP x f(u)``, ``f`` the Teads ratios of TDP
  measured at 0, 10, 50 and 100 % load: 0.12, 0.32, 0.75, 1.02. Source: Boavizta API
  (github.com/Boavizta/boaviztapi, version 2.4.1, commit 15878f0), file
  ``boaviztapi/models/consumption_profile/consumption_profile.py``, ``CPUConsumptionProfileModel``:
  ``_TDP_RATIOS_WORKLOAD = [0, 10, 50, 100]`` and ``_TDP_RATIOS = [0.12, 0.32, 0.75, 1.02]``
  ("average power consumption per unit of TDP (given by TEADS)", ``docs/docs/Explanations/components/cpu.md``).
  Boavizta fits ``a ln(b (x + c)) + d`` through these four points with scipy; this module interpolates
  linearly between them (exact at the published points; no scipy in the worker).
- **The process's share of the socket.** Boavizta charges a cloud instance the server CPU's profile at
  the instance's own load times ``vCPU_instance / vCPU_server`` (``docs/docs/Explanations/services/cloud.md``).
  Here the "instance" is the measured process: it occupies ``n = min(N, max(threads, b))`` logical CPUs,
  where ``threads`` is torch's intra-op thread count, ``b = cpu_s / window_s`` the CPUs its CPU time kept
  busy (all its threads: ``time.process_time``), and ``N`` the logical CPUs it may run on (its CPU
  affinity). Its load is ``u = b / n`` and it is charged::

      P_cpu = TDP x f(u) x n / H

  with ``H`` the hardware threads of one CPU package. So a process is charged the idle power of the
  logical CPUs it holds, and their load-dependent power at its own load; the rest of the socket is not
  its cost. A 4-thread model on a 128-thread socket pays 4/128 of the socket, not half its TDP.
- **TDP and threads, and where they come from.** ``TDP``: the entry of carbontracker's CPU table that
  matched this CPU (``carbontracker_table``), else carbontracker's fallback, the table's average
  (``carbontracker_average``). ``H``: on bare metal the kernel's ``siblings`` (logical CPUs per package,
  ``/proc/cpuinfo``; ``cpuinfo``). Under a hypervisor (the ``hypervisor`` CPU flag) ``siblings`` counts the
  virtual machine's CPUs, not the host's package: then ``H`` is the median hardware-thread count of the
  307 server CPUs (Xeon, EPYC) in Boavizta's CPU spec table (``boaviztapi/data/crowdsourcing/cpu_specs.csv``,
  same commit): 48 (``server_median``); and when the CPU matched no table entry either, its TDP is
  those CPUs' median TDP, 200 W (``server_median``), since the table average mixes desktop and mobile CPUs.

:func:`socket_facts` reads ``/proc/cpuinfo`` (its path is a parameter, for fixture trees); everything
else is pure arithmetic.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "CPUINFO",
    "MODEL_NAME",
    "SERVER_MEDIAN_TDP_W",
    "SERVER_MEDIAN_THREADS",
    "TEADS_LOADS",
    "TEADS_TDP_RATIOS",
    "LoadPowerModel",
    "SocketFacts",
    "TdpSource",
    "ThreadsSource",
    "occupied_cpus",
    "socket_facts",
    "tdp_ratio",
]

MODEL_NAME = "boavizta_teads_tdp_curve"
"""How ``power_model.name`` names this model."""

TEADS_LOADS = (0.0, 0.10, 0.50, 1.00)
"""CPU loads (fraction) of the Teads points (Boavizta ``_TDP_RATIOS_WORKLOAD`` / 100)."""

TEADS_TDP_RATIOS = (0.12, 0.32, 0.75, 1.02)
"""Power / TDP at :data:`TEADS_LOADS` (Boavizta ``_TDP_RATIOS``)."""

SERVER_MEDIAN_THREADS = 48
"""Median hardware threads per package of the Xeon and EPYC models in Boavizta's ``cpu_specs.csv``."""

SERVER_MEDIAN_TDP_W = 200.0
"""Median TDP (W) of the same 307 server CPUs."""

CPUINFO = Path("/proc/cpuinfo")

TdpSource = Literal["carbontracker_table", "carbontracker_average", "server_median"]
ThreadsSource = Literal["cpuinfo", "server_median"]


def tdp_ratio(load: float) -> float:
    """``f(load)``: power / TDP at ``load`` (0-1, clamped), linear between the Teads points."""
    u = min(max(load, 0.0), 1.0)
    for (x0, y0), (x1, y1) in itertools.pairwise(zip(TEADS_LOADS, TEADS_TDP_RATIOS, strict=True)):
        if u <= x1:
            return y0 + (y1 - y0) * (u - x0) / (x1 - x0)
    return TEADS_TDP_RATIOS[-1]


def occupied_cpus(busy_cpus: float, threads: int, logical_cpus: int) -> float:
    """``n``: the logical CPUs a process occupies, ``min(N, max(threads, b))`` (at least 1)."""
    return max(1.0, min(float(logical_cpus), max(float(threads), busy_cpus)))


@dataclass(frozen=True)
class SocketFacts:
    """What ``/proc/cpuinfo`` says about the CPU package: logical CPUs per package, and whether the kernel
    runs under a hypervisor (then the package it describes is the virtual machine's)."""

    siblings: int | None
    hypervisor: bool


def socket_facts(cpuinfo: Path = CPUINFO) -> SocketFacts:
    """The first ``siblings`` line and the ``hypervisor`` flag of ``cpuinfo``; unknowns when unreadable."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return SocketFacts(None, False)
    siblings: int | None = None
    hypervisor = False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "siblings" and siblings is None:
            try:
                siblings = int(value.strip()) or None
            except ValueError:
                siblings = None
        elif key == "flags" and "hypervisor" in value.split():
            hypervisor = True
    return SocketFacts(siblings, hypervisor)


def logical_cpus() -> int:
    """The logical CPUs this process may run on (its affinity; ``os.cpu_count`` where there is none)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class LoadPowerModel:
    """The model's fixed inputs for one window (see the module docstring); :meth:`power_w` adds the load."""

    tdp_w: float
    tdp_source: TdpSource
    socket_threads: int
    threads_source: ThreadsSource
    logical_cpus: int
    threads: int
    cpu_name: str = ""

    @classmethod
    def for_host(
        cls,
        *,
        cpu_name: str,
        table_tdp_w: float,
        table_matched: bool,
        threads: int,
        facts: SocketFacts,
        cpus: int,
    ) -> LoadPowerModel:
        """The model on this host: carbontracker's TDP (``table_matched``: from a table entry, else its
        average) and the package's threads, chosen as the module docstring says."""
        tdp_w, tdp_source = (table_tdp_w, "carbontracker_table") if table_matched else (table_tdp_w, "carbontracker_average")
        if facts.hypervisor or facts.siblings is None:
            socket, threads_source = max(SERVER_MEDIAN_THREADS, cpus), "server_median"
            if not table_matched:
                tdp_w, tdp_source = SERVER_MEDIAN_TDP_W, "server_median"
        else:
            socket, threads_source = facts.siblings, "cpuinfo"
        return cls(
            tdp_w=float(tdp_w),
            tdp_source=tdp_source,  # type: ignore[arg-type]
            socket_threads=int(socket),
            threads_source=threads_source,  # type: ignore[arg-type]
            logical_cpus=max(1, int(cpus)),
            threads=max(1, int(threads)),
            cpu_name=cpu_name,
        )

    def power_w(self, cpu_s: float, window_s: float) -> float:
        """CPU power (W) charged to a process that used ``cpu_s`` CPU seconds over ``window_s`` seconds."""
        return float(self.describe(cpu_s, window_s)["cpu_power_w"])

    def describe(self, cpu_s: float, window_s: float) -> dict[str, Any]:
        """The ``power_model`` object of a window: the model's name, its inputs and its result."""
        busy = cpu_s / window_s if window_s > 0 else 0.0
        occupied = occupied_cpus(busy, self.threads, self.logical_cpus)
        load = min(busy / occupied, 1.0)
        ratio = tdp_ratio(load)
        share = occupied / self.socket_threads
        return {
            "name": MODEL_NAME,
            "cpu_power_w": self.tdp_w * ratio * share,
            "tdp_w": self.tdp_w,
            "tdp_source": self.tdp_source,
            "cpu_name": self.cpu_name,
            "socket_threads": self.socket_threads,
            "threads_source": self.threads_source,
            "logical_cpus": self.logical_cpus,
            "torch_threads": self.threads,
            "cpu_s": cpu_s,
            "window_s": window_s,
            "busy_cpus": busy,
            "occupied_cpus": occupied,
            "load": load,
            "tdp_ratio": ratio,
            "socket_share": share,
        }
