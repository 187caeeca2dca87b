"""Text normalisation shared by every metric, so that scores differ only where words differ.

Two strategies, chosen by name from `NORMALIZERS`:

- ``jargon`` (`normalize_text`): the default for WER, CER and symbol accuracy. It forgives
  case, unicode variants and sentence punctuation, but keeps every symbol inside a token
  (``dev@example.com``, ``__init__.py``, ``v1.2``, ``c++``, ``--force``, a lone ``@``), because
  "@" heard as "at" or "WER" as "where" is exactly the error this toolkit exists to fix.
  Whisper's English normaliser is deliberately not used: it turns ``@ # / _ -`` into spaces.
- ``safety`` (`normalize_for_safety`): for the general-domain safety WER, where the question
  is "did the adapter damage ordinary English?". It additionally treats spelled numbers as
  digits and ignores apostrophes and hyphens, so formatting choices are not counted as damage.
"""

import re
import unicodedata
from collections.abc import Callable

from lora_training.errors import ConfigError

# Unicode look-alikes folded before anything else. Hyphen-like marks become "-" (they can be
# part of a flag or a compound); en and em dashes are sentence punctuation and become spaces.
_CHAR_MAP = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
        "\u00ab": '"', "\u00bb": '"', "`": '"',
        "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2212": "-",
        "\u2013": " ", "\u2014": " ", "\u2015": " ",
    }
)

# (pattern, replacement) applied in order after case folding. A token is a run of non-space
# characters; "edge" means its first or last characters.
_PUNCTUATION_STEPS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Digit grouping: "1,000" and "1000" are the same number.
    (re.compile(r"(?<=\d),(?=\d{3}(?!\d))"), ""),
    # Sentence punctuation that is never part of a term: removed wherever it appears.
    (re.compile(r'[,;!?"()]'), " "),
    # Opening quotes at a token's start ("'quoted'"); a leading "." stays (".env").
    (re.compile(r"(?<!\S)'+"), ""),
    # Full stops, closing quotes and colons at a token's end ("done.", "users'", "Note:");
    # inside a token they stay ("v1.2", "don't", "std::vector", "localhost:8080").
    (re.compile(r"[.':]+(?!\S)"), ""),
    # A dash standing alone is a sentence dash, not a symbol ("wait - what").
    (re.compile(r"(?<!\S)-+(?!\S)"), " "),
)

# Extra tolerance for the safety WER: "don't" == "dont", "well-known" == "well known".
_SAFETY_STEPS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"'"), ""),
    (re.compile(r"-"), " "),
)

_ONES = {
    word: value
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen".split()
    )
}
_TENS = {
    word: 10 * value
    for value, word in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)
}


def _apply(text: str, steps: tuple[tuple[re.Pattern[str], str], ...]) -> str:
    for pattern, replacement in steps:
        text = pattern.sub(replacement, text)
    return text


def normalize_text(text: str) -> str:
    """Jargon-preserving normalisation: case, unicode and sentence punctuation only.

    NFKC, curly quotes made straight, case folded, `, ; ! ? " ( )` removed, trailing `. ' :`
    and leading `'` stripped from tokens, lone dashes dropped, whitespace collapsed. Symbols
    inside tokens are kept so "@" vs "at" and "C++" vs "C plus plus" count as errors.
    """
    text = unicodedata.normalize("NFKC", text).translate(_CHAR_MAP).casefold()
    return " ".join(_apply(text, _PUNCTUATION_STEPS).split())


def _below_hundred(words: list[str], i: int) -> tuple[int, int] | None:
    if i >= len(words):
        return None
    if words[i] in _ONES:
        return _ONES[words[i]], i + 1
    if words[i] in _TENS:
        value = _TENS[words[i]]
        if i + 1 < len(words) and 1 <= _ONES.get(words[i + 1], 0) <= 9:
            return value + _ONES[words[i + 1]], i + 2
        return value, i + 1
    return None


def _with_remainder(
    value: int, words: list[str], j: int, parse: Callable[[list[str], int], tuple[int, int] | None]
) -> tuple[int, int]:
    """Add an optional "[and] <smaller number>" after "hundred"/"thousand"; "and" alone stays a word."""
    k = j + 1 if j < len(words) and words[j] == "and" else j
    rest = parse(words, k)
    if rest is not None and rest[0] > 0:
        return value + rest[0], rest[1]
    return value, j


def _below_thousand(words: list[str], i: int) -> tuple[int, int] | None:
    parsed = _below_hundred(words, i)
    if parsed is None:
        return None
    value, j = parsed
    if 1 <= value <= 9 and j < len(words) and words[j] == "hundred":
        return _with_remainder(value * 100, words, j + 1, _below_hundred)
    return parsed


def _number(words: list[str], i: int) -> tuple[int, int] | None:
    parsed = _below_thousand(words, i)
    if parsed is None:
        return None
    value, j = parsed
    if value > 0 and j < len(words) and words[j] == "thousand":
        return _with_remainder(value * 1000, words, j + 1, _below_thousand)
    return parsed


def _spelled_numbers_to_digits(text: str) -> str:
    words = text.split()
    out: list[str] = []
    i = 0
    while i < len(words):
        parsed = _number(words, i)
        if parsed is None:
            out.append(words[i])
            i += 1
        else:
            out.append(str(parsed[0]))
            i = parsed[1]
    return " ".join(out)


def normalize_for_safety(text: str) -> str:
    """`normalize_text` plus tolerance for formatting choices that are not recognition errors.

    Apostrophes are dropped ("don't" == "dont") and hyphens become spaces ("well-known" ==
    "well known", "twenty-five" == "twenty five"). Spelled cardinal numbers from 0 to 999999
    become digits, greedily: "twenty five" -> "25", "one hundred and five" -> "105",
    "twenty five thousand three hundred" -> "25300", "one two three" -> "1 2 3". Not handled:
    ordinals ("first"), decimals ("two point five"), "a hundred", millions, years read in
    pairs ("nineteen eighty four" -> "19 84") and mixed forms ("25 thousand").
    """
    return _spelled_numbers_to_digits(_apply(normalize_text(text), _SAFETY_STEPS))


NORMALIZERS: dict[str, Callable[[str], str]] = {
    "jargon": normalize_text,
    "safety": normalize_for_safety,
}


def get_normalizer(name: str) -> Callable[[str], str]:
    """Look a strategy up by the name stored in configs and result JSON."""
    try:
        return NORMALIZERS[name]
    except KeyError as e:
        raise ConfigError(
            f"normalizer: unknown name {name!r}, expected one of {', '.join(sorted(NORMALIZERS))}"
        ) from e
