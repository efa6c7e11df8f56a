"""The place resolver as an intensity source: a task's free-text location -> the figure of the finest
grid zone the packaged data knows, with what matched and how.

Properties the node relies on:

- Start-up does not wait for the data: :class:`PlaceIntensity` reads and indexes it (pycountry's ISO
  files, ``cities.tsv``, CodeCarbon's and botocore's files; a few hundred milliseconds, about 25 MB) in
  a daemon thread, :data:`START_DELAY_S` after :meth:`PlaceIntensity.start` (the daemon calls it once
  NODE_IDLE is out) or at the first lookup, whichever comes first. A lookup that comes before the index
  is ready waits for it, at most ``load_timeout_s``; past that it has no answer (the chain goes on to the world average; logged).
- A lookup costs a dictionary access once a text has been read: answers are cached per (region,
  continent) text, :data:`CACHE_SIZE` of them (least recently used out), so a node answering ONNX tasks
  on its bus thread pays the reading once per distinct text.
- The answer never depends on an earlier task: the index, the figures and the cached answers are
  functions of the text alone.
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass
from typing import Any

import structlog

from carbon_node.engine.grid_zones import GridFigures, load_zone_figures, sources
from carbon_node.engine.intensity import (
    ContinentAverage,
    Intensity,
    OfflineTable,
    PlaceMatch,
    TableRow,
    continent_name,
)
from carbon_node.engine.place_aliases import _CONTINENT_ALIASES, _COUNTRY_ALIASES, CONTINENT_COUNTRIES
from carbon_node.engine.place_index import PlaceIndex
from carbon_node.engine.place_resolver import PlaceResolver, Resolution
from carbon_node.engine.place_text import fold
from carbon_node.engine.task import Location

__all__ = ["CACHE_SIZE", "PlaceData", "PlaceIntensity", "load_place_data"]

log = structlog.get_logger(__name__)

START_DELAY_S = 1.0
"""Seconds :meth:`PlaceIntensity.start` waits before loading (a lookup starts the load at once): the
seconds after NODE_IDLE, while the worker imports torch, are left to the bus and its peers."""

CACHE_SIZE = 4096
"""Distinct (region, continent) texts whose answers are kept."""


@dataclass(frozen=True)
class PlaceData:
    """The loaded resolver, the figures it answers with, the continent averages, and what loading took."""

    resolver: PlaceResolver
    figures: GridFigures
    continents: ContinentAverage
    load_s: float

    def summary(self) -> dict[str, Any]:
        """Counts and versions, for ``doctor`` and the logs."""
        import importlib.metadata

        index = self.resolver.index
        files = sources()["files"]
        packages = {f"{origin['package']} {origin['version']}" for origin in files.values()}
        packages.add(f"pycountry {importlib.metadata.version('pycountry')}")
        return {
            "countries": len(index.countries),
            "regions": len(index.subdivisions),
            "cities": len(index.city_rows),
            "zones_with_figures": len(self.figures.zones),
            "countries_with_figures": len(self.figures.countries),
            "names": len(index.keys) + len(index.city_keys),
            "load_s": round(self.load_s, 3),
            "packages": sorted(packages),
        }


_load_lock = threading.Lock()


@functools.cache
def _index() -> PlaceIndex:
    continents = {fold(name): name for name in CONTINENT_COUNTRIES}
    continents.update({fold(alias): name for alias, name in _CONTINENT_ALIASES.items()})
    return PlaceIndex.load(_COUNTRY_ALIASES, continents)


@functools.lru_cache(maxsize=8)
def _figures(rows: tuple[TableRow, ...]) -> GridFigures:
    index = _index()
    provinces = {fold(p.name): p.code for p in index.subdivisions.values() if p.country == "CA"}
    return load_zone_figures(rows, index.alpha3, provinces)


def load_place_data(table: OfflineTable) -> PlaceData:
    """Read and index everything (blocking; :class:`PlaceIntensity` runs it in a thread). The index is
    read once per process, the figures once per table: a second engine in one process (tests,
    ``estimate``) reuses them."""
    started = time.perf_counter()
    with _load_lock:
        index, figures = _index(), _figures(tuple(table.rows))
    resolver = PlaceResolver(index, figures, CONTINENT_COUNTRIES)
    return PlaceData(resolver, figures, ContinentAverage(table), time.perf_counter() - started)


class PlaceIntensity:
    """An :class:`~carbon_node.engine.intensity.IntensitySource`: the figure of the place a task names.

    ``table``: the offline table whose countries (and continent means) answer first (default:
    carbontracker's). ``start``: begin loading now, in a daemon thread (False: on the first lookup,
    or :meth:`start`).
    """

    may_block = False  # a table lookup; only the very first may wait for the load, bounded

    def __init__(self, table: OfflineTable | None = None, load_timeout_s: float = 10.0, start: bool = True) -> None:
        self.table = table if table is not None else OfflineTable()
        self.load_timeout_s = load_timeout_s
        self._ready = threading.Event()
        self._now = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._data: PlaceData | None = None
        self._error: str | None = None
        self._cached = functools.lru_cache(maxsize=CACHE_SIZE)(self._answer)
        if start:
            self.start(0.0)

    def start(self, delay_s: float = START_DELAY_S) -> None:
        """Load in the background (once), after ``delay_s`` or at the first lookup, whichever comes first."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._load, args=(delay_s,), name="carbon-node-places", daemon=True)
                self._thread.start()

    def _load(self, delay_s: float) -> None:
        self._now.wait(delay_s)
        try:
            self._data = load_place_data(self.table)
        except Exception as exc:  # the chain still answers (world average); the reason is kept for doctor
            self._error = f"{type(exc).__name__}: {exc}"
            log.error("places.load_failed", error=self._error)
        finally:
            self._ready.set()
        if self._data is not None:
            self._data.resolver.index.warm()  # the typo index, after lookups may already run
            log.info("places.loaded", **self._data.summary())

    def data(self, timeout_s: float | None = None) -> PlaceData | None:
        """The loaded data, waiting at most ``timeout_s`` (default ``load_timeout_s``); None if it failed
        or is not ready in time (:attr:`error` says why)."""
        self._now.set()
        self.start()
        self._ready.wait(self.load_timeout_s if timeout_s is None else timeout_s)
        return self._data

    @property
    def error(self) -> str | None:
        """Why the data is not there: a load failure, or still loading."""
        if self._error is not None:
            return self._error
        return None if self._ready.is_set() else "the place data is still loading"

    def lookup(self, location: Location) -> Intensity | None:
        if not (location.region or location.continent):
            return None
        if not self._ready.is_set() and self.data() is None:
            log.warning("places.not_ready", waited_s=self.load_timeout_s, error=self.error)
            return None
        return self._cached(location.region, location.continent)

    def resolve(self, text: str, continent: str = "") -> Resolution | None:
        """How ``text`` is read (for ``carbon-node where``), or None."""
        data = self.data()
        return None if data is None else data.resolver.resolve(text, continent_name(continent) if continent else None)

    # One answer per distinct text (cached)

    def _answer(self, region: str, continent: str) -> Intensity | None:
        data = self._data
        if data is None:
            return None
        hint = continent_name(continent) if continent else None
        for text, other in ((region, continent), (continent, "")):
            if not text:
                continue
            found = data.resolver.resolve(text, hint if other else None)
            if found is not None:
                warnings: tuple[str, ...] = ()
                if text is continent and region:
                    warnings = (f"geo_location_region {region!r} is not a place the node knows: {found.matched} used instead",)
                return self._intensity(data, found, warnings)
        return None

    def _intensity(self, data: PlaceData, found: Resolution, warnings: tuple[str, ...]) -> Intensity | None:
        match = PlaceMatch(found.text, found.matched, found.how)
        if found.how == "fuzzy":
            warnings += (f"geo_location {found.text!r} is not a known name: read as {found.matched}, the nearest one",)
        if found.zone_kind == "continent":
            answer = data.continents.intensity(found.zone, match)
            return None if answer is None else _with(answer, warnings)
        figure = data.figures.country(found.zone) if found.zone_kind == "country" else data.figures.zone(found.zone)
        if figure is not None:
            return Intensity(
                figure.g_per_kwh, figure.source, figure.zone, figure.year, figure.dataset, figure.kind, match, warnings
            )
        # A country with no figure in either table: its continent's mean, said so.
        for name, members in CONTINENT_COUNTRIES.items():
            if found.zone in members:
                answer = data.continents.intensity(name, match)
                if answer is not None:
                    note = f"no grid figure for {found.matched}: {name}'s continent average used"
                    return _with(answer, (*warnings, note))
        return None


def _with(answer: Intensity, warnings: tuple[str, ...]) -> Intensity:
    return Intensity(
        answer.g_per_kwh, answer.source, answer.zone, answer.year, answer.dataset, answer.kind, answer.match, warnings
    )
