"""How uncertain a window's energy is: the power source's part and the window's spread, as factors.

Every part is a pair of factors ``(low, high)``, ``low <= 1 <= high``: the truth lies within
``[value x low, value x high]`` at about 95 %. Parts are taken as independent and combined root-sum-square
in log space, each side on its own (:func:`combine`): ``ln high = sqrt(sum ln(high_i)^2)``, likewise
``low``. The published value is always inside, whatever the parts.

**The power source** (:func:`power_part`), per figure published:

- simulated: 1, 1. The simulated power is the truth by definition (tests, demos).
- RAPL counter (package + DRAM): 0.75, 1.35. The counters against a wall meter: they miss the power
  supply's losses and the board (hence the wider high side). Fahad et al., "A Comparative Study of
  Methods for Measurement of Energy of Computing", Energies 12(11):2204, 2019, report on-chip sensors'
  dynamic-energy errors averaging up to 73 % on some platforms; a window's total energy errs less.
  This project's bound.
- NVML (GPU): 0.85, 1.15. NVML's reading is within +/- 5 % of the draw (NVML API reference,
  ``nvmlDeviceGetPowerUsage``, Fermi and Kepler); on Ampere and newer it is a 1 s average, so the samples
  of a short window lag its load: +/- 15 %.
- carbontracker's TDP table (50 % of TDP at any load): 0.24, 2.04 (and the TDP's own, below). The Teads
  curve spans 0.12-1.02 x TDP from idle to full load.
- the load model: below.

The load model's part (:func:`load_model_part`) multiplies (log-RSS) four factors:

- the curve's shape at the window's load: the six per-range profiles Boavizta publishes
  (``boaviztapi/data/consumption_profile/cpu/cpu_profile.csv``, commit 15878f0: Xeon Platinum, Gold,
  Silver, E5, E3, E), each normalised to its full-load power, against the Teads ratios normalised the same
  way: the smallest and largest ratio at that load (1, 1 at full load);
- the full-load power against the TDP: 0.7, 1.3 (Teads' average is 1.02 x TDP; a package's sustained
  draw at full load sits around its TDP, turbo above, light vector units below: this project's bound);
- the TDP: 1, 1 for a matched table entry; carbontracker's average: the 2.5th and 97.5th percentiles of
  its table's TDPs over their mean (computed from the installed table); server median (a virtual machine
  whose CPU is not in the table): the 2.5th-97.5th percentiles of TDP per hardware thread of the 307 Xeon
  and EPYC models in Boavizta's ``cpu_specs.csv`` over their median, 1.758 / 4.125 and 15.0 / 4.125
  (this one covers the thread count too);
- the threads per package: 1, 1 from ``/proc/cpuinfo`` on bare metal; assumed 48 under a hypervisor with a
  table TDP: the same models' 2.5th-97.5th percentiles of threads, 8 and 176.4 (power is inversely
  proportional to them: 48 / 176.4 and 48 / 8).

**The window's spread** (:func:`spread_part`): per-pass energy over the sub-windows of the one window
(:mod:`carbon_node.measure.sub_windows`; power from the load model per sub-window where it gives the
figure, else constant). The half-width of the mean's 95 % interval, Student's t with ``K - 1`` degrees of
freedom times the standard error over ``K`` sub-windows, relative to the mean. For the HW-latency scaling
(window power x latency) the same over the sub-windows' power, which only the load model lets vary.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from carbon_node.measure.sub_windows import SubWindow

__all__ = [
    "LEVEL",
    "EnergyUncertainty",
    "Part",
    "combine",
    "curve_shape_factors",
    "interval",
    "load_model_part",
    "power_part",
    "spread_part",
]

LEVEL = "95%"
"""The level every part and their combination are stated at."""

RAPL_FACTORS = (0.75, 1.35)
NVML_FACTORS = (0.85, 1.15)
TDP_TABLE_FACTORS = (0.12 / 0.5, 1.02 / 0.5)
FULL_LOAD_FACTORS = (0.7, 1.3)
SERVER_TDP_PER_THREAD_FACTORS = (1.758 / 4.125, 15.0 / 4.125)
SERVER_THREADS_FACTORS = (48 / 176.4, 48 / 8)

BOAVIZTA_PROFILES = {
    "Xeon Platinum": (171.1813, 0.0354, 36.8953, -10.1336),
    "Xeon Gold": (35.5688, 0.2438, 9.6694, -0.6087),
    "Xeon Silver": (20.7794, 0.3043, 8.4241, 0.8613),
    "Xeon E5": (48.9167, 0.1349, 15.7262, -4.654),
    "Xeon E3": (342.3624, 0.0347, 36.8952, -16.4022),
    "Xeon E": (55.6501, 0.0467, 20.4146, 4.24362),
}
"""Boavizta's per-range CPU profiles ``a ln(b (load% + c)) + d`` (W), manufacturer Intel."""

_T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262)
"""Student's t, 97.5th percentile, for 1-9 degrees of freedom."""


@dataclass(frozen=True)
class Part:
    """One source of error as factors on the value (``low <= 1 <= high``), and why."""

    name: str
    low: float
    high: float
    why: str

    def as_dict(self) -> dict[str, Any]:
        return {"factor": [self.low, self.high], "why": self.why}


def combine(parts: Iterable[Part]) -> tuple[float, float]:
    """The factors of independent parts together: root-sum-square of their logs, each side apart."""
    low = high = 0.0
    for part in parts:
        low += math.log(min(max(part.low, 1e-9), 1.0)) ** 2
        high += math.log(max(part.high, 1.0)) ** 2
    return math.exp(-math.sqrt(low)), math.exp(math.sqrt(high))


def interval(value: float, parts: Iterable[Part]) -> list[float]:
    """``[low, high]`` around ``value`` for ``parts`` (``value`` itself is always inside)."""
    low, high = combine(parts)
    return [value * low, value * high]


def _merge(name: str, factors: Sequence[tuple[float, float]], why: str) -> Part:
    low, high = combine(Part("", lo, hi, "") for lo, hi in factors)
    return Part(name, low, high, why)


def curve_shape_factors(load: float) -> tuple[float, float]:
    """The smallest and largest ratio, at ``load`` (0-1), of Boavizta's per-range profiles to the Teads curve,
    all normalised to their full-load power (see the module docstring)."""
    from carbon_node.measure.load_power import TEADS_TDP_RATIOS, tdp_ratio

    u = min(max(load, 0.0), 1.0)
    teads = tdp_ratio(u) / TEADS_TDP_RATIOS[-1]
    ratios = []
    for a, b, c, d in BOAVIZTA_PROFILES.values():
        full = a * math.log(b * (100.0 + c)) + d
        ratios.append((a * math.log(b * (100.0 * u + c)) + d) / full / teads)
    return min(1.0, *ratios), max(1.0, *ratios)


def load_model_part(power_model: dict[str, Any], table_spread: Callable[[], tuple[float, float]]) -> Part:
    """The load model's part for the window ``power_model`` describes (``table_spread``: the factors of
    carbontracker's average TDP, only called when that average was used)."""
    load = float(power_model.get("load", 1.0))
    factors = [curve_shape_factors(load), FULL_LOAD_FACTORS]
    notes = [f"curve shape at load {load:.2f}", "full-load power vs TDP 0.7-1.3"]
    tdp_source, threads_source = power_model.get("tdp_source"), power_model.get("threads_source")
    if tdp_source == "carbontracker_average":
        factors.append(table_spread())
        notes.append("TDP: carbontracker's table average (its 2.5-97.5 % spread)")
    if tdp_source == "server_median":
        factors.append(SERVER_TDP_PER_THREAD_FACTORS)
        notes.append("TDP per thread: server median (Boavizta cpu_specs 2.5-97.5 %)")
    elif threads_source == "server_median":
        factors.append(SERVER_THREADS_FACTORS)
        notes.append("threads per package: server median 48 (Boavizta cpu_specs 2.5-97.5 %)")
    return _merge("power_source", factors, "load model (Boavizta/Teads TDP curve): " + "; ".join(notes))


def power_part(
    *,
    energy_figure: str,
    cpu_source: str,
    gpu_source: str | None,
    power_model: dict[str, Any] | None,
    table_matched: bool,
    table_spread: Callable[[], tuple[float, float]],
) -> Part:
    """The power source's part of a window's energy (the table in the module docstring). A window with a
    GPU (NVML) and a CPU share takes the wider of the two components' parts."""
    parts: list[Part] = []
    if cpu_source == "simulated":
        parts.append(Part("power_source", 1.0, 1.0, "simulated power: exact by definition"))
    elif energy_figure == "load_model" and power_model is not None:
        parts.append(load_model_part(power_model, table_spread))
    elif cpu_source == "rapl":
        parts.append(Part("power_source", *RAPL_FACTORS, "RAPL counters (package + DRAM) vs the wall"))
    else:
        factors = [TDP_TABLE_FACTORS] + ([] if table_matched else [table_spread()])
        why = "carbontracker's 50 % of TDP at any load (Teads curve: 0.12-1.02 x TDP)"
        parts.append(_merge("power_source", factors, why + ("" if table_matched else "; TDP: the table's average")))
    if gpu_source == "nvml":
        parts.append(Part("power_source", *NVML_FACTORS, "NVML GPU power (+/- 5 % of reading, 1 s averages on Ampere+)"))
    widest = max(parts, key=lambda part: math.log(part.high) - math.log(part.low))
    return widest


def _relative_half_width(values: Sequence[float]) -> float | None:
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    if mean <= 0:
        return None
    t = _T_975[min(len(values) - 1, len(_T_975)) - 1]
    return t * statistics.stdev(values) / math.sqrt(len(values)) / mean


def spread_part(sub_windows: Sequence[SubWindow], power_w: Callable[[SubWindow], float] | None, *, per_pass: bool) -> Part:
    """The window's spread: per-pass energy (``per_pass``) or power over the sub-windows. ``power_w`` gives a
    sub-window's power (the load model's); None: the power is one figure for the whole window."""
    if per_pass:
        values = [(power_w(s) if power_w else 1.0) * s.duration_s / s.passes for s in sub_windows if s.passes > 0]
        what = "per-pass energy"
    else:
        if power_w is None:
            return Part("window_spread", 1.0, 1.0, "window power: one figure for the window (no spread to estimate)")
        values = [power_w(s) for s in sub_windows if s.duration_s > 0]
        what = "power"
    half = _relative_half_width(values)
    if half is None:
        return Part("window_spread", 1.0, 1.0, f"{what}: fewer than 2 sub-windows, spread not estimated")
    return Part(
        "window_spread",
        max(1.0 - half, 0.05),
        1.0 + half,
        f"{what} over {len(values)} sub-windows of the window: 95 % interval of the mean (Student's t)",
    )


@dataclass(frozen=True)
class EnergyUncertainty:
    """The parts that bound a window's per-inference energy (they cross the worker's pipe, and stay with
    a cached answer): the power source's, and the spread for each scaling."""

    power: Part
    spread_per_pass: Part
    spread_power: Part

    def parts(self, scaling: str) -> tuple[Part, Part]:
        """The parts for the published ``scaling`` (``measured``: per-pass spread; else the power's)."""
        return (self.power, self.spread_per_pass if scaling == "measured" else self.spread_power)
