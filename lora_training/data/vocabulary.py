"""The vocabulary lexicon: the jargon the user wants transcribed exactly, written by hand.

One term per line, `written | spoken | spoken …`:

    kubectl | cube control | kube c t l
    dev@example.com | dev at example dot com
    C# | c sharp            # trailing comment
    pytest                  # no spoken form: said as written

The written form is the label the model must produce; each spoken form is one way a person
says it (and what TTS reads). Blank lines are ignored.

Comments: a line whose first non-blank character is `#` is a comment, and so is everything
from a `#` that follows whitespace. A `#` glued to text (`C#`, `F#`) is part of the term.
Write `\\#` for a literal `#` where it would otherwise start a comment (`\\#include`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lora_training.errors import ConfigError

# A `#` at the start of the line or after whitespace, unless escaped as `\#`.
_COMMENT = re.compile(r"(?:^|(?<=\s))(?<!\\)#.*$")


class VocabularyError(ConfigError):
    """One or more vocabulary lines are invalid; all problems are gathered before raising,
    so a hand-written file is fixed in one pass rather than one error at a time."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        head = f"{len(self.problems)} vocabulary problem(s):"
        super().__init__("\n  ".join([head, *self.problems]) if len(self.problems) > 1 else self.problems[0])


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
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _COMMENT.sub("", raw).replace("\\#", "#").strip()
        if not line:
            continue
        where = f"{source}:{number}"
        parts = [part.strip() for part in line.split("|")]
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
