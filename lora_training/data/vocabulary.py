"""The vocabulary lexicon: the jargon the user wants transcribed exactly, written by hand.

One term per line, `written | spoken | spoken …`:

    kubectl | cube control | kube c t l
    dev@example.com | dev at example dot com
    C# | c sharp            # trailing comment
    pytest                  # no spoken form: said as written
    ls \\| grep | ls pipe grep

The written form is the label the model must produce; each spoken form is one way a person
says it (and what TTS reads). Blank lines are ignored.

Separators: every unescaped `|` separates two forms. A `|` with text glued to both sides
(`a|b`) is an error, since it reads as much like a literal bar (a shell pipe) as a separator:
write ` | ` to separate or `\\|` for a literal bar. `\\\\` is a literal backslash; a backslash
before any other character is kept as it is (`C:\\Users`).

Comments: a line whose first non-blank character is `#` is a comment, and so is everything
from a `#` that follows whitespace. A `#` glued to text (`C#`, `F#`) is part of the term.
Write `\\#` for a literal `#` where it would otherwise start a comment (`\\#include`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from lora_training.errors import ConfigError

# Characters a backslash makes literal.
_ESCAPABLE = "\\|#"


class VocabularyError(ConfigError):
    """One or more vocabulary lines are invalid; all problems are gathered before raising,
    so a hand-written file is fixed in one pass rather than one error at a time."""

    def __init__(self, problems: list[str]):
        head = f"{len(problems)} vocabulary problem(s):"
        super().__init__("\n  ".join([head, *problems]) if len(problems) > 1 else problems[0], problems=problems)


@dataclass
class Term:
    written: str
    spoken: list[str]
    line: int


@dataclass
class Vocabulary:
    terms: list[Term]
    path: Path | str
    _by_written: dict[str, Term] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_written = {term.written: term for term in self.terms}

    def written_forms(self) -> list[str]:
        return [term.written for term in self.terms]

    def lookup(self, written: str) -> Term | None:
        """The term with exactly this written form (case-sensitive), or None."""
        return self._by_written.get(written)


def terms_in(text: str, written_forms: tuple[str, ...]) -> list[str]:
    """The written forms that occur in `text`, each once, in order of first occurrence.

    The evaluation's rule (`metrics.find_terms`): case-sensitive, a word-character edge must sit
    on a token boundary ("kubectl" is not in "kubectls", "@" is in "user@host"), and where terms
    overlap the leftmost, then the longest, wins ("kubectl apply" over "kubectl").
    """
    if not written_forms:
        return []
    return list(dict.fromkeys(m.group(0) for m in _pattern(written_forms).finditer(text)))


@lru_cache(maxsize=16)
def _pattern(written_forms: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = []
    for written in sorted(set(written_forms), key=len, reverse=True):
        start = r"(?<!\w)" if re.match(r"\w", written[0]) else ""
        end = r"(?!\w)" if re.match(r"\w", written[-1]) else ""
        alternatives.append(start + re.escape(written) + end)
    return re.compile("|".join(alternatives))


def example_vocabulary_path() -> Path:
    """A realistic developer vocabulary shipped with the package, to start from or test with."""
    return Path(__file__).with_name("example_vocabulary.txt")


def load_vocabulary(path: str | Path) -> Vocabulary:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as e:
        raise ConfigError(
            f"{path}: vocabulary file not found, expected a 'written | spoken' text file, got no file"
        ) from e
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}: unreadable vocabulary, expected UTF-8 text, got {e.reason} at byte {e.start}"
        ) from e
    return parse_vocabulary(text, source=path)


def parse_vocabulary(text: str, source: str | Path = "<string>") -> Vocabulary:
    terms: list[Term] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    # split("\n"), not splitlines(): a U+2028 in a term is not the end of its line.
    for number, raw in enumerate(text.split("\n"), start=1):
        parts, glued = _fields(raw)
        line = raw.strip()
        if parts == [""]:
            continue
        where = f"{source}:{number}"
        for left, right in glued:
            problems.append(
                f"{where}: ambiguous '|' between {left!r} and {right!r}, expected ' | ' (spaces around it) "
                f"between written and spoken forms or '\\|' for a literal bar, got {line!r}"
            )
        if glued:
            continue
        written, spoken = parts[0], parts[1:]
        if not any(parts):
            problems.append(f"{where}: '|' with nothing around it, expected 'written | spoken', got {line!r}")
            continue
        if not written:
            problems.append(f"{where}: empty written form, expected text before the first '|', got {line!r}")
        for index, alternative in enumerate(spoken, start=1):
            if not alternative:
                problems.append(
                    f"{where}: empty spoken form #{index}, expected text between '|' separators, got {line!r}"
                )
        if written in first_line:
            problems.append(
                f"{where}: duplicate written form {written!r}, expected each term once, "
                f"got it again (first on line {first_line[written]})"
            )
        elif written:
            first_line[written] = number
        terms.append(Term(written=written, spoken=spoken or [written], line=number))
    if not terms and not problems:
        problems.append(f"{source}: no terms, expected at least one 'written | spoken' line, got none")
    if problems:
        raise VocabularyError(problems)
    return Vocabulary(terms=terms, path=source)


def _fields(raw: str) -> tuple[list[str], list[tuple[str, str]]]:
    """One line's `|`-separated forms (escapes resolved, comment cut off, stripped), and the
    characters around each `|` glued to text on both sides."""
    fields: list[str] = []
    current: list[str] = []
    glued: list[tuple[str, str]] = []
    i = 0
    while i < len(raw):
        char = raw[i]
        if char == "\\" and i + 1 < len(raw) and raw[i + 1] in _ESCAPABLE:
            current.append(raw[i + 1])
            i += 2
            continue
        if char == "#" and (i == 0 or raw[i - 1].isspace()):
            break
        if char == "|":
            if 0 < i < len(raw) - 1 and not raw[i - 1].isspace() and not raw[i + 1].isspace():
                glued.append((raw[i - 1], raw[i + 1]))
            fields.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        i += 1
    fields.append("".join(current).strip())
    return fields, glued
