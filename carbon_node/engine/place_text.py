"""Place text as the resolver compares it: one folded key per way of writing a name, the parts of a
"City, Region, Country" text, and a bounded edit distance for typos.

Pure functions of strings, no data. The same :func:`fold` makes the index keys and the lookup keys,
so "Côte d'Ivoire", "cote d'ivoire" and "COTE D'IVOIRE" are one key (``cote divoire``).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["edit_distance", "fold", "name_variants", "split_parts", "split_words"]

# Letters that do not decompose (sharp s, ae, oe, o and l with stroke, eth, thorn, dotless i), and the
# apostrophes people type (straight, right single quote, grave, modifier letters, acute), by code point.
_LETTERS = str.maketrans(
    {
        "\u00df": "ss",
        "\u00e6": "ae",
        "\u0153": "oe",
        "\u00f8": "o",
        "\u0142": "l",
        "\u0111": "d",
        "\u00f0": "d",
        "\u00fe": "th",
        "\u0131": "i",
    }
)
_APOSTROPHES = re.compile("['\u2019`\u02bb\u02bc\u00b4]")
_NOT_WORD = re.compile(r"[^\w]+|_")
_PART_SEPARATORS = re.compile(r"[,;/|()\[\]]|\s+-\s+")
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
"""Combining marks that Latin, Greek and Cyrillic letters decompose into (accents, cedillas, ...)."""


def fold(text: str) -> str:
    """Lower case, accents and apostrophes dropped, any other punctuation a space, spaces collapsed.

    Letters that do not decompose (ß, æ, ø, ł, ...) get their usual Latin spelling; scripts other
    than Latin are kept as they are (a Japanese name stays a Japanese key).
    """
    text = text.casefold()
    if not text.isascii():
        text = _COMBINING.sub("", unicodedata.normalize("NFKD", text.translate(_LETTERS)))
    text = _APOSTROPHES.sub("", text.replace("&", " and "))
    return " ".join(_NOT_WORD.sub(" ", text).split())


def split_parts(text: str) -> list[str]:
    """The folded parts of a text between separators (commas, semicolons, slashes, bars, brackets,
    a spaced dash): "Madrid, Spain" -> ["madrid", "spain"]. Empty parts are dropped."""
    return [key for key in (fold(part) for part in _PART_SEPARATORS.split(text)) if key]


def split_words(key: str) -> list[str]:
    """The words of a folded key."""
    return key.split(" ") if key else []


def name_variants(name: str) -> list[str]:
    """The ways an ISO name is written: "Korea, Republic of" -> also "Republic of Korea" and "Korea";
    "Catalunya [Cataluña]" -> "Catalunya" and "Cataluña"; "Madrid, Comunidad de" -> "Comunidad de Madrid"
    and "Madrid"; "Valencia / València" -> each. The name itself comes first."""
    variants = [name]
    bracket = re.match(r"^(.*?)\s*\[(.*?)\]\s*$", name)
    if bracket:
        variants += [bracket.group(1), bracket.group(2)]
    if " / " in name:  # "Valencia / València": two languages
        variants += name.split(" / ")
    for variant in list(variants):
        head, sep, tail = variant.partition(", ")
        if sep and tail:
            variants += [f"{tail} {head}", head]
    return list(dict.fromkeys(v.strip() for v in variants if v.strip()))


def letter_mask(text: str) -> int:
    """The letters of ``text`` as bits (a character's code modulo 61: two characters may share a bit). The
    bits two texts differ in are at most the letters one has and the other lacks, so at most two per edit:
    a bound that :func:`edit_distance` need not be called to check."""
    mask = 0
    for character in set(text):
        mask |= 1 << (ord(character) % 61)
    return mask


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance (insertions, deletions, substitutions, adjacent
    transpositions) between ``a`` and ``b``, or ``limit + 1`` as soon as it must exceed ``limit``.

    The shared beginning and end are cut first (they cost nothing), and only the cells within
    ``limit`` of the diagonal are computed: a cell farther out is already more than ``limit``."""
    start = 0
    while start < len(a) and start < len(b) and a[start] == b[start]:
        start += 1
    end_a, end_b = len(a), len(b)
    while end_a > start and end_b > start and a[end_a - 1] == b[end_b - 1]:
        end_a, end_b = end_a - 1, end_b - 1
    a, b = a[start:end_a], b[start:end_b]
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    if not a or not b:
        return max(len(a), len(b))
    over = limit + 1
    previous2: list[int] = []
    previous = [j if j <= limit else over for j in range(len(b) + 1)]
    for i, ca in enumerate(a, 1):
        low, high = max(1, i - limit), min(len(b), i + limit)
        current = [over] * (len(b) + 1)
        current[0] = i if i <= limit else over
        for j in range(low, high + 1):
            cb = b[j - 1]
            value = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                value = min(value, previous2[j - 2] + 1)
            current[j] = min(value, over)
        if min(current[low - 1 : high + 1]) > limit:
            return over
        previous2, previous = previous, current
    return previous[-1] if previous[-1] <= limit else over
