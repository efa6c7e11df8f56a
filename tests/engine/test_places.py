"""The place resolver: places as people type them resolve to the right grid zone, with the packaged figures."""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from carbon_node.engine.grid_zones import LB_PER_MWH_TO_G_PER_KWH, data_text, sources
from carbon_node.engine.intensity import IntensityChain, default_intensity_source
from carbon_node.engine.place_text import edit_distance, fold, letter_mask, name_variants, split_parts
from carbon_node.engine.places import PlaceIntensity
from carbon_node.engine.task import Location

CORPUS = Path(__file__).resolve().parent.parent / "data" / "places_corpus.tsv"
DATA = Path(__file__).resolve().parent.parent.parent / "carbon_node" / "data" / "places"


def corpus() -> list[tuple[str, str, str, str]]:
    rows = []
    for line in CORPUS.read_text("utf-8").splitlines():
        if not line.startswith("#"):
            text, continent, zone, kind = line.split("\t")
            rows.append((text, continent, zone, kind))
    return rows


@pytest.fixture(scope="module")
def places() -> PlaceIntensity:
    source = PlaceIntensity()
    assert source.data() is not None, source.error
    return source


@pytest.fixture(scope="module")
def chain(places: PlaceIntensity) -> IntensityChain:
    return default_intensity_source(0.0, places=places)


def test_the_corpus_has_at_least_150_places_of_every_kind() -> None:
    kinds = Counter(kind for *_, kind in corpus())
    assert sum(kinds.values()) >= 150
    for kind in (
        "country",
        "native",
        "code",
        "subnational",
        "subnational-no-data",
        "city",
        "combined",
        "cloud_region",
        "zone_id",
        "fuzzy",
        "unknown",
    ):
        assert kinds[kind] >= 4, kind


def test_at_least_97_percent_of_the_corpus_resolves_to_its_zone(chain: IntensityChain) -> None:
    misses = []
    rows = corpus()
    for text, continent, zone, _ in rows:
        answer = chain.lookup(Location(region=text.strip(), continent=continent))
        if answer.zone != zone:
            misses.append((text, zone, answer.zone))
    assert 1 - len(misses) / len(rows) >= 0.97, misses


def test_every_subnational_place_with_data_gets_its_own_zone(chain: IntensityChain) -> None:
    for text, continent, zone, kind in corpus():
        if kind == "subnational":
            answer = chain.lookup(Location(region=text, continent=continent))
            assert (answer.zone, answer.kind) == (zone, "subnational"), text


@pytest.mark.parametrize(("text", "continent", "used"), [("Xyzzy", "", "world"), ("Qwertyuiop", "Europe", "Europe")])
def test_an_unknown_place_is_answered_and_warns_naming_the_text_and_what_was_used(
    chain: IntensityChain, text: str, continent: str, used: str
) -> None:
    answer = chain.lookup(Location(region=text, continent=continent))
    assert answer.zone == used
    assert (
        answer.warnings and text in answer.warnings[0] and (used in answer.warnings[0] or "world average" in answer.warnings[0])
    )


def test_an_empty_location_gets_the_world_average_without_a_warning(chain: IntensityChain) -> None:
    answer = chain.lookup(Location())
    assert (answer.source, answer.warnings, answer.match.how if answer.match else None) == ("world_average", (), "world")


@pytest.mark.parametrize(
    ("text", "how"),
    [
        ("Spain", "exact"),
        ("Deutschland", "alias"),
        ("Bangalore", "city"),
        ("us-east-1", "cloud_region"),
        ("DK-DK1", "zone_id"),
        ("Califronia", "fuzzy"),
        ("Europe", "continent"),
    ],
)
def test_every_answer_says_how_the_text_matched(chain: IntensityChain, text: str, how: str) -> None:
    match = chain.lookup(Location(region=text)).match
    assert match is not None and (match.text, match.how) == (text, how)


def test_a_typo_match_warns_that_it_was_read_as_another_name(chain: IntensityChain) -> None:
    answer = chain.lookup(Location(region="Califronia"))
    assert answer.zone == "US-CA" and any("Califronia" in w and "California" in w for w in answer.warnings)


def test_a_us_state_has_the_egrid_figure_of_the_packaged_file(chain: IntensityChain) -> None:
    usa = json.loads(data_text("usa_emissions.json"))
    answer = chain.lookup(Location(region="California"))
    assert answer.g_per_kwh == pytest.approx(usa["california"]["emissions"] * LB_PER_MWH_TO_G_PER_KWH)
    assert (answer.zone, answer.year, answer.source, answer.kind) == (
        "US-CA",
        usa["_source"]["year"],
        "codecarbon",
        "subnational",
    )
    assert "eGRID" in answer.dataset and "codecarbon" in answer.dataset


def test_a_chinese_province_a_bidding_zone_and_a_google_region_have_their_packaged_figures(chain: IntensityChain) -> None:
    china = json.loads(data_text("china_provincial_emissions.json"))["data"]
    nordic = json.loads(data_text("nordic_emissions.json"))["data"]
    gcp = {line.split(",")[3]: float(line.split(",")[9]) for line in data_text("cloud_impact.csv").splitlines()[1:] if line}
    assert chain.lookup(Location(region="Guangdong")).g_per_kwh == china["CN-GD"]["emission_factor"]
    assert chain.lookup(Location(region="SE-SE3")).g_per_kwh == nordic["SE3"]["emission_factor"]
    assert chain.lookup(Location(region="europe-west1")).g_per_kwh == gcp["europe-west1"]


def test_a_country_keeps_carbontrackers_figure(chain: IntensityChain) -> None:
    from carbon_node.engine.intensity import OfflineTable

    spain = OfflineTable().country("ES")
    assert spain is not None
    answer = chain.lookup(Location(region="Madrid, Spain"))
    assert (answer.g_per_kwh, answer.source, answer.year) == (spain.g_per_kwh, "offline_table", spain.year)


def test_the_packaged_files_are_those_their_sources_name() -> None:
    for name, origin in sources()["files"].items():
        assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == origin["sha256"], name


def test_the_city_keys_are_folded_as_the_resolver_folds() -> None:
    for line in data_text("cities.tsv").splitlines()[1:2000]:
        name, key, *_ = line.split("\t")
        assert key == fold(name), name


def test_a_continent_breaks_the_tie_between_cities_of_one_name(places: PlaceIntensity) -> None:
    assert places.lookup(Location(region="Valencia", continent="Europe")).zone == "ES"  # type: ignore[union-attr]
    assert places.lookup(Location(region="Valencia, Venezuela")).zone == "VE"  # type: ignore[union-attr]


def test_a_lookup_costs_well_under_a_millisecond_once_a_text_was_read(places: PlaceIntensity) -> None:
    texts = [text for text, *_ in corpus()]
    for text in texts:
        places.lookup(Location(region=text))
    started = time.perf_counter()
    for _ in range(10):
        for text in texts:
            places.lookup(Location(region=text))
    per_lookup_s = (time.perf_counter() - started) / (10 * len(texts))
    assert per_lookup_s < 0.0001


def test_a_lookup_before_the_data_is_loaded_waits_for_it() -> None:
    source = PlaceIntensity(start=False)
    answer = source.lookup(Location(region="Texas"))
    assert answer is not None and answer.zone == "US-TX"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Côte d'Ivoire", "cote divoire"),
        ("  São   Paulo ", "sao paulo"),
        ("Île-de-France", "ile de france"),
        ("Straße", "strasse"),
        ("日本", "日本"),
    ],
)
def test_fold_drops_case_accents_apostrophes_and_punctuation(text: str, key: str) -> None:
    assert fold(text) == key


def test_parts_split_on_separators_and_names_have_their_iso_variants() -> None:
    assert split_parts("Paris, TX / USA") == ["paris", "tx", "usa"]
    assert name_variants("Korea, Republic of") == ["Korea, Republic of", "Republic of Korea", "Korea"]
    assert name_variants("Catalunya [Cataluña]")[:3] == ["Catalunya [Cataluña]", "Catalunya", "Cataluña"]


@pytest.mark.parametrize(
    ("a", "b", "distance"), [("germany", "germny", 1), ("california", "califronia", 1), ("spain", "spain", 0), ("abc", "xyz", 2)]
)
def test_edit_distance_counts_a_transposition_as_one_and_stops_past_its_limit(a: str, b: str, distance: int) -> None:
    assert edit_distance(a, b, 1) == distance


def _full_osa_distance(a: str, b: str) -> int:
    """The textbook table (every cell, nothing cut): what the banded, trimmed one must agree with."""
    table = [[i + j if i == 0 or j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                table[i][j] = min(table[i][j], table[i - 2][j - 2] + 1)
    return table[-1][-1]


def _typo(rng: random.Random, text: str, alphabet: str) -> str:
    letters = list(text)
    for _ in range(rng.randint(0, 3)):
        at = rng.randint(0, max(0, len(letters) - 1))
        edit = rng.choice("sidt")
        if edit == "s" and letters:
            letters[at] = rng.choice(alphabet)
        elif edit == "i":
            letters.insert(at, rng.choice(alphabet))
        elif edit == "d" and letters:
            del letters[at]
        elif edit == "t" and at < len(letters) - 1:
            letters[at], letters[at + 1] = letters[at + 1], letters[at]
    return "".join(letters)


def test_edit_distance_and_the_letter_mask_bound_agree_with_the_full_table_on_random_typos() -> None:
    rng = random.Random(7)
    for n in range(4000):
        alphabet = "abc" if n % 2 else "abcdefgh "  # few letters: many shared beginnings, ends and transpositions
        a = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
        b = _typo(rng, a, alphabet)
        full = _full_osa_distance(a, b)
        for limit in (0, 1, 2, 3):
            assert edit_distance(a, b, limit) == min(full, limit + 1), (a, b, limit)
        # The typo index skips a key when the mask differs in more than two bits per allowed edit.
        assert (letter_mask(a) ^ letter_mask(b)).bit_count() <= 2 * full, (a, b)
