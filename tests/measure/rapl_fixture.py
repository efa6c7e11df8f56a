"""A fake RAPL package for tests: a powercap zone whose ``energy_uj`` a thread advances at a known power.

Each write replaces the file atomically (write a sibling, then rename), so a reader never sees a torn
or empty value; the counter wraps to zero at ``max_energy_range_uj`` as a real package does.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

WRITE_INTERVAL_S = 0.0005


def make_package(root: Path, zone: str = "intel-rapl:0", *, name: str = "package-0", max_energy_range_uj: int) -> Path:
    """Create ``root/zone`` with ``name``, ``max_energy_range_uj`` and ``energy_uj`` = 0; returns the zone directory."""
    directory = root / zone
    directory.mkdir(parents=True)
    (directory / "name").write_text(name + "\n", encoding="ascii")
    (directory / "max_energy_range_uj").write_text(f"{max_energy_range_uj}\n", encoding="ascii")
    (directory / "energy_uj").write_text("0\n", encoding="ascii")
    return directory


class CounterWriter(threading.Thread):
    """Advances ``<zone>/energy_uj`` at ``watts`` (wrapping at ``max_energy_range_uj``) until :meth:`stop`."""

    def __init__(self, zone: Path, watts: float, max_energy_range_uj: int, *, start_uj: int = 0, nice: int = 0) -> None:
        super().__init__(name="rapl-writer", daemon=True)
        self.zone = zone
        self.watts = watts
        self.max_energy_range_uj = max_energy_range_uj
        self.start_uj = start_uj
        self.nice = nice
        self.wraps = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        if self.nice:
            os.nice(self.nice)  # per thread on Linux: only the writer gets the priority
        target = self.zone / "energy_uj"
        scratch = self.zone / ".energy_uj.new"
        started = time.perf_counter()
        previous = -1
        while not self._stop_event.is_set():
            total = self.start_uj + int(self.watts * 1e6 * (time.perf_counter() - started))
            value = total % self.max_energy_range_uj
            if value < previous:
                self.wraps += 1
            previous = value
            scratch.write_text(f"{value}\n", encoding="ascii")
            scratch.replace(target)
            self._stop_event.wait(WRITE_INTERVAL_S)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5.0)
