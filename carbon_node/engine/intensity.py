"""Grid carbon intensity (gCO2e/kWh): where each task's value comes from, resolved per task (F5).

Resolution order of :class:`IntensityChain` (first answer wins; every answer names its source, zone,
dataset and year, and how the place text was read: :class:`PlaceMatch`):

1. ``env``: ``SUSTAINML_GRID_CI`` (``Settings.grid_ci_g_per_kwh``) when > 0.
2. the place resolver (:class:`~carbon_node.engine.places.PlaceIntensity`): the user's
   ``geo_location_region`` (else ``geo_location_continent``) read as a country, a region (ISO 3166-2),
   a city, a cloud region, a grid zone id or "City, Region, Country", answered with the finest zone
   the packaged data has a figure for: ``offline_table`` (a country in carbontracker's table),
   ``codecarbon`` (US states, Canadian and Chinese provinces, Nordic bidding zones, Google Cloud
   regions, countries missing from carbontracker's table) or ``continent_average`` (the text names a
   continent, or only the continent field was understood: the unweighted mean of the table's countries
   on that continent, a plain mean: a small island counts as much as Germany).
3. ``live:<provider>``: only with ``Settings.live_intensity``: carbontracker's live providers for the
   node's own location (geolocated by IP, as carbontracker does), bounded by
   ``live_intensity_timeout_s``.
4. ``world_average``: carbontracker's world average (``WORLD_AVG_CARBON_INTENSITY``, 445 in 2.4.7).

A place text that was given but not understood is still answered (continent, live or world average)
and the answer's ``warnings`` name the text and what was used instead (:func:`explain`).

No step keeps a value that one task sets for the next: the tables are read-only data, loaded once.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
import io
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Protocol

import structlog

from carbon_node.engine.place_aliases import _CONTINENT_ALIASES, _COUNTRY_ALIASES, CONTINENT_COUNTRIES
from carbon_node.engine.task import Location

__all__ = [
    "CONTINENT_COUNTRIES",
    "ContinentAverage",
    "FixedIntensity",
    "Intensity",
    "IntensityChain",
    "IntensitySource",
    "LiveIntensity",
    "OfflineTable",
    "PlaceMatch",
    "TableRow",
    "WorldAverage",
    "default_intensity_source",
    "explain",
    "world_average",
]

log = structlog.get_logger(__name__)

WORLD_AVERAGE_FALLBACK_G_PER_KWH = 445.0
WORLD_AVERAGE_FALLBACK_YEAR = 2024
"""carbontracker 2.4.7's world average, used only when carbontracker is not installed."""


@dataclass(frozen=True)
class PlaceMatch:
    """How the place text was read: the ``text`` as given, what it ``matched`` (in words) and ``how``:
    exact, alias, city, cloud_region, zone_id, fuzzy, continent (a place the data knows); world (no
    text, or none understood), configured (``SUSTAINML_GRID_CI``), live (the node's own location)."""

    text: str
    matched: str
    how: str

    def as_dict(self) -> dict[str, str]:
        return {"text": self.text, "matched": self.matched, "how": self.how}


@dataclass(frozen=True)
class Intensity:
    """A grid carbon intensity in gCO2e/kWh and what it is: its ``source`` (the ``grid_ci_source``
    value), zone id, year (None where the data does not say), ``dataset`` in words, the zone's ``kind``
    (country, subnational, cloud_region, continent, world, configured), how the place text was read
    (``match``) and ``warnings`` for the user (a text not understood, a typo)."""

    g_per_kwh: float
    source: str
    zone: str = ""
    year: int | None = None
    dataset: str = ""
    kind: str = ""
    match: PlaceMatch | None = None
    warnings: tuple[str, ...] = ()


class IntensitySource(Protocol):
    """One way to know a grid intensity. Returns None when it has no answer for ``location``."""

    def lookup(self, location: Location) -> Intensity | None:
        """The intensity for ``location`` (blocking at most the source's own timeout), or None."""


@dataclass(frozen=True)
class TableRow:
    """One country of the offline table: ISO alpha-2 and alpha-3 codes, name, year, gCO2e/kWh."""

    alpha2: str
    alpha3: str
    name: str
    year: int
    g_per_kwh: float


def _norm(text: str) -> str:
    return " ".join(text.strip().lower().split())


def _candidates(text: str) -> list[str]:
    """The whole text, then its comma/slash/semicolon-separated parts from the last ("Madrid, Spain")."""
    whole = _norm(text)
    if not whole:
        return []
    parts = [_norm(p) for p in re.split(r"[,/;|]", text) if _norm(p)]
    return [whole, *[p for p in reversed(parts) if p != whole]]


def parse_table(text: str) -> list[TableRow]:
    """Rows of carbontracker's ``carbon-intensities.csv`` (alpha-2, Year, Entity, Code, gCO2eq/kWh)."""
    rows: list[TableRow] = []
    for record in csv.reader(io.StringIO(text)):
        if len(record) < 5 or record[0] == "alpha-2":
            continue
        try:
            rows.append(
                TableRow(
                    record[0].strip().upper(), record[3].strip().upper(), record[2].strip(), int(record[1]), float(record[4])
                )
            )
        except ValueError:
            continue
    return rows


@functools.cache
def carbontracker_table() -> tuple[TableRow, ...]:
    """carbontracker's offline table, read once from its installed package (empty if not installed)."""
    try:
        text = importlib.resources.files("carbontracker").joinpath("data", "carbon-intensities.csv").read_text("utf-8")
    except (ModuleNotFoundError, OSError) as exc:
        log.warning("intensity.table_unavailable", error=str(exc))
        return ()
    return tuple(parse_table(text))


@functools.cache
def world_average() -> Intensity:
    """carbontracker's world-average intensity (its ``constants`` module, imported once, lazily)."""
    try:
        from carbontracker import constants  # ~0.1 s, pulls requests; only on first use

        value, year = float(constants.WORLD_AVG_CARBON_INTENSITY), int(constants.WORLD_AVG_CARBON_INTENSITY_YEAR)
    except Exception as exc:  # a missing or broken optional dependency must not break a task
        log.warning("intensity.world_average_fallback", error=str(exc))
        value, year = WORLD_AVERAGE_FALLBACK_G_PER_KWH, WORLD_AVERAGE_FALLBACK_YEAR
        return Intensity(value, "world_average", "world", year, "carbontracker 2.4.7's world average (built in)", "world")
    return Intensity(
        value, "world_average", "world", year, f"carbontracker {_carbontracker_version()}: WORLD_AVG_CARBON_INTENSITY", "world"
    )


@functools.cache
def _carbontracker_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("carbontracker")
    except importlib.metadata.PackageNotFoundError:
        return "(unknown version)"


class FixedIntensity:
    """A configured intensity (``SUSTAINML_GRID_CI``); answers every location when > 0."""

    def __init__(self, g_per_kwh: float, source: str = "env") -> None:
        self.g_per_kwh = g_per_kwh
        self.source = source

    def lookup(self, location: Location) -> Intensity | None:
        if not self.g_per_kwh > 0:
            return None
        text = _text(location)
        return Intensity(
            self.g_per_kwh,
            self.source,
            kind="configured",
            dataset="SUSTAINML_GRID_CI",
            match=PlaceMatch(text, "SUSTAINML_GRID_CI", "configured"),
        )


class OfflineTable:
    """Country lookup in a table of yearly averages (by default carbontracker's)."""

    def __init__(self, rows: Iterable[TableRow] | None = None) -> None:
        self.rows = tuple(carbontracker_table() if rows is None else rows)
        self._by_key: dict[str, TableRow] = {}
        for row in self.rows:
            for key in (row.alpha2, row.alpha3, row.name):
                if key:
                    self._by_key.setdefault(_norm(key), row)
        for alias, alpha2 in _COUNTRY_ALIASES.items():
            target = self._by_key.get(_norm(alpha2))
            if target is not None:
                self._by_key.setdefault(alias, target)

    def country(self, text: str) -> TableRow | None:
        """The table row a free-text place names, or None."""
        for candidate in _candidates(text):
            row = self._by_key.get(candidate)
            if row is not None:
                return row
        return None

    def lookup(self, location: Location) -> Intensity | None:
        for text in (location.region, location.continent):
            row = self.country(text)
            if row is not None:
                return Intensity(
                    row.g_per_kwh,
                    "offline_table",
                    row.alpha2,
                    row.year,
                    f"carbontracker {_carbontracker_version()}: carbon-intensities.csv",
                    "country",
                    PlaceMatch(text, f"{row.name} ({row.alpha2})", "exact"),
                )
        return None


def continent_name(text: str) -> str | None:
    """The canonical continent a free-text place names ("europe", "EU", "North America"), or None."""
    by_name = {_norm(name): name for name in CONTINENT_COUNTRIES}
    for candidate in _candidates(text):
        name = by_name.get(candidate) or _CONTINENT_ALIASES.get(candidate)
        if name is not None:
            return name
    return None


class ContinentAverage:
    """The unweighted mean over a continent's countries in an :class:`OfflineTable`."""

    def __init__(self, table: OfflineTable) -> None:
        self._averages: dict[str, float] = {}
        for name, codes in CONTINENT_COUNTRIES.items():
            values = [row.g_per_kwh for row in table.rows if row.alpha2 in codes]
            if values:
                self._averages[name] = sum(values) / len(values)
        self._counts = {name: sum(1 for row in table.rows if row.alpha2 in codes) for name, codes in CONTINENT_COUNTRIES.items()}

    def intensity(self, name: str, match: PlaceMatch | None = None) -> Intensity | None:
        """The average of continent ``name`` (a key of :data:`CONTINENT_COUNTRIES`), or None without one."""
        if name not in self._averages:
            return None
        table = f"carbontracker {_carbontracker_version()}: carbon-intensities.csv"
        dataset = f"mean of the offline table's {self._counts[name]} countries on {name} ({table})"
        return Intensity(self._averages[name], "continent_average", name, None, dataset, "continent", match)

    def lookup(self, location: Location) -> Intensity | None:
        for text in (location.region, location.continent):
            name = continent_name(text)
            if name is not None and name in self._averages:
                return self.intensity(name, PlaceMatch(text, name, "continent"))
        return None


LiveFetch = Callable[[], tuple[float, str, str]]
"""Blocking live lookup returning (gCO2e/kWh, provider id, zone); raises when it cannot answer."""


def carbontracker_live_fetch(electricitymaps_api_key: str) -> LiveFetch:
    """A live lookup through carbontracker's providers for the node's IP-geolocated country.

    Denmark uses Energi Data Service, Great Britain the Carbon Intensity API, any other country
    Electricity Maps when an API key is configured.
    """

    def fetch() -> tuple[float, str, str]:
        import geocoder  # carbontracker's dependency; network
        from carbontracker.emissions.intensity.fetchers import carbonintensitygb, electricitymaps, energidataservice

        where = geocoder.ip("me")
        if not getattr(where, "ok", False):
            raise LookupError("the node's location could not be determined")
        country = str(where.country)
        fetcher: object
        if country == "DK":
            fetcher = energidataservice.EnergiDataService(logger=None)
        elif country == "GB":
            fetcher = carbonintensitygb.CarbonIntensityGB(logger=None)
        elif electricitymaps_api_key:
            fetcher = electricitymaps.ElectricityMap(logger=None, api_key=electricitymaps_api_key)
        else:
            raise LookupError(f"no live provider for {country} without an Electricity Maps API key")
        place = SimpleNamespace(
            country=country, address=where.address, postal=getattr(where, "postal", None), lat=where.lat, lng=where.lng
        )
        result = fetcher.fetch_carbon_intensity(place)  # type: ignore[attr-defined]
        return float(result.carbon_intensity), str(fetcher.id), country  # type: ignore[attr-defined]

    return fetch


class LiveIntensity:
    """carbontracker's live providers, bounded by ``timeout_s`` and reused for ``cache_ttl_s``.

    The lookup runs in a daemon thread; a lookup that overruns is abandoned (the providers have no
    timeouts of their own) and, while it still runs, no second one is started.
    """

    def __init__(
        self,
        fetch: LiveFetch,
        timeout_s: float,
        cache_ttl_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.timeout_s = timeout_s
        self.cache_ttl_s = cache_ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, Intensity] | None = None
        self._running: threading.Thread | None = None

    def lookup(self, location: Location) -> Intensity | None:
        with self._lock:
            if self._cached is not None and self._clock() - self._cached[0] < self.cache_ttl_s:
                return self._cached[1]
            if self._running is not None and self._running.is_alive():
                log.info("intensity.live_skipped", reason="a previous lookup is still running")
                return None
            box: list[tuple[float, str, str] | BaseException] = []

            def run() -> None:
                try:
                    box.append(self._fetch())
                except BaseException as exc:  # reported to the caller below
                    box.append(exc)

            thread = threading.Thread(target=run, name="carbon-node-live-intensity", daemon=True)
            self._running = thread
            thread.start()
        thread.join(self.timeout_s)
        if not box:
            log.warning("intensity.live_timeout", timeout_s=self.timeout_s)
            return None
        outcome = box[0]
        if isinstance(outcome, BaseException):
            log.warning("intensity.live_failed", error=str(outcome))
            return None
        value, provider, zone = outcome
        if not value > 0:
            log.warning("intensity.live_failed", error=f"provider {provider} answered {value!r}")
            return None
        intensity = Intensity(value, f"live:{provider}", zone, None, f"live: {provider} for the node's own location", "country")
        with self._lock:
            self._cached = (self._clock(), intensity)
        return intensity


class WorldAverage:
    """carbontracker's world average: the last resort, answers every location."""

    def lookup(self, location: Location) -> Intensity:
        return world_average()


class IntensityChain:
    """Asks its sources in order; the first answer wins, and the world average ends every chain."""

    def __init__(self, sources: Sequence[IntensitySource]) -> None:
        self.sources = tuple(sources)

    def start(self) -> None:
        """Let the sources that load data begin now, in the background (the place resolver); the daemon
        calls it once NODE_IDLE is published, so that start-up does not share the CPU with the load."""
        for source in self.sources:
            start = getattr(source, "start", None)
            if callable(start):
                start()

    @property
    def may_block(self) -> bool:
        """Whether a lookup may wait on the network (a live source is in the chain); the others are
        table lookups in memory."""
        return any(isinstance(source, LiveIntensity) for source in self.sources)

    def lookup(self, location: Location) -> Intensity:
        for source in self.sources:
            answer = source.lookup(location)
            if answer is not None:
                return explain(answer, location)
        return explain(world_average(), location)


def _text(location: Location) -> str:
    return ", ".join(part for part in (location.region, location.continent) if part)


def explain(answer: Intensity, location: Location) -> Intensity:
    """``answer`` with its :class:`PlaceMatch` filled in when its source did not read the place text
    (the live providers, the world average, an injected source), and a warning when a text was given:
    it was not understood, and the warning says what was used instead."""
    if answer.match is not None:
        return answer
    text = _text(location)
    if answer.source == "world_average":
        how, used = "world", f"the world average ({answer.g_per_kwh:g} gCO2e/kWh)"
    elif answer.source.startswith("live:"):
        how, used = "live", f"the live intensity of the node's own location ({answer.zone or 'unknown'}, {answer.source})"
    else:
        return replace(answer, match=PlaceMatch(text, answer.zone or answer.source, answer.source))
    warnings = answer.warnings
    if text:
        warnings += (f"geo_location {text!r} is not a place the node knows: {used} used instead",)
    return replace(answer, match=PlaceMatch(text, answer.zone or "world", how), warnings=warnings)


def default_intensity_source(
    grid_ci_g_per_kwh: float,
    live_intensity: bool = False,
    live_intensity_timeout_s: float = 5.0,
    electricitymaps_api_key: str = "",
    table: OfflineTable | None = None,
    places: IntensitySource | None = None,
) -> IntensityChain:
    """The chain of the module docstring, from the settings of the same names. ``places`` replaces the
    place resolver (default: a :class:`~carbon_node.engine.places.PlaceIntensity` over ``table``, which
    loads its data on the first lookup, or in the background from :meth:`IntensityChain.start` on)."""
    from carbon_node.engine.places import PlaceIntensity  # the resolver builds on this module

    table = table if table is not None else OfflineTable()
    sources: list[IntensitySource] = [
        FixedIntensity(grid_ci_g_per_kwh),
        places if places is not None else PlaceIntensity(table, start=False),
    ]
    if live_intensity:
        sources.append(LiveIntensity(carbontracker_live_fetch(electricitymaps_api_key), live_intensity_timeout_s))
    sources.append(WorldAverage())
    return IntensityChain(sources)
