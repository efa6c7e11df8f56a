"""Names no standard lists: the continents' members and the colloquial names of countries and continents.

Kept from the first offline-table lookup (continuity of today's continent averages and matches): the
place resolver (:mod:`.places`) takes them as aliases beside the ISO names; everything else it knows
comes from package data.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["CONTINENT_COUNTRIES"]

CONTINENT_COUNTRIES: Mapping[str, frozenset[str]] = {
    name: frozenset(codes.split())
    for name, codes in {
        "Europe": "AL AT BA BE BG BY CH CY CZ DE DK EE ES FI FO FR GB GI GR HR HU IE IS IT LT LU LV MD ME MK MT NL NO"
        " PL PT RO RS RU SE SI SK UA",
        "Asia": "AE AF AM AZ BD BH BN BT CN GE HK ID IL IN IQ IR JO JP KG KH KP KR KW KZ LA LB LK MM MN MO MV MY NP OM"
        " PH PK PS QA SA SG SY TH TJ TL TM TR TW UZ VN YE",
        "Africa": "AO BF BI BJ BW CD CF CG CI CM CV DJ DZ EG EH ER ET GA GH GM GN GQ GW KE KM LR LS LY MA MG ML MR MU MW"
        " MZ NE NG RE RW SC SD SH SL SN SO SS ST SZ TD TG TN TZ UG ZA ZM ZW",
        "North America": "AG AW BB BM BS BZ CA CR CU DM DO GD GL GP GT HN HT JM KN KY LC MQ MS MX NI PA PM PR SV TC TT US"
        " VC VG VI",
        "South America": "AR BO BR CL CO EC FK GF GY PE PY SR UY VE",
        "Oceania": "AS AU CK FJ GU KI NC NR NZ PF PG SB TO VU WS",
    }.items()
}
"""ISO alpha-2 codes per continent (Our World in Data's convention: Russia and Cyprus in Europe, Turkey
and the Caucasus in Asia, Central America and the Caribbean in North America)."""

_CONTINENT_ALIASES = {
    "eu": "Europe",
    "n. america": "North America",
    "northamerica": "North America",
    "s. america": "South America",
    "southamerica": "South America",
    "australia/oceania": "Oceania",
    "australia and oceania": "Oceania",
}

_COUNTRY_ALIASES = {
    "usa": "US",
    "u.s.": "US",
    "u.s.a.": "US",
    "united states of america": "US",
    "america": "US",
    "uk": "GB",
    "u.k.": "GB",
    "great britain": "GB",
    "britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "holland": "NL",
    "the netherlands": "NL",
    "czech republic": "CZ",
    "korea": "KR",
    "republic of korea": "KR",
    "russian federation": "RU",
    "turkiye": "TR",
    "türkiye": "TR",
    "ivory coast": "CI",
    "viet nam": "VN",
    "uae": "AE",
    "dr congo": "CD",
    "drc": "CD",
    "deutschland": "DE",
    "españa": "ES",
    "espana": "ES",
    "italia": "IT",
    "schweiz": "CH",
    "suisse": "CH",
    "österreich": "AT",
    "sverige": "SE",
    "norge": "NO",
    "polska": "PL",
    "brasil": "BR",
    "méxico": "MX",
    "nippon": "JP",
}
