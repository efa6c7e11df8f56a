"""One carbontracker window: forward passes for ``window_s`` seconds inside one ``CarbonTracker`` epoch.

carbontracker integrates power over the epoch as ``mean(power samples) x epoch duration x PUE``
(``Component.energy_usage`` and ``CarbonTrackerThread.total_energy_per_epoch``). Its sampling thread takes
the first sample as soon as the epoch starts, then one every ``update_interval`` seconds. So:

- the window is timed right after ``epoch_start`` and right before ``epoch_end``: the reported
  ``window_s`` is the duration carbontracker multiplies by (within microseconds);
- the window is extended past ``window_s`` until every component has at least one sample (RAPL takes
  one second per sample), bounded by ``max_extra_s``; passes keep being counted meanwhile;
- the energy is read back from carbontracker's own log with ``carbontracker.parser``, with 15 decimals.

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

import structlog
from carbontracker import constants, parser
from carbontracker.emissions.intensity import intensity as ct_intensity
from carbontracker.emissions.intensity.location import Location
from carbontracker.tracker import CarbonTracker

from carbon_node.measure.power import PowerPlan
from carbon_node.measure.protocol import MeasureError

__all__ = ["CARBONTRACKER_VERSION", "PUE", "NoGeolocation", "WindowResult", "run_window"]

log = structlog.get_logger(__name__)

CARBONTRACKER_VERSION = importlib.metadata.version("carbontracker")
PUE = float(constants.PUE_2023)
"""The power usage effectiveness carbontracker multiplies every energy by."""

DECIMALS = 15
"""Decimals of the kWh figure in carbontracker's log (its default, 12, loses digits for tiny windows)."""

MAX_EXTRA_S = 3.0
"""Seconds a window may run past ``window_s`` waiting for carbontracker's first power sample."""


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


def _parse(log_dir: Path) -> tuple[float | None, dict[str, list[str]]]:
    """Energy (kWh) of the window and the devices per component, from carbontracker's logs.

    The log files are picked by exact name suffix here: ``parser.parse_all_logs`` matches its
    patterns against the whole path, so a scratch path containing e.g. ``carbontracker_log`` breaks it.
    """
    outputs = sorted(p for p in log_dir.iterdir() if p.name.endswith("_carbontracker_output.log"))
    standards = sorted(p for p in log_dir.iterdir() if p.name.endswith("_carbontracker.log"))
    if not outputs or not standards:
        return None, {}
    actual, _ = parser.get_consumption(outputs[-1].read_text(encoding="utf-8", errors="replace"))
    components = parser.parse_logs(str(log_dir), str(standards[-1]), str(outputs[-1]))
    energy = (actual or {}).get("energy (kWh)")
    devices = {name: list(info.get("devices") or []) for name, info in components.items()}
    return (float(energy) if energy is not None else None), devices


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
) -> WindowResult:
    """Run ``forward`` repeatedly for ``window_s`` seconds inside one carbontracker epoch.

    ``warmup_passes`` run before the epoch starts and are not counted. ``synchronize`` (e.g.
    ``torch.cuda.synchronize``) is called at both window edges so queued GPU work is inside the window.
    Raises :class:`MeasureError` when carbontracker reports no energy.
    """
    if window_s <= 0:
        raise MeasureError(f"window_s must be positive, got {window_s}")
    sync = synchronize or (lambda: None)
    scratch_dir.mkdir(parents=True, exist_ok=True)
    log_dir = Path(tempfile.mkdtemp(prefix="ct-", dir=scratch_dir))
    started = time.perf_counter()
    logger_id = ""
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
            deadline = window_start + window_s
            passes = 0
            while True:
                forward()
                passes += 1
                now = time.perf_counter()
                if now >= deadline and (now >= deadline + max_extra_s or _samples_ready(tracker)):
                    break
            sync()
            window_end = time.perf_counter()
            tracker.epoch_end()
            tracker.stop()
        energy_kwh, devices = _parse(log_dir)
        if energy_kwh is None:
            reason = _error_text(log_dir) or console.getvalue().strip()[-300:] or "no log entry"
            raise MeasureError(f"carbontracker reported no energy for the window ({reason})")
        return WindowResult(
            energy_kwh=energy_kwh,
            window_s=window_end - window_start,
            forward_passes=passes,
            components=tuple(sorted(devices)),
            devices=devices,
            pue=PUE,
            carbontracker_version=CARBONTRACKER_VERSION,
            measured_at=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            measure_s=time.perf_counter() - started,
            console=console.getvalue(),
        )
    finally:
        if logger_id:
            _forget_loggers(logger_id)
        shutil.rmtree(log_dir, ignore_errors=True)


def describe_components(result: WindowResult) -> list[str]:
    """Human-readable ``component: devices`` lines for notes."""
    return [f"{name}: {', '.join(devs) or 'unknown device'}" for name, devs in sorted(result.devices.items())]
