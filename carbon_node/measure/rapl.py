r"""The RAPL energy counters, read directly: the cross-check of carbontracker's RAPL figure.

:class:`RaplCounters` reads the zones carbontracker 2.4's ``IntelCPU`` handler measures, from a powercap
root given to the constructor (``/sys/class/powercap`` by default; tests give a fixture tree):

- top-level entries named ``intel-rapl:<package>`` or ``intel-rapl:<package>:<sub>`` (carbontracker's
  pattern, ``intel-rapl-mmio`` zones excluded) whose ``name`` contains ``package`` or ``dram`` and is not
  ``psys``; the kernel also lists a package's sub-zones (``intel-rapl:0:2`` = ``dram``) at the top level.
  DRAM sub-zones found only nested inside a package directory are included too. Zones are deduplicated
  by their resolved path.
- each zone's ``energy_uj`` (microjoules, monotonic until it wraps) and ``max_energy_range_uj`` (the value
  at which it wraps to zero).

:meth:`RaplCounters.energy_j` turns two snapshots into joules, wrap-corrected the way Zeus does it: a
counter that went down wrapped once, so the delta is ``after + max_energy_range_uj - before``. A counter
wraps after ``max_energy_range_uj`` microjoules (about 262 kJ on current packages, tens of minutes at
100 W+): within a measurement window it can wrap at most once, which is what is corrected.

How carbontracker 2.4's ``IntelCPU`` (``components/cpu/intel.py``) uses the same files, as relied on here
and checked end to end by ``tests/measure/test_rapl_system.py``:

- it is chosen when the hard-coded ``/sys/class/powercap/`` exists and is not empty (nothing is read);
- ``init`` lists the entries containing ``:`` that fully match ``intel-rapl:(\d)(:\d)?`` (one-digit
  package numbers only), reads each ``name`` and keeps those containing ``package`` or ``dram`` except
  ``psys``; ``name`` need not be exactly ``package-0``; its devices are then named ``cpu:0``, ``dram:0``;
- each sample reads every kept ``energy_uj`` with ``int(f.read())``, sleeps one second, reads again and
  divides the difference by the nominal second (a late second read on a busy machine reads high);
  a missing ``energy_uj`` is replaced by the sum of the zone's ``intel-rapl:N:M`` sub-directories, a
  ``PermissionError`` is logged as critical and the sample recorded as 0 W;
- there is no wrap correction: a wrap gives a negative sample, its retry loop recomputes the same two
  numbers, and it records 0 W for the sample. That is why the worker checks its figure against these
  counters (:mod:`carbon_node.measure.tracker`).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

from carbon_node.measure.power import POWERCAP_ROOT

__all__ = ["RaplCounters", "RaplError", "RaplZone"]

_ZONE = re.compile(r"intel-rapl:(\d+)(?::(\d+))?")


class RaplError(Exception):
    """A counter could not be read (missing, not permitted, not an integer); the message says which."""


@dataclass(frozen=True)
class RaplZone:
    """One measured RAPL zone: its directory, its ``name`` (``package-0``, ``dram``) and its wrap value (uJ)."""

    path: Path
    name: str
    max_energy_range_uj: int


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text(encoding="ascii").strip())
    except PermissionError as exc:
        raise RaplError(f"{path} is not readable (permission denied)") from exc
    except FileNotFoundError as exc:
        raise RaplError(f"{path} does not exist") from exc
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise RaplError(f"{path} could not be read as an integer: {exc}") from exc


def _measured_name(name: str) -> bool:
    """carbontracker's rule: ``package`` or ``dram`` zones, never ``psys``."""
    return name != "psys" and ("package" in name or "dram" in name)


class RaplCounters:
    """The package (and DRAM) counters under ``root``; :meth:`discover` finds them, :meth:`read` reads them."""

    def __init__(self, root: Path = POWERCAP_ROOT) -> None:
        self.root = root

    def discover(self) -> tuple[RaplZone, ...]:
        """The measured zones, sorted by path. Raises :class:`RaplError` when there is none or one is unreadable."""
        try:
            entries = sorted(self.root.iterdir())
        except OSError as exc:
            raise RaplError(f"{self.root} cannot be listed: {exc}") from exc
        candidates: list[Path] = []
        for entry in entries:
            if not _ZONE.fullmatch(entry.name):
                continue
            candidates.append(entry)
            # DRAM sub-zones (intel-rapl:0:N) live inside the package directory as well.
            with contextlib.suppress(OSError):
                candidates.extend(sorted(p for p in entry.iterdir() if _ZONE.fullmatch(p.name)))
        zones: dict[Path, RaplZone] = {}
        for path in candidates:
            try:
                name = (path / "name").read_text(encoding="ascii").strip()
            except (OSError, UnicodeDecodeError):
                continue
            if not _measured_name(name):
                continue
            key = path.resolve()
            if key not in zones:
                zones[key] = RaplZone(path, name, _read_int(path / "max_energy_range_uj"))
        if not zones:
            raise RaplError(f"no RAPL package or dram zone under {self.root}")
        return tuple(sorted(zones.values(), key=lambda zone: str(zone.path)))

    @staticmethod
    def read(zones: tuple[RaplZone, ...]) -> tuple[int, ...]:
        """One snapshot: ``energy_uj`` of each zone, in order. Raises :class:`RaplError`."""
        return tuple(_read_int(zone.path / "energy_uj") for zone in zones)

    @staticmethod
    def energy_j(zones: tuple[RaplZone, ...], before: tuple[int, ...], after: tuple[int, ...]) -> float:
        """Joules between two snapshots, summed over the zones; a counter that went down wrapped once."""
        total_uj = 0
        for zone, first, last in zip(zones, before, after, strict=True):
            delta = last - first
            if delta < 0:
                delta += zone.max_energy_range_uj
            total_uj += delta
        return total_uj / 1e6
