"""Grid figures per zone (gCO2e/kWh), read from the packaged data: which zones have a figure of their
own, and the figure, year and dataset of each.

The files under ``carbon_node/data/places/`` are CodeCarbon's and botocore's, copied byte for byte by
``tools/update_places_data.py`` (``SOURCES.json`` names each file's package, version, licence and
checksum); this module reads them with the standard library only: no CodeCarbon import (its package
imports pandas), nothing from the network.

| zones | figure | year | dataset |
|---|---|---|---|
| countries | carbontracker's table (``offline_table``), else CodeCarbon's mix | per country | Our World in Data |
| US states and DC (``US-CA``) | EPA eGRID output emission rate (CO2e), lb/MWh x 0.45359237 | 2023 | eGRID2023 |
| Canadian provinces (``CA-QC``) | fossil shares of the mix x CodeCarbon's per-source factors | 2023 | Canadian mix |
| Chinese provinces (``CN-GD``) | official provincial factors (CO2 only) | 2023 | MEE/NBS |
| Nordic bidding zones (``SE-SE3``) | ENTSO-E generation mix x per-source factors | 2025 | Nordic table |
| Google Cloud regions (``gcp:europe-west1``) | Google's grid intensity per region | not stated | ``cloud/impact.csv`` |

Canada's figure is CodeCarbon's own method (coal, petroleum and natural gas shares times their
factors; hydro, nuclear and the rest count as zero), with the factors of its
``carbon_intensity_per_source.json``.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "GridFigures",
    "ZoneFigure",
    "aws_regions",
    "data_text",
    "gcp_regions",
    "load_zone_figures",
    "sources",
    "zone_names",
]

LB_PER_MWH_TO_G_PER_KWH = 0.45359237
"""1 lb/MWh = 453.59237 g per 1000 kWh."""

CANADA_FOSSIL_FACTORS = {"coal": "coal", "petroleum": "petroleum", "naturalGas": "natural_gas"}
"""Canadian mix column -> key of ``carbon_intensity_per_source.json`` (CodeCarbon's fossil-only method)."""


@dataclass(frozen=True)
class ZoneFigure:
    """One zone's grid intensity: id (``US-CA``, ``SE-SE3``, ``gcp:europe-west1``, ``ES``), name, kind
    (country, subnational, cloud_region), gCO2e/kWh, year (None where the data does not say), the
    dataset in words and the ``grid_ci_source`` it is published under."""

    zone: str
    name: str
    kind: str
    g_per_kwh: float
    year: int | None
    dataset: str
    source: str


def data_text(name: str) -> str:
    """A file of the packaged place data, as text."""
    return importlib.resources.files("carbon_node").joinpath("data", "places", name).read_text("utf-8-sig")


@functools.cache
def sources() -> Mapping[str, Any]:
    """``SOURCES.json``: per file, its package, version, licence and checksum."""
    return dict(json.loads(data_text("SOURCES.json")))


def _via(name: str) -> str:
    origin = sources()["files"][name]
    return f"{origin['package']} {origin['version']}: {origin['file'].rsplit('/', 1)[-1]}"


def _us_states() -> list[ZoneFigure]:
    data = json.loads(data_text("usa_emissions.json"))
    year = int(data["_source"]["year"])
    dataset = f"EPA eGRID{year} ({_via('usa_emissions.json')})"
    return [
        ZoneFigure(
            f"US-{entry['regionCode']}",
            name.title(),
            "subnational",
            float(entry["emissions"]) * LB_PER_MWH_TO_G_PER_KWH,
            year,
            dataset,
            "codecarbon",
        )
        for name, entry in data.items()
        if not name.startswith("_")
    ]


def _canada(province_codes: Mapping[str, str]) -> list[ZoneFigure]:
    """``province_codes``: lower-case province name -> ISO 3166-2 code."""
    mix = json.loads(data_text("canada_energy_mix.json"))
    factors = json.loads(data_text("carbon_intensity_per_source.json"))
    dataset = f"Canadian provincial generation mix 2023 ({_via('canada_energy_mix.json')})"
    zones = []
    for name, shares in mix.items():
        code = province_codes.get(name.lower())
        if code is None:
            continue
        total = float(shares["total"])
        value = sum(float(shares.get(column, 0.0)) / total * float(factors[key]) for column, key in CANADA_FOSSIL_FACTORS.items())
        zones.append(ZoneFigure(code, name.title(), "subnational", value, 2023, dataset, "codecarbon"))
    return zones


def _china() -> list[ZoneFigure]:
    data = json.loads(data_text("china_provincial_emissions.json"))
    dataset = f"MEE/NBS provincial electricity CO2 factors ({_via('china_provincial_emissions.json')})"
    return [
        ZoneFigure(
            code,
            str(entry["description"]),
            "subnational",
            float(entry["emission_factor"]),
            int(entry["year"]),
            dataset,
            "codecarbon",
        )
        for code, entry in data["data"].items()
    ]


def _nordic() -> list[ZoneFigure]:
    """The bidding zones (SE1..SE4, NO1..NO5) as ``SE-SE3``; the table's ``FI`` is the country, left out."""
    data = json.loads(data_text("nordic_emissions.json"))
    dataset = f"ENTSO-E generation per bidding zone ({_via('nordic_emissions.json')})"
    return [
        ZoneFigure(
            f"{zone[:2]}-{zone}",
            str(entry["description"]),
            "subnational",
            float(entry["emission_factor"]),
            int(entry["year"]),
            dataset,
            "codecarbon",
        )
        for zone, entry in data["data"].items()
        if len(zone) > 2
    ]


def _country_mix(alpha3_to_alpha2: Mapping[str, str]) -> dict[str, ZoneFigure]:
    data = json.loads(data_text("global_energy_mix.json"))
    dataset = f"Our World in Data energy mix ({_via('global_energy_mix.json')})"
    figures = {}
    for alpha3, entry in data.items():
        alpha2 = alpha3_to_alpha2.get(alpha3)
        if alpha2 and entry.get("carbon_intensity") is not None:
            figures[alpha2] = ZoneFigure(
                alpha2,
                str(entry["country_name"]),
                "country",
                float(entry["carbon_intensity"]),
                int(entry["year"]),
                dataset,
                "codecarbon",
            )
    return figures


def zone_names() -> dict[str, list[str]]:
    """Other names the figure tables give their zones (China's: "inner mongolia", "nei mongol")."""
    data = json.loads(data_text("china_provincial_emissions.json"))
    return {code: [str(name) for name in entry.get("names", [])] for code, entry in data["data"].items()}


def gcp_regions() -> list[tuple[str, ZoneFigure, str]]:
    """Google Cloud regions: (region id, its figure, the country's ISO alpha-3)."""
    rows = list(csv.DictReader(io.StringIO(data_text("cloud_impact.csv"))))
    dataset = f"Google Cloud region grid intensity ({_via('cloud_impact.csv')})"
    regions = []
    for row in rows:
        if row["provider"] != "gcp" or not row["impact"]:
            continue
        place = ", ".join(part for part in (row["city"], row["state"], row["country_name"]) if part)
        figure = ZoneFigure(
            f"gcp:{row['region']}",
            f"{row['region']} ({place})",
            "cloud_region",
            float(row["impact"]),
            None,
            dataset,
            "codecarbon",
        )
        regions.append((row["region"], figure, row["countryIsoCode"]))
    return regions


def aws_regions() -> list[tuple[str, str]]:
    """AWS regions: (region id, botocore's description, e.g. "US East (N. Virginia)")."""
    data = json.loads(data_text("aws_partitions.json"))
    return [
        (region, str(info.get("description", "")))
        for partition in data["partitions"]
        for region, info in partition["regions"].items()
        if not region.endswith("-global")
    ]


def carbontracker_dataset() -> str:
    """The offline table's dataset in words (carbontracker's version read from its metadata, no import)."""
    import importlib.metadata  # ~20 ms of imports: only when the figures load, after start-up

    try:
        version = importlib.metadata.version("carbontracker")
    except importlib.metadata.PackageNotFoundError:
        version = "(not installed)"
    return f"Our World in Data carbon intensity of electricity (carbontracker {version}: carbon-intensities.csv)"


@dataclass(frozen=True)
class GridFigures:
    """The figure of each zone that has one: sub-national zones and cloud regions by id, countries by
    ISO alpha-2 (the offline table's rows first, then CodeCarbon's country mix)."""

    zones: Mapping[str, ZoneFigure]
    countries: Mapping[str, ZoneFigure]

    def zone(self, zone: str) -> ZoneFigure | None:
        return self.zones.get(zone)

    def country(self, alpha2: str) -> ZoneFigure | None:
        return self.countries.get(alpha2)


def load_zone_figures(
    table_rows: Iterable[Any], alpha3_to_alpha2: Mapping[str, str], province_codes: Mapping[str, str]
) -> GridFigures:
    """All figures: ``table_rows`` are the offline table's :class:`~carbon_node.engine.intensity.TableRow`;
    ``alpha3_to_alpha2`` and ``province_codes`` (lower-case Canadian province name -> ISO code) come
    from pycountry."""
    zones = {z.zone: z for z in (*_us_states(), *_canada(province_codes), *_china(), *_nordic())}
    zones.update({figure.zone: figure for _, figure, _ in gcp_regions()})
    countries = _country_mix(alpha3_to_alpha2)
    table_dataset = carbontracker_dataset()
    for row in table_rows:
        countries[row.alpha2] = ZoneFigure(
            row.alpha2, row.name, "country", row.g_per_kwh, row.year, table_dataset, "offline_table"
        )
    return GridFigures(zones, countries)
