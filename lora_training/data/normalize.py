"""Text normalisation shared by every metric (and the trainer's evals), so that scores differ only
where words differ, and by the leak checks (`data/overlap.py`, `synth --exclude`), so that "the
same sentence" means the same thing when data is kept apart as when it is scored. It lives in the
data layer because the data stages need it and sit below evaluation.

Three strategies, chosen by name from `NORMALIZERS`:

- ``jargon`` (`normalize_text`): the default for WER, CER, term recall and symbol accuracy. It
  forgives case (ALL CAPS == lower case), unicode variants, sentence punctuation at a token's
  edges, and digits vs number words ("one to zero" == "1 to 0"), but keeps every symbol inside
  a token (``print()``, ``!=``, ``@docs/plan.md``, ``localhost:8080``, ``C++``, ``~/.config/``)
  and a symbol dictated on its own (``?``, ``/``, ``@``), because "@" heard as "at" or "WER" as
  "where" is exactly the error this toolkit exists to fix. Whisper's English normaliser is
  deliberately not used: it turns ``@ # / _ -`` into spaces.
- ``safety`` (`normalize_for_safety`): for the general-domain safety WER ("did the adapter damage
  ordinary English?"). It additionally ignores apostrophes and hyphens, so formatting choices
  are not counted as damage.
- ``exact``: case and punctuation as written (only unicode form and whitespace are normalised),
  for users whose output must match character for character.

Number words become digits through text2num's `alpha2digit` (a kept library, the same call for
every strategy that converts): "twenty five" -> "25", "one hundred and five" -> "105",
"first" -> "1st", "two point five" -> "2.5". Years read in pairs stay apart ("nineteen eighty
four" -> "19 84"), on both sides alike.
"""

from __future__ import annotations

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
        "\u2013": " ", "\u2014": " ", "\u2015": " ", "\u2026": "...",
    }
)
# Digit grouping: "1,000" and "1000" are the same number.
_DIGIT_GROUPS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
# Sentence punctuation that may close a token ("done.", "fine!", "Note:", "users'") ...
_CLOSING = set(".,;:!?\"'")
# ... or open it ("'quoted", "\"hello"); a leading "." stays (".env", "./run.sh").
_OPENING = set("\"'")
_BRACKETS = {")": "(", "]": "[", "}": "{"}
_CLOSERS = {opener: closer for closer, opener in _BRACKETS.items()}
# A token made only of these is sentence punctuation ("...", " - ", a stray quote), not a symbol.
_PUNCTUATION_ONLY = set(".,;\"'-")
# Safety: "don't" == "dont", "well-known" == "well known".
_SAFETY = re.compile(r"'|-")


def _balanced(text: str, opener: str, closer: str) -> bool:
    depth = 0
    for c in text:
        depth += (c == opener) - (c == closer)
        if depth < 0:
            return False
    return depth == 0


def _strip_token(token: str) -> str:
    """Sentence punctuation off a token's edges; symbols that belong to it stay.

    A closing bracket goes only when it has no partner inside the token ("(really)" -> "really",
    "print()" stays, "f(x))" -> "f(x)"); a token with no letter or digit is a dictated symbol
    ("?", "/", "!=") and stays whole, unless it is only sentence punctuation ("...", "-").
    """
    if all(c in _PUNCTUATION_ONLY for c in token):
        return ""
    if not any(c.isalnum() for c in token):
        return token
    while True:
        before = token
        if token[-1] in _CLOSING:
            token = token[:-1]
        elif token[-1] in _BRACKETS:
            opener, closer = _BRACKETS[token[-1]], token[-1]
            if token[0] == opener and _balanced(token[1:-1], opener, closer):
                token = token[1:-1]
            elif token.count(closer) > token.count(opener):
                token = token[:-1]
        if token and token[0] in _OPENING:
            token = token[1:]
        elif token and token[0] in _CLOSERS and token.count(token[0]) > token.count(_CLOSERS[token[0]]):
            token = token[1:]
        if not token or token == before or not any(c.isalnum() for c in token):
            return token


def _digits(text: str) -> str:
    from text_to_num import alpha2digit

    # threshold=0: every number word converts, "one" included, so both sides always agree.
    return alpha2digit(text, "en", threshold=0) if text else text


def normalize_text(text: str) -> str:
    """Jargon-preserving normalisation: case, unicode, edge punctuation and number words only."""
    text = unicodedata.normalize("NFKC", text).translate(_CHAR_MAP).casefold()
    tokens = (_strip_token(t) for t in _DIGIT_GROUPS.sub("", text).split())
    return " ".join(_digits(" ".join(t for t in tokens if t)).split())


def normalize_for_safety(text: str) -> str:
    """`normalize_text`, plus apostrophes dropped and hyphens as spaces: formatting, not damage."""
    return " ".join(_digits(_SAFETY.sub(lambda m: "" if m.group() == "'" else " ", normalize_text(text))).split())


def normalize_exact(text: str) -> str:
    """Case and punctuation as written; only the unicode form and whitespace are normalised."""
    return " ".join(unicodedata.normalize("NFC", text).split())


NORMALIZERS: dict[str, Callable[[str], str]] = {
    "jargon": normalize_text,
    "safety": normalize_for_safety,
    "exact": normalize_exact,
}


def get_normalizer(name: str) -> Callable[[str], str]:
    """Look a strategy up by the name stored in configs and result JSON."""
    try:
        return NORMALIZERS[name]
    except KeyError as e:
        raise ConfigError(
            f"normalizer: unknown name {name!r}, expected one of {', '.join(sorted(NORMALIZERS))}"
        ) from e
