"""Free place text -> the finest grid zone the data knows for it, and how the text was read.

The order, first reading wins:

1. an id with a shape: an ISO 3166-2 code ("US-CA", "CA-QC"), a bidding zone ("SE3", "SE-SE3",
   "DK-DK1"), an Electricity Maps zone id ("US-CAL-CISO": country, then a region whose name starts
   with the middle part, "CAL" -> California; "US-NY-NYIS": a two-letter middle part is a region code
   only when the last part starts with it);
2. the whole text as a known name: a cloud region id ("us-east-1", "europe-west1"), else a country,
   else a region (ISO 3166-2), else a continent, else a city; a city of a million people or more beats
   a region of another country of the same name ("Santiago");
3. the parts of "City, Region, Country" (any order, any separators; without separators, the words
   split into known names: "Madrid Spain"): every combination of readings that agree (the city is in
   the region, the region in the country, the country on the continent) is scored by how many parts it
   explains, then typos, then how fine its finest place is;
4. an Azure region id: a country or continent word and a compass word, run together
   ("germanywestcentral", "westeurope");
5. a typo: a country, region or city of 100,000+ people within a small edit distance (``fuzzy``).

A reading that finds nothing returns None: the caller answers with the continent or the world average
and says so.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from carbon_node.engine.grid_zones import GridFigures
from carbon_node.engine.place_index import _COMPASS_WORDS, Candidate, Place, PlaceIndex
from carbon_node.engine.place_text import fold, split_parts

__all__ = ["PlaceResolver", "Resolution"]

_ZONE_ID = re.compile(r"^([A-Za-z]{2})-([A-Za-z0-9]+)(?:-([A-Za-z0-9]+))?$")
_BIDDING_ZONE = re.compile(r"^([A-Za-z]{2})([0-9])$")
_COMPASS = (
    "northeast|northwest|southeast|southwest|northcentral|southcentral|westcentral|eastcentral|north|south|east|west|central"
)
_AZURE_ID = re.compile(rf"^[a-z]*(?:{_COMPASS})[a-z]*[0-9]?$")
"""One word with a compass word in it, at most a digit after: the shape of an Azure region id."""
_SINGLE_RANK = {"cloud_region": 0, "country": 1, "subdivision": 2, "continent": 3, "city": 4}
_FINENESS = {"continent": 1, "country": 2, "subdivision": 3, "city": 4, "cloud_region": 5}
_BIG_CITY = 1_000_000
_MAX_PARTS = 4
_MAX_READINGS = 6


@dataclass(frozen=True)
class Resolution:
    """How ``text`` was read: the place it names, ``how`` (exact, alias, city, cloud_region, zone_id,
    fuzzy, continent), what matched in words, and the zone whose figure applies (``zone_kind``:
    country, subnational, cloud_region or continent)."""

    text: str
    place: Place
    how: str
    matched: str
    zone: str
    zone_kind: str


def _abbreviates(short: str, name: str) -> bool:
    """Whether ``short`` abbreviates ``name``: its first letter, then its other letters in order ("cal"
    California, "fla" Florida, "tex" Texas)."""
    if not short or not name.startswith(short[0]):
        return False
    rest = iter(name[1:])
    return all(letter in rest for letter in short[1:])


def _label(place: Place) -> str:
    if place.kind == "city":
        return f"{place.name} (city, {place.region or place.country})"
    if place.kind in ("country", "subdivision"):
        return f"{place.name} ({place.code})"
    return place.name


class PlaceResolver:
    """Reads place texts against a :class:`PlaceIndex`; ``continents`` maps a continent's name to the
    ISO alpha-2 codes of its countries."""

    def __init__(self, index: PlaceIndex, figures: GridFigures, continents: Mapping[str, frozenset[str]]) -> None:
        self.index = index
        self.figures = figures
        self.continents = continents

    # The zone of a place

    def zone_of(self, place: Place) -> tuple[str, str]:
        """(zone id, zone kind) whose figure applies to ``place``: its own where the data has one,
        else its region's (cities), else its country's, else its continent's."""
        if place.kind == "cloud_region" and self.figures.zone(place.code) is not None:
            return place.code, "cloud_region"
        if place.kind == "continent":
            return place.code, "continent"
        for code in (place.region, place.code if place.kind == "subdivision" else ""):
            if code and self.figures.zone(code) is not None:
                return code, "subnational"
        if place.country:
            return place.country, "country"
        return "", ""

    def _result(self, text: str, place: Place, how: str, matched: str = "") -> Resolution | None:
        if place.kind == "cloud_region" and place.code.startswith("aws:"):
            return self._aws(text, place)
        if place.kind == "continent" and how != "fuzzy":
            how = "continent"
        zone, kind = self.zone_of(place)
        if not zone:
            return None
        return Resolution(text, place, how, matched or _label(place), zone, kind)

    def _aws(self, text: str, place: Place) -> Resolution | None:
        """An AWS region: where its description says it is ("US East (N. Virginia)" -> Virginia), else
        the country or continent its id starts with ("us-gov-east-1" -> US)."""
        inner = re.findall(r"\(([^()]*)\)", place.detail)
        # "N. Virginia", "US-West": the initials and compass words say where in the place, not which.
        words = [w for w in fold(inner[-1] if inner else place.detail).split(" ") if len(w) > 1 and w not in _COMPASS_WORDS]
        found = self.resolve(" ".join(words)) if words else None
        if found is None:
            found = self.resolve(place.code.split(":", 1)[1].split("-")[0])
        if found is None:
            return None
        return Resolution(text, place, "cloud_region", f"{place.name}: {found.matched}", found.zone, found.zone_kind)

    # Reading a text

    def resolve(self, text: str, continent: str | None = None) -> Resolution | None:
        """What ``text`` names, or None. ``continent`` (a continent's name) breaks ties between places
        of one name ("Valencia" in Europe)."""
        raw = " ".join(text.split())
        if not raw:
            return None
        found = self._shaped_id(raw)
        if found is not None:
            return found
        key = fold(raw)
        candidates = self.index.get(key)
        if candidates:
            best = self._single(candidates, continent)
            return self._result(raw, best.place, best.how)
        parts = [p for p in split_parts(raw)][-_MAX_PARTS:]
        if len(parts) == 1:
            words = self._segment(fold(parts[0]))
            if words:
                parts = words
        if len(parts) > 1:
            found = self._combine(raw, parts, continent)
            if found is not None:
                return found
        return self._azure(raw, key) or self._fuzzy(raw, key, continent)

    def _shaped_id(self, raw: str) -> Resolution | None:
        match = _ZONE_ID.match(raw)
        if match:
            country, middle, last = match.group(1).upper(), match.group(2).upper(), (match.group(3) or "").upper()
            if country not in self.index.countries or self.index.get(fold(raw)):
                return None  # "us-east-1" and the like are cloud regions, read as names
            code = f"{country}-{middle}"
            if not last and code in self.index.subdivisions:
                return self._result(raw, self.index.subdivisions[code], "exact")
            if not last and middle.startswith(country) and middle[2:].isdigit():
                return self._bidding_zone(raw, country, middle)
            region = self._region_by_prefix(country, middle, last)
            place = region or self.index.countries[country]
            found = self._result(raw, place, "zone_id")
            if found is not None and region is None:
                found = Resolution(
                    raw, place, "zone_id", f"{_label(place)}: no figure of its own for {raw.upper()}", found.zone, found.zone_kind
                )
            return found
        match = _BIDDING_ZONE.match(raw)
        if match and match.group(1).upper() in self.index.countries:
            country = match.group(1).upper()
            return self._bidding_zone(raw, country, f"{country}{match.group(2)}")
        return None

    def _bidding_zone(self, raw: str, country: str, zone: str) -> Resolution | None:
        figure = self.figures.zone(f"{country}-{zone}")
        if figure is not None:
            place = Place("subdivision", figure.zone, figure.name, country)
            return Resolution(raw, place, "zone_id", f"{figure.name} ({figure.zone})", figure.zone, "subnational")
        found = self._result(raw, self.index.countries[country], "zone_id")
        if found is None:
            return None
        return Resolution(
            raw, found.place, "zone_id", f"{found.matched}: no figure of its own for {zone}", found.zone, found.zone_kind
        )

    def _region_by_prefix(self, country: str, middle: str, last: str) -> Place | None:
        if len(middle) == 2:
            place = self.index.subdivisions.get(f"{country}-{middle}")
            return place if place is not None and last.startswith(middle) else None
        short = middle.lower()
        found = {
            place.code: place
            for place in self.index.subdivisions.values()
            if place.code.startswith(country) and _abbreviates(short, fold(place.name).replace(" ", ""))
        }
        return next(iter(found.values())) if len(short) >= 3 and len(found) == 1 else None

    def _single(self, candidates: list[Candidate], continent: str | None) -> Candidate:
        """The best reading of a whole text: the broadest kind first (a country before a region of the
        same name, a region before a city), a big city before a region of another country."""
        if continent and continent in self.continents:
            members = self.continents[continent]
            inside = [c for c in candidates if c.place.country in members or c.place.code == continent]
            candidates = inside or candidates
        ranked = sorted(candidates, key=lambda c: (_SINGLE_RANK[c.place.kind], -c.weight))
        best = ranked[0]
        if best.place.kind == "subdivision":
            cities = [c for c in ranked if c.place.kind == "city" and c.weight >= _BIG_CITY]
            regions = {c.place.country for c in ranked if c.place.kind == "subdivision"}
            if cities and cities[0].place.country not in regions:
                return cities[0]
        return best

    def _segment(self, key: str) -> list[str] | None:
        """The words of ``key`` as consecutive known names, longest first from the end ("madrid spain")."""
        words = key.split(" ")
        if len(words) < 2:
            return None
        found: list[str] = []
        end = len(words)
        while end > 0:
            for start in range(max(0, end - 4), end):
                name = " ".join(words[start:end])
                if self.index.get(name):
                    found.insert(0, name)
                    end = start
                    break
            else:
                return None
        return found if len(found) > 1 else None

    def _readings(self, part: str) -> list[tuple[Candidate, bool]]:
        """A part's possible readings (candidate, is a typo), the best few."""
        key = fold(part)
        readings = [(c, False) for c in self.index.get(key)[:_MAX_READINGS]]
        if 1 <= len(key) <= 3 and key.isalpha():  # "MA" may be Massachusetts next to "Cambridge"
            readings += [
                (Candidate(self.index.subdivisions[f"{country}-{key.upper()}"], "exact", 0.5), False)
                for country in self.index.countries
                if f"{country}-{key.upper()}" in self.index.subdivisions
            ]
        if not readings:
            readings = [(c, True) for _, c in self.index.fuzzy(key)[:_MAX_READINGS]]
        return readings

    def _agree(self, places: list[Place]) -> bool:
        countries = {p.country for p in places if p.kind != "continent" and p.country}
        if len(countries) > 1:
            return False
        for kind in ("subdivision", "city", "cloud_region"):
            if len({p.code for p in places if p.kind == kind}) > 1:
                return False
        regions = {p.code for p in places if p.kind == "subdivision"}
        if any(p.kind == "city" and p.region and regions and p.region not in regions for p in places):
            return False
        for p in places:
            if p.kind == "continent" and countries and not countries <= self.continents.get(p.code, frozenset()):
                return False
        return True

    def _combine(self, raw: str, parts: list[str], continent: str | None) -> Resolution | None:
        readings = [[*self._readings(part), None] for part in parts]
        if continent and continent in self.continents:
            readings.append([(Candidate(Place("continent", continent, continent), "continent"), False), None])
        best: tuple[tuple[float, ...], list[tuple[Candidate, bool]]] | None = None
        for combination in itertools.product(*readings):
            chosen = [reading for reading in combination if reading is not None]
            if not chosen or not self._agree([c.place for c, _ in chosen]):
                continue
            typos = sum(1 for _, typo in chosen if typo)
            finest = max(_FINENESS[c.place.kind] for c, _ in chosen)
            score = (len(chosen), -typos, finest, sum(math.log1p(c.weight) for c, _ in chosen))
            if best is None or score > best[0]:
                best = (score, chosen)
        if best is None or all(c.place.kind == "continent" for c, _ in best[1]):
            return None
        chosen = best[1]
        finest_candidate = max(chosen, key=lambda item: _FINENESS[item[0].place.kind])[0]
        how = "fuzzy" if any(t for _, t in chosen) else finest_candidate.how
        matched = ", ".join(_label(c.place) for c, _ in sorted(chosen, key=lambda item: -_FINENESS[item[0].place.kind]))
        return self._result(raw, finest_candidate.place, how, matched)

    def _azure(self, raw: str, key: str) -> Resolution | None:
        if not _AZURE_ID.match(key):
            return None
        bare = key.rstrip("0123456789")
        words = []
        for compass in _COMPASS.split("|"):
            if bare.endswith(compass):
                words.append(bare[: -len(compass)])
            if bare.startswith(compass):
                words.append(bare[len(compass) :])
                words += [bare[len(compass) : -len(other)] for other in _COMPASS.split("|") if bare.endswith(other)]
        candidates = [
            c for word in words if word for c in self.index.compact.get(word, []) if c.place.kind in ("country", "continent")
        ]
        if not candidates:
            return None
        where = candidates[0].place
        place = Place("cloud_region", f"azure:{key}", f"{raw} (Azure)", where.country, detail=where.code)
        zone, kind = self.zone_of(where)
        return Resolution(raw, place, "cloud_region", f"{raw} (Azure region id): {_label(where)}", zone, kind)

    def _fuzzy(self, raw: str, key: str, continent: str | None) -> Resolution | None:
        near = self.index.fuzzy(key)
        if not near:
            return None
        nearest = [c for distance, c in near if distance == near[0][0]]
        best = self._single(nearest, continent)
        return self._result(raw, best.place, "fuzzy", _label(best.place))
