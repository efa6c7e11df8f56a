"""Grid intensity resolution: order, country and continent lookups, live bounds, no shared state."""

from __future__ import annotations

import threading

import pytest

from carbon_node.engine.intensity import (
    CONTINENT_COUNTRIES,
    ContinentAverage,
    FixedIntensity,
    Intensity,
    IntensityChain,
    LiveIntensity,
    OfflineTable,
    TableRow,
    WorldAverage,
    carbontracker_table,
    default_intensity_source,
    world_average,
)
from carbon_node.engine.task import Location
from carbon_node.testing import FakeIntensitySource


def core(intensity: Intensity | None) -> tuple[object, ...] | None:
    """What a figure is (value, source, zone, year), without how the text was read."""
    return None if intensity is None else (intensity.g_per_kwh, intensity.source, intensity.zone, intensity.year)


SMALL_TABLE = [
    TableRow("ES", "ESP", "Spain", 2024, 100.0),
    TableRow("FR", "FRA", "France", 2024, 50.0),
    TableRow("DE", "DEU", "Germany", 2023, 300.0),
    TableRow("US", "USA", "United States", 2024, 400.0),
    TableRow("CA", "CAN", "Canada", 2024, 100.0),
]


@pytest.mark.parametrize(
    ("region", "zone", "g_per_kwh", "year"),
    [
        # Values copied by hand from carbontracker 2.4.7's data/carbon-intensities.csv.
        ("Spain", "ES", 146.15356, 2024),
        ("spain", "ES", 146.15356, 2024),
        ("ES", "ES", 146.15356, 2024),
        ("esp", "ES", 146.15356, 2024),
        ("Madrid, Spain", "ES", 146.15356, 2024),
        ("Germany", "DE", 344.13992, 2024),
        ("United States", "US", 383.5492, 2024),
        ("USA", "US", 383.5492, 2024),
        ("UK", "GB", 210.89114, 2024),
        ("Iceland", "IS", 28.330019, 2023),
    ],
)
def test_a_country_is_found_in_carbontrackers_offline_table(region: str, zone: str, g_per_kwh: float, year: int) -> None:
    assert core(OfflineTable().lookup(Location(region=region))) == (g_per_kwh, "offline_table", zone, year)


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        (Location(region="Spain"), Intensity(100.0, "offline_table", "ES", 2024)),
        (Location(continent="Germany"), Intensity(300.0, "offline_table", "DE", 2023)),
        (Location(region="Spain", continent="North America"), Intensity(100.0, "offline_table", "ES", 2024)),
        # (100 + 50 + 300) / 3
        (Location(continent="Europe"), Intensity(150.0, "continent_average", "Europe")),
        (Location(region="Xyzzy", continent="europe"), Intensity(150.0, "continent_average", "Europe")),
        (Location(region="North America"), Intensity(250.0, "continent_average", "North America")),
        (Location(region="Xyzzy"), world_average()),
        (Location(), world_average()),
        # No country of that continent in the table: no average to give.
        (Location(continent="Oceania"), world_average()),
    ],
)
def test_the_chain_resolves_country_then_continent_then_world(location: Location, expected: Intensity) -> None:
    chain = default_intensity_source(0.0, table=OfflineTable(SMALL_TABLE))
    assert core(chain.lookup(location)) == core(expected)


def test_a_configured_grid_intensity_wins_over_the_users_location() -> None:
    chain = default_intensity_source(250.0, table=OfflineTable(SMALL_TABLE))
    answer = chain.lookup(Location(region="Spain"))
    assert core(answer) == (250.0, "env", "", None)
    assert answer.match is not None and answer.match.how == "configured"


def test_a_zero_configured_intensity_means_unset() -> None:
    assert FixedIntensity(0.0).lookup(Location()) is None


def test_the_world_average_is_carbontrackers() -> None:
    from carbontracker import constants

    assert core(world_average()) == (445.0, "world_average", "world", 2024)
    assert world_average().g_per_kwh == constants.WORLD_AVG_CARBON_INTENSITY


def test_every_country_of_the_table_is_on_exactly_one_continent() -> None:
    codes = [row.alpha2 for row in carbontracker_table()]
    assert len(codes) > 200
    for code in codes:
        assert sum(code in members for members in CONTINENT_COUNTRIES.values()) == 1, code


def test_a_continent_average_is_the_plain_mean_of_its_countries() -> None:
    average = ContinentAverage(OfflineTable(SMALL_TABLE))
    assert core(average.lookup(Location(continent="North America"))) == (250.0, "continent_average", "North America", None)


def test_the_live_providers_are_not_asked_unless_enabled() -> None:
    chain = default_intensity_source(0.0)
    assert not any(isinstance(source, LiveIntensity) for source in chain.sources)
    live_chain = default_intensity_source(0.0, live_intensity=True, live_intensity_timeout_s=1.0)
    assert isinstance(live_chain.sources[-2], LiveIntensity)


def test_a_live_answer_names_its_provider() -> None:
    live = LiveIntensity(lambda: (123.0, "electricitymaps", "DE"), timeout_s=5.0)
    assert core(live.lookup(Location())) == (123.0, "live:electricitymaps", "DE", None)


def test_the_live_lookup_comes_after_the_table_and_before_the_world_average() -> None:
    live = LiveIntensity(lambda: (123.0, "energidataservice", "DK"), timeout_s=5.0)
    table = OfflineTable(SMALL_TABLE)
    chain = IntensityChain([FixedIntensity(0.0), table, ContinentAverage(table), live, WorldAverage()])
    assert chain.lookup(Location(region="Xyzzy")).warnings  # the text was not understood: said so
    assert chain.lookup(Location(region="Spain")).source == "offline_table"
    assert chain.lookup(Location(region="Xyzzy")).source == "live:energidataservice"


def test_a_live_lookup_that_overruns_its_timeout_gives_no_answer_and_is_not_restarted() -> None:
    release = threading.Event()
    calls = []

    def hanging() -> tuple[float, str, str]:
        calls.append(1)
        release.wait(10.0)
        return 1.0, "slow", "XX"

    live = LiveIntensity(hanging, timeout_s=0.05)
    try:
        assert live.lookup(Location()) is None
        assert live.lookup(Location()) is None  # the first one still runs: no second thread
        assert len(calls) == 1
    finally:
        release.set()


def test_a_failing_or_non_positive_live_lookup_gives_no_answer() -> None:
    def failing() -> tuple[float, str, str]:
        raise ConnectionError("no network")

    assert LiveIntensity(failing, timeout_s=1.0).lookup(Location()) is None
    assert LiveIntensity(lambda: (0.0, "electricitymaps", "DE"), timeout_s=1.0).lookup(Location()) is None


def test_a_live_answer_is_reused_until_it_expires() -> None:
    now = [0.0]
    calls = []

    def fetch() -> tuple[float, str, str]:
        calls.append(now[0])
        return 100.0 + len(calls), "electricitymaps", "DE"

    live = LiveIntensity(fetch, timeout_s=1.0, cache_ttl_s=60.0, clock=lambda: now[0])
    assert live.lookup(Location()).g_per_kwh == 101.0  # type: ignore[union-attr]
    now[0] = 59.0
    assert live.lookup(Location()).g_per_kwh == 101.0  # type: ignore[union-attr]
    now[0] = 61.0
    assert live.lookup(Location()).g_per_kwh == 102.0  # type: ignore[union-attr]
    assert len(calls) == 2


def test_a_task_location_does_not_change_the_next_tasks_intensity() -> None:
    chain = default_intensity_source(0.0)
    assert chain.lookup(Location(region="Spain")).source == "offline_table"
    assert core(chain.lookup(Location())) == core(world_average())
    assert chain.lookup(Location(region="Spain")).g_per_kwh == 146.15356


def test_a_chain_whose_sources_have_no_answer_ends_at_the_world_average() -> None:
    assert core(IntensityChain([FakeIntensitySource(None)]).lookup(Location(region="x"))) == core(world_average())
