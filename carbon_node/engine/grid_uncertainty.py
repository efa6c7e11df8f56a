"""How far a grid intensity may be from the one the energy was drawn at: the intensity's part of an interval.

A function of an :class:`~carbon_node.engine.intensity.Intensity` alone: its zone's ``kind`` (``country``,
``subnational``, ``cloud_region``, ``continent``, ``world``, ``configured``) where it says one, else read
from its ``source``; and its ``zone``. Factors ``(low, high)`` at about 95 %, as every part
(:mod:`carbon_node.measure.uncertainty`), from two independent sources of error, combined the same way:

- A yearly average against the hour the energy was drawn: 0.67, 1.5, for every figure but a live one.
  Hourly intensities swing around the yearly average with the mix of the hour (wind, sun, demand);
  Miller, Novan & Jenn, "Hourly accounting of carbon emissions from electricity consumption", Environ.
  Res. Lett. 17 044073 (2022), show how yearly factors misstate hourly consumption. This project's bound.
- A live figure (``live:*``, the provider's estimate of the hour): 0.9, 1.1, and nothing else.
- A country's figure against the sub-national grid the host is on: 0.8, 1.25; 0.25, 2.5 for the large,
  varied grids of US, CA, AU, BR, IN, CN, RU (US states range from hydro and nuclear to coal). For a
  ``country`` figure and a ``configured`` one (``env``: a figure the operator set, taken as a country's);
  a ``subnational`` or ``cloud_region`` figure (the place resolver's finer zones) has no such part.
- A continent's plain mean against the country (``continent_average``): the 2.5th and 97.5th percentiles
  of the continent's countries in carbontracker's table over their mean, computed from the installed table.
- The world average against the country (``world_average``): the same over every country of the table.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Sequence

from carbon_node.engine.intensity import Intensity, TableRow, carbontracker_table
from carbon_node.engine.place_aliases import CONTINENT_COUNTRIES
from carbon_node.measure.uncertainty import Part, combine

__all__ = ["HOUR_FACTORS", "LARGE_GRIDS", "LIVE_FACTORS", "intensity_kind", "intensity_part", "zone_spread"]

HOUR_FACTORS = (1 / 1.5, 1.5)
LIVE_FACTORS = (0.9, 1.1)
COUNTRY_FACTORS = (0.8, 1.25)
LARGE_COUNTRY_FACTORS = (0.25, 2.5)
LARGE_GRIDS = frozenset({"US", "CA", "AU", "BR", "IN", "CN", "RU"})
"""Countries whose regional grids differ several-fold (their national figure is a poor guess for a region)."""

_WIDE_DEFAULT = (0.2, 3.0)
"""A zone's spread when the table cannot tell it (no table installed)."""


def intensity_kind(intensity: Intensity) -> str:
    """The zone's kind: the intensity's own ``kind`` when it has one, else read from its ``source``."""
    kind = getattr(intensity, "kind", None)
    if isinstance(kind, str) and kind:
        return kind
    source = intensity.source
    if source.startswith("live:"):
        return "live"
    return {"offline_table": "country", "continent_average": "continent", "world_average": "world", "env": "configured"}.get(
        source, "country"
    )


def zone_spread(values: Sequence[float]) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of ``values`` over their mean (factors); wide when too few."""
    present = sorted(value for value in values if value > 0)
    if len(present) < 3:
        return _WIDE_DEFAULT
    quantiles = statistics.quantiles(present, n=40, method="inclusive")
    mean = statistics.fmean(present)
    return min(quantiles[0] / mean, 1.0), max(quantiles[-1] / mean, 1.0)


@functools.cache
def _table_spread(continent: str | None, rows: tuple[TableRow, ...] | None = None) -> tuple[float, float]:
    rows = carbontracker_table() if rows is None else rows
    codes = CONTINENT_COUNTRIES.get(continent or "") if continent else None
    return zone_spread([row.g_per_kwh for row in rows if codes is None or row.alpha2 in codes])


def intensity_part(intensity: Intensity, rows: tuple[TableRow, ...] | None = None) -> Part:
    """The grid intensity's part of a carbon interval (see the module docstring); ``rows``: the offline
    table (default carbontracker's)."""
    kind = intensity_kind(intensity)
    if kind == "live":
        return Part("grid_intensity", *LIVE_FACTORS, f"{intensity.source}: the provider's figure for the hour")
    factors = [HOUR_FACTORS]
    why = [f"{intensity.source} is a yearly average, not the hour's figure"]
    if kind in ("country", "configured"):
        large = (intensity.zone or "").upper() in LARGE_GRIDS
        factors.append(LARGE_COUNTRY_FACTORS if large else COUNTRY_FACTORS)
        why.append(f"a country's figure, not the host's sub-national grid{' (a large, varied grid)' if large else ''}")
    elif kind == "continent":
        factors.append(_table_spread(intensity.zone, rows))
        why.append(f"the plain mean of {intensity.zone or 'the continent'}'s countries (their 2.5-97.5 % spread)")
    elif kind == "world":
        factors.append(_table_spread(None, rows))
        why.append("the world average (the spread of the table's countries, 2.5-97.5 %)")
    low, high = combine(Part("", lo, hi, "") for lo, hi in factors)
    return Part("grid_intensity", low, high, "; ".join(why))
