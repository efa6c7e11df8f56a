"""The benchmark's table: one row per metric, the median over the rounds for each design, and carbon-node's
advantage as the median of the per-round ratios with their spread (the rounds interleave the two designs,
carbon-node then the baseline: a transient load hits both, and each round's ratio compares like with like).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Row", "advantage", "cpu_model", "machine", "render", "value"]

Target = Callable[[float, float], bool]
"""Whether carbon-node's value (first argument) meets the row's target; the second is the baseline's."""


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    target_text: str = ""
    target: Target | None = None
    better: str = "lower"
    """``lower`` or ``higher``: which way is better (sets the advantage column); ``""``: no advantage shown."""
    lost_key: str = ""
    """For a throughput row: the row counting the tasks lost, shown next to a rate that left some out."""
    relative: bool = False
    """The target compares with the baseline's value: no verdict when the baseline did not run."""
    worst: bool = False
    """Aggregate the rounds by their largest value (tasks lost: the most lost in a run), not the median."""


def is_number(value: float) -> bool:
    return value == value and abs(value) != float("inf")


def value(results: dict[str, dict[str, Any]], row: Row, kind: str) -> float:
    """The row's figure for ``kind``: the median over its rounds (the largest for a ``worst`` row)."""
    samples = [float(v) for v in results.get(row.key, {}).get(kind, [])]
    numbers = [v for v in samples if is_number(v)]
    if not numbers:
        return samples[0] if samples else float("nan")
    return max(numbers) if row.worst else statistics.median(numbers)


def advantage(row: Row, ours: float, base: float) -> float:
    """How many times better carbon-node is on ``row`` (> 1: carbon-node better); NaN when not defined."""
    if not row.better or not (is_number(ours) and is_number(base)):
        return float("nan")
    better, worse = (base, ours) if row.better == "lower" else (ours, base)
    if worse == 0:
        return float("inf") if better > 0 else float("nan")
    return better / worse


def round_ratios(results: dict[str, dict[str, Any]], row: Row) -> list[float]:
    """carbon-node's advantage in each round (the two designs' values of the same round)."""
    ours = results.get(row.key, {}).get("carbon-node", [])
    base = results.get(row.key, {}).get("baseline", [])
    ratios = [advantage(row, float(a), float(b)) for a, b in zip(ours, base, strict=False)]
    return [r for r in ratios if is_number(r)]


def ratio_text(results: dict[str, dict[str, Any]], row: Row) -> str:
    """The median of the per-round ratios and their range, ``1.03 (0.92-1.21, 5 rounds)``."""
    ratios = round_ratios(results, row)
    if not ratios:
        ours, base = value(results, row, "carbon-node"), value(results, row, "baseline")
        ratio = advantage(row, ours, base)
        return "" if not row.better else f"{ratio:.3g}"
    median = statistics.median(ratios)
    if len(ratios) == 1:
        return f"{median:.3g}"
    return f"{median:.3g} ({min(ratios):.3g}-{max(ratios):.3g}, {len(ratios)} rounds)"


def cell(results: dict[str, dict[str, Any]], row: Row, kind: str, tasks: int) -> str:
    figure = value(results, row, kind)
    text = f"{figure:.4g}"
    lost = value(results, Row(row.lost_key, "", worst=True), kind) if row.lost_key else None
    if lost and is_number(lost):
        text += f" ({tasks - int(lost)} of {tasks} answered)"
    return text


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``model name``, or ARM's ``Model``/``Hardware``)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return "unknown CPU"
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in text.splitlines():
            name, _, found = line.partition(":")
            if name.strip() == key and found.strip():
                return " ".join(found.split())
    return "unknown CPU"


def host_power_source() -> str:
    """The power source carbon-node's worker would use on this host without simulated power."""
    from carbon_node.measure.power import nvml_available, rapl_readable

    if nvml_available():
        return "nvml"
    return "rapl" if rapl_readable() else "tdp_table"


def machine(power_sources: dict[str, str], sim_tdp_w: float) -> str:
    """One line naming the machine: CPU model, CPUs usable by the benchmark, the host's power source."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    source = power_sources.get("carbon-node") or f"{host_power_source()} (predicted; the host-power phase did not run)"
    return (
        f"Machine: {cpu_model()}, {usable} usable CPUs ({os.cpu_count()} online); host's power source:"
        f" {source}; simulated power: {sim_tdp_w:g} W."
    )


def render(
    results: dict[str, dict[str, Any]],
    rows: Sequence[Row],
    *,
    quick: bool,
    elapsed_s: float,
    rounds: int,
    tasks: int,
    sim_tdp_w: float,
    footnote: str,
    power_sources: dict[str, str] | None = None,
) -> str:
    lines = [
        f"# carbon-node vs upstream design ({'quick' if quick else 'full'} run, {time.strftime('%Y-%m-%d %H:%M')},"
        f" {os.cpu_count()} CPUs, {elapsed_s:.0f} s, {rounds} interleaved rounds)",
        "",
        machine(power_sources or {}, sim_tdp_w),
        "",
        "| Metric | carbon-node | upstream design | carbon-node advantage, x (> 1: carbon-node better): median of the"
        " rounds (min-max) | target | carbon-node |",
        "|---|---:|---:|---:|---|---|",
    ]
    for row in rows:
        if row.key not in results:
            continue  # a phase not run (--phases)
        ours, base = value(results, row, "carbon-node"), value(results, row, "baseline")
        if row.target is None or (row.relative and not is_number(base)):
            verdict = ""
        else:
            verdict = "pass" if is_number(ours) and row.target(ours, base) else "miss"
        lines.append(
            f"| {row.label} | {cell(results, row, 'carbon-node', tasks)} | {cell(results, row, 'baseline', tasks)}"
            f" | {ratio_text(results, row) if row.better else ''} | {row.target_text} | {verdict} |"
        )
    lines += ["", footnote]
    return "\n".join(lines) + "\n"
