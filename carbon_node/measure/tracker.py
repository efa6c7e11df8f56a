"""One carbontracker window: forward passes for ``window_s`` seconds inside one ``CarbonTracker`` epoch.

carbontracker integrates power over the epoch as ``mean(power samples) x epoch duration x PUE``
(``Component.energy_usage`` and ``CarbonTrackerThread.total_energy_per_epoch``). Its sampling thread takes
the first sample as soon as the epoch starts, then one every ``update_interval`` seconds. So:

- the window is timed right after ``epoch_start`` and right before ``epoch_end``: the reported
  ``window_s`` is the duration carbontracker multiplies by (within microseconds);
- the window is extended past ``window_s`` until every component has at least one sample (RAPL takes
  one second per sample), bounded by ``max_extra_s``; passes keep being counted meanwhile;
- the energy is read back from carbontracker's own log with ``carbontracker.parser``, with 15 decimals;
  the CPU share is its logged average CPU power (summed over devices) x window x PUE.

No silent zero. When the CPU is measured by RAPL, the package (and DRAM) counters are read here too
(:class:`~carbon_node.measure.rapl.RaplCounters`): at both window edges and between passes at least every
``COUNTER_READ_INTERVAL_S``, each interval wrap-corrected with ``max_energy_range_uj``. Their sum x PUE is
the cross-check ``counter_energy_kwh``, with PUE applied as carbontracker applies it (it multiplies the
sum of its components' energy by ``constants.PUE_2023``). carbontracker's RAPL handler reads the same
files (``/sys/class/powercap/intel-rapl:N[:M]`` whose ``name`` contains ``package`` or ``dram``, not
``psys``), but subtracts two reads one second apart without wrap correction: a wrap inside a sample
makes it negative, its retry loop recomputes the same numbers and records 0 W. So, per window:

- carbontracker's CPU share is *far* from the counters when it is zero or differs from them by more than
  ``FAR_RELATIVE`` (25 %) of the counter figure: then the counter figure replaces carbontracker's CPU
  share (``energy_figure: rapl_counter``) and a note says so; otherwise carbontracker's figure is
  published (``energy_figure: carbontracker``). 25 % is far beyond what sampling once a second explains
  (on a steady load its sample reads a few percent high when the machine is busy: it divides by the
  nominal second and its second read comes late; 2.7 % was seen on 2 shared cores), and well inside
  what a lost or wrapped sample does (one of a window's one or two samples: 50-100 %);
- a CPU without a readable counter (``tdp_table``) publishes, by default, the load model's CPU share
  (:mod:`carbon_node.measure.load_power`: the TDP-to-load curve at the worker's CPU time over the window,
  ``time.process_time`` at the window's edges, all threads): carbontracker's total with its CPU share
  replaced (``energy_figure: load_model``); carbontracker's own figure stays in ``carbontracker_energy_kwh``;
- a window whose published energy would be zero or negative although a power source is present (RAPL,
  NVML, the TDP table or simulated power) is run once more; when the second is no better the window
  fails with :class:`MeasureError` and the reason (the task is answered ``mode: error``).

The loop also marks the window's sub-windows (:mod:`carbon_node.measure.sub_windows`) for its spread.

Each window writes its logs in a private directory under the scratch directory, removed afterwards, and
its console chatter (stdout and stderr) is captured and returned, not printed. carbontracker's loggers
for the window are closed and forgotten, so a long-lived worker does not leak file handles.

carbontracker geolocates the machine by IP (``geocoder.ip("me")``, up to several seconds offline) to pick
its own carbon intensity. The node never uses that intensity (the engine resolves the grid intensity),
so :class:`NoGeolocation` gives carbontracker an unknown location for the duration of the window: it
then uses its world average, without any network call.

This module imports carbontracker: only the worker process imports it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import importlib.metadata
import io
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from carbontracker import constants, parser
from carbontracker.emissions.intensity import intensity as ct_intensity
from carbontracker.emissions.intensity.location import Location
from carbontracker.tracker import CarbonTracker

from carbon_node.measure.power import POWERCAP_ROOT, PowerPlan
from carbon_node.measure.protocol import EnergyFigure, MeasureError
from carbon_node.measure.rapl import RaplCounters, RaplError, RaplZone
from carbon_node.measure.sub_windows import SubWindow, SubWindowMarks

__all__ = ["CARBONTRACKER_VERSION", "FAR_RELATIVE", "PUE", "NoGeolocation", "WindowResult", "choose_figure", "run_window"]

log = structlog.get_logger(__name__)

CARBONTRACKER_VERSION = importlib.metadata.version("carbontracker")
PUE = float(constants.PUE_2023)
"""The power usage effectiveness carbontracker multiplies every energy by."""

DECIMALS = 15
"""Decimals of the kWh figure in carbontracker's log (its default, 12, loses digits for tiny windows)."""

MAX_EXTRA_S = 3.0
"""Seconds a window may run past ``window_s`` waiting for carbontracker's first power sample."""

FAR_RELATIVE = 0.25
"""carbontracker's CPU share is replaced by the RAPL counters when it differs from them by more than this
fraction of the counter figure (or is zero)."""

COUNTER_READ_INTERVAL_S = 0.1
"""Seconds between RAPL counter reads inside a window (between passes): one wrap per interval is corrected."""

J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class WindowResult:
    """What one tracker window measured: energy in kWh (PUE included) over ``window_s`` seconds."""

    energy_kwh: float
    window_s: float
    forward_passes: int
    components: tuple[str, ...]
    """Measured components (``cpu``, ``gpu``) as carbontracker logged them."""
    devices: dict[str, list[str]]
    pue: float
    carbontracker_version: str
    measured_at: str
    """UTC ISO 8601 time the window ended."""
    measure_s: float
    """Seconds from tracker creation to parsed result (window plus carbontracker's overhead)."""
    console: str
    """carbontracker's captured console output."""
    energy_figure: EnergyFigure = "carbontracker"
    """Which figure ``energy_kwh`` is: carbontracker's, or the RAPL counters' for the CPU share."""
    carbontracker_energy_kwh: float = 0.0
    """carbontracker's own figure for the window (kWh, PUE included), whichever was published."""
    counter_energy_kwh: float | None = None
    """The RAPL package (+ DRAM) counters over the window (kWh, PUE included); None when not read."""
    notes: tuple[str, ...] = ()
    cpu_s: float = 0.0
    """The process's CPU seconds (all threads) over the window."""
    sub_windows: tuple[SubWindow, ...] = ()
    power_model: dict[str, Any] | None = None
    """The load model's description of the window, when its figure is published."""


class _UnknownLocationGeocoder:
    """Stands in for the ``geocoder`` module inside carbontracker's intensity service: no network."""

    @staticmethod
    def ip(_address: str) -> Location:
        return Location(ok=False, address="Unknown", country="Unknown")


class NoGeolocation(contextlib.AbstractContextManager["NoGeolocation"]):
    """Within the block, carbontracker's IP geolocation answers "unknown location" at once.

    carbontracker has no setting to give it a location or to bound the lookup; it calls
    ``geocoder.ip("me")`` synchronously in ``CarbonTracker.__init__``. This swaps the ``geocoder``
    name in its intensity module, and restores it on exit. Used in the worker process only.
    """

    def __enter__(self) -> NoGeolocation:
        self._saved = ct_intensity.geocoder
        ct_intensity.geocoder = _UnknownLocationGeocoder
        return self

    def __exit__(self, *exc: object) -> None:
        ct_intensity.geocoder = self._saved


def _samples_ready(tracker: CarbonTracker) -> bool:
    """Whether every carbontracker component has a power sample for the running epoch.

    Reads carbontracker's tracker thread state; if that shape is not what 2.4 has, it answers True
    (no extension) rather than fail the window.
    """
    try:
        if getattr(tracker, "deleted", False):
            return True
        components = tracker.tracker.components
        return all(bool(c.power_usages) and bool(c.power_usages[-1]) for c in components)
    except AttributeError:
        return True


def _forget_loggers(logger_id: str) -> None:
    """Close and drop the three loggers carbontracker made for one tracker (``*.<logger_id>*``)."""
    manager = logging.Logger.manager
    for name in list(manager.loggerDict):
        if name.endswith(f".{logger_id}") or f".{logger_id}." in name:
            logger = manager.loggerDict.pop(name)
            if isinstance(logger, logging.Logger):
                for handler in list(logger.handlers):
                    logger.removeHandler(handler)
                    handler.close()


@dataclass(frozen=True)
class _Parsed:
    energy_kwh: float | None
    devices: dict[str, list[str]]
    cpu_power_w: float | None
    """carbontracker's average CPU power over the window (W, summed over its CPU devices)."""


def _parse(log_dir: Path) -> _Parsed:
    """Energy (kWh) of the window, the devices per component and the CPU power, from carbontracker's logs.

    The log files are picked by exact name suffix here: ``parser.parse_all_logs`` matches its
    patterns against the whole path, so a scratch path containing e.g. ``carbontracker_log`` breaks it.
    """
    outputs = sorted(p for p in log_dir.iterdir() if p.name.endswith("_carbontracker_output.log"))
    standards = sorted(p for p in log_dir.iterdir() if p.name.endswith("_carbontracker.log"))
    if not outputs or not standards:
        return _Parsed(None, {}, None)
    actual, _ = parser.get_consumption(outputs[-1].read_text(encoding="utf-8", errors="replace"))
    components = parser.parse_logs(str(log_dir), str(standards[-1]), str(outputs[-1]))
    energy = (actual or {}).get("energy (kWh)")
    devices = {name: list(info.get("devices") or []) for name, info in components.items()}
    cpu_power_w: float | None = None
    powers = components.get("cpu", {}).get("avg_power_usages (W)")
    if powers is not None and len(powers):
        cpu_power_w = float(sum(float(x) for x in powers[-1]))
    return _Parsed(float(energy) if energy is not None else None, devices, cpu_power_w)


@dataclass(frozen=True)
class Figure:
    """The energy a window publishes, which figure it is, and why (notes)."""

    energy_kwh: float
    energy_figure: EnergyFigure
    notes: tuple[str, ...] = ()


def choose_figure(
    carbontracker_kwh: float, carbontracker_cpu_kwh: float | None, counter_kwh: float | None, counter_problem: str = ""
) -> Figure | None:
    """The figure to publish (see the module docstring), or None when no figure is trustworthy.

    ``carbontracker_kwh`` is carbontracker's total, ``carbontracker_cpu_kwh`` its CPU share (None: unknown,
    taken as the total), ``counter_kwh`` the RAPL counters' figure (None: not read, ``counter_problem`` says
    why). All in kWh with PUE.
    """
    ct_cpu = carbontracker_kwh if carbontracker_cpu_kwh is None else carbontracker_cpu_kwh
    if counter_kwh is None:
        if carbontracker_kwh <= 0:
            return None
        notes = (f"RAPL counters not read at the window edges ({counter_problem}): carbontracker's figure is unchecked",)
        return Figure(carbontracker_kwh, "carbontracker", notes if counter_problem else ())
    if counter_kwh <= 0:
        if carbontracker_kwh <= 0:
            return None
        note = "the RAPL counters did not advance in the window: carbontracker's figure is unchecked"
        return Figure(carbontracker_kwh, "carbontracker", (note,))
    if ct_cpu > 0 and abs(ct_cpu - counter_kwh) <= FAR_RELATIVE * counter_kwh:
        return Figure(carbontracker_kwh, "carbontracker")
    replaced = carbontracker_kwh - ct_cpu + counter_kwh
    why = "zero" if ct_cpu <= 0 else f"{ct_cpu / counter_kwh - 1:+.0%} off"
    return Figure(
        replaced,
        "rapl_counter",
        (
            f"carbontracker's CPU energy ({ct_cpu:.3g} kWh) is {why} the RAPL counters ({counter_kwh:.3g} kWh, wrap-corrected): "
            "the counter figure is published",
        ),
    )


class _CounterWindow:
    """RAPL counter reads over one window: a snapshot at the start, then :meth:`advance` between passes."""

    def __init__(self, root: Path) -> None:
        self.problem = ""
        self.joules = 0.0
        self._zones: tuple[RaplZone, ...] = ()
        self._last: tuple[int, ...] | None = None
        self._last_read = 0.0
        try:
            self._zones = RaplCounters(root).discover()
        except RaplError as exc:
            self.problem = str(exc)

    def read(self, now: float) -> None:
        """Take a snapshot and add the (wrap-corrected) energy since the previous one."""
        if self.problem or not self._zones:
            return
        try:
            snapshot = RaplCounters.read(self._zones)
        except RaplError as exc:
            self.problem = str(exc)
            return
        if self._last is not None:
            self.joules += RaplCounters.energy_j(self._zones, self._last, snapshot)
        self._last = snapshot
        self._last_read = now

    def advance(self, now: float) -> None:
        if now - self._last_read >= COUNTER_READ_INTERVAL_S:
            self.read(now)

    def energy_kwh(self, pue: float) -> float | None:
        return None if self.problem or not self._zones else self.joules / J_PER_KWH * pue


def _error_text(log_dir: Path) -> str:
    """The last lines of carbontracker's error log, for a failed window's message."""
    lines: list[str] = []
    for path in sorted(log_dir.glob("*_carbontracker_err.log")):
        lines.extend(path.read_text(encoding="utf-8", errors="replace").splitlines())
    important = [line for line in lines if " - CRITICAL - " in line or " - ERROR - " in line] or lines
    return " | ".join(important[-3:])[:500]


@contextlib.contextmanager
def _captured_console() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        yield buffer


def run_window(
    forward: Callable[[], None],
    *,
    window_s: float,
    scratch_dir: Path,
    plan: PowerPlan,
    synchronize: Callable[[], None] | None = None,
    max_extra_s: float = MAX_EXTRA_S,
    warmup_passes: int = 1,
    powercap_root: Path = POWERCAP_ROOT,
) -> WindowResult:
    """Run ``forward`` repeatedly for ``window_s`` seconds inside one carbontracker epoch.

    ``warmup_passes`` run before the epoch starts and are not counted. ``synchronize`` (e.g.
    ``torch.cuda.synchronize``) is called at both window edges so queued GPU work is inside the window.
    When the CPU is measured by RAPL the counters under ``powercap_root`` cross-check carbontracker.
    A window without a trustworthy non-zero figure is run once more; raises :class:`MeasureError`
    when carbontracker reports no energy or the second window has no trustworthy figure either.
    """
    if window_s <= 0:
        raise MeasureError(f"window_s must be positive, got {window_s}")
    first = _one_window(forward, window_s, scratch_dir, plan, synchronize, max_extra_s, warmup_passes, powercap_root)
    if isinstance(first, WindowResult):
        return first
    log.warning("tracker.window_repeated", reason=first)
    second = _one_window(forward, window_s, scratch_dir, plan, synchronize, max_extra_s, warmup_passes, powercap_root)
    if isinstance(second, WindowResult):
        note = f"measured twice: the first window had no usable figure ({first})"
        return dataclasses.replace(second, notes=(*second.notes, note))
    raise MeasureError(f"no trustworthy energy figure in two windows with power source {plan.source}: {second}")


def _one_window(
    forward: Callable[[], None],
    window_s: float,
    scratch_dir: Path,
    plan: PowerPlan,
    synchronize: Callable[[], None] | None,
    max_extra_s: float,
    warmup_passes: int,
    powercap_root: Path,
) -> WindowResult | str:
    """One window: its result, or why its figure is not usable (zero energy with a power source present)."""
    sync = synchronize or (lambda: None)
    scratch_dir.mkdir(parents=True, exist_ok=True)
    log_dir = Path(tempfile.mkdtemp(prefix="ct-", dir=scratch_dir))
    started = time.perf_counter()
    logger_id = ""
    counters = _CounterWindow(powercap_root) if plan.cpu_source == "rapl" else None
    try:
        with _captured_console() as console, NoGeolocation():
            tracker = CarbonTracker(
                epochs=1,
                epochs_before_pred=0,
                log_dir=str(log_dir),
                verbose=0,
                decimal_precision=DECIMALS,
                ignore_errors=True,
                components="all",
                **plan.tracker_kwargs,
            )
            logger = getattr(tracker, "logger", None)
            logger_id = logger.logger.name.rsplit(".", 1)[-1] if logger is not None else ""
            # One pass outside the window: lazy allocations, kernel selection and (on a GPU) clocks
            # ramping up are not billed to the window, whether or not the model was just loaded.
            for _ in range(warmup_passes):
                forward()
            sync()
            tracker.epoch_start()
            window_start = time.perf_counter()
            marks = SubWindowMarks(window_start, window_s)
            if counters is not None:
                counters.read(window_start)
            deadline = window_start + window_s
            passes = 0
            while True:
                forward()
                passes += 1
                now = time.perf_counter()
                marks.pass_done(now, passes)
                if counters is not None:
                    counters.advance(now)
                if now >= deadline and (now >= deadline + max_extra_s or _samples_ready(tracker)):
                    break
            sync()
            if counters is not None:
                counters.read(time.perf_counter())
            window_end = time.perf_counter()
            sub_windows = marks.close(window_end, passes)
            cpu_s = time.process_time() - marks.cpu_start
            tracker.epoch_end()
            tracker.stop()
        parsed = _parse(log_dir)
        if parsed.energy_kwh is None:
            reason = _error_text(log_dir) or console.getvalue().strip()[-300:] or "no log entry"
            raise MeasureError(f"carbontracker reported no energy for the window ({reason})")
        duration_s = window_end - window_start
        ct_cpu_kwh = None if parsed.cpu_power_w is None else parsed.cpu_power_w * duration_s * PUE / J_PER_KWH
        counter_kwh = counters.energy_kwh(PUE) if counters is not None else None
        problem = counters.problem if counters is not None else ""
        figure = choose_figure(parsed.energy_kwh, ct_cpu_kwh, counter_kwh, problem)
        if figure is None:
            detail = f"; RAPL counters: {problem}" if problem else ""
            return f"carbontracker reported {parsed.energy_kwh:g} kWh for {duration_s:.2f} s{detail}"
        power_model = None
        if plan.load_model is not None:
            power_model = plan.load_model.describe(cpu_s, duration_s)
            load_kwh = power_model["cpu_power_w"] * duration_s * PUE / J_PER_KWH
            # Only a GPU adds to the CPU share (carbontracker's total minus its CPU share is otherwise timing dust).
            ct_cpu = parsed.energy_kwh if ct_cpu_kwh is None else ct_cpu_kwh
            others_kwh = max(parsed.energy_kwh - ct_cpu, 0.0) if "gpu" in parsed.devices else 0.0
            figure = Figure(others_kwh + load_kwh, "load_model", figure.notes)
        return WindowResult(
            energy_kwh=figure.energy_kwh,
            window_s=duration_s,
            forward_passes=passes,
            components=tuple(sorted(parsed.devices)),
            devices=parsed.devices,
            pue=PUE,
            carbontracker_version=CARBONTRACKER_VERSION,
            measured_at=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            measure_s=time.perf_counter() - started,
            console=console.getvalue(),
            energy_figure=figure.energy_figure,
            carbontracker_energy_kwh=parsed.energy_kwh,
            counter_energy_kwh=counter_kwh,
            notes=figure.notes,
            cpu_s=cpu_s,
            sub_windows=sub_windows,
            power_model=power_model,
        )
    finally:
        if logger_id:
            _forget_loggers(logger_id)
        shutil.rmtree(log_dir, ignore_errors=True)


def describe_components(result: WindowResult) -> list[str]:
    """Human-readable ``component: devices`` lines for notes."""
    return [f"{name}: {', '.join(devs) or 'unknown device'}" for name, devs in sorted(result.devices.items())]
