"""Dictation-style sentences that cover every vocabulary term, for TTS to read.

The user's own recordings cover part of their jargon; these sentences make sure every term is
heard at least `min_per_term` times, in different templates, slot positions and company, so the
adapter learns the term rather than one sentence around it.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from lora_training.data.vocabulary import Vocabulary
from lora_training.errors import ConfigError


@dataclass
class GeneratedSentence:
    text: str
    spoken: str
    terms: list[str]
    template: str


@dataclass(frozen=True)
class Template:
    id: str
    text: str

    @property
    def slots(self) -> int:
        return len(set(_TERM_SLOT.findall(self.text)))


# Term slots are {a} {b} {c}; {name} {num} {day} are plain fillers for variety. Endings follow
# the genre (commit messages and chat often have no final punctuation). No slot touches another
# slot or jargon in the filler text, so a term can never fuse with its neighbour into a longer one.
_CATEGORIES: dict[str, list[str]] = {
    "shell": [
        "Run {a} and paste the output here.",
        "Can you try {a} with the verbose flag?",
        "First install {a}, then run {b} again.",
        "Pipe the output of {a} into {b} and search it for errors.",
        "{a} keeps timing out when I call it from {b}",
        "Set up {a}, {b} and {c} on the new laptop.",
        "The script calls {a} before {b} but after {c}.",
    ],
    "review": [
        "Why do we need {a} here?",
        "Nit: rename this so it matches {a}.",
        "I'd rather use {a} than {b} for this.",
        "This breaks if {a} is missing, can we guard against it?",
        "Looks good, but please add a test for {a} and {b}.",
        "We should move {a} out of {b} and into {c}.",
        "Does {a} still work with {b} after this change?",
    ],
    "chat": [
        "hey, is {a} down for you too?",
        "lgtm, ship it once {a} is green",
        "quick question about {a} and {b}",
        "{a} is acting up again, anyone else seeing this?",
        "ok so {a}, {b} and {c} all need bumping",
        "Can someone pair with me on {a} after lunch?",
        "thanks {name}, the {a} thing is fixed now!",
    ],
    "email": [
        "Hi {name}, please email {a} about the {b} numbers.",
        "Hi {name}, attached are my notes on {a}.",
        "Thanks for the update on {a}, I will look at {b} by {day}.",
        "Could you send me the latest {a} and {b} settings before {day}?",
        "Following up on {a}: we decided to keep {b} and drop {c}.",
        "Let me know if {a} gives you any trouble.",
    ],
    "commit": [
        "fix {a} crash when {b} is empty",
        "add support for {a}",
        "refactor {a} to use {b}",
        "bump {a} to version {num}",
        "remove {a}, {b} and {c} from the build",
        "docs: explain {a} in the quick start",
    ],
    "standup": [
        "Yesterday I worked on {a}, today I'm on {b}.",
        "I'm blocked on {a} until {name} sorts out {b}.",
        "Today: finish {a}, review {b}, and look into {c}.",
        "Spent most of the morning debugging {a}.",
        "No blockers, {a} should land by {day}.",
    ],
    "docs": [
        "This guide shows how to configure {a} with {b}.",
        "Before you begin, make sure {a} is installed.",
        "{a} reads its settings from {b}, see the section on {c}.",
        "Note that {a} is not the same as {b}.",
        "For more details, see the page about {a}.",
        "The default is {num} seconds, which you can change in {a}.",
    ],
    "prose": [
        "Let's compare {a}, {b} and {c} on the same data.",
        "We measured {a} against {b} on {num} recordings.",
        "If {a} fails, fall back to {b}, otherwise log it with {c}.",
        "Where did we put the notes about {a}?",
        "{a} or {b}, which one should we pick?",
        "Remember to check {a} before the demo on {day}!",
    ],
}

TEMPLATES: list[Template] = [
    Template(f"{category}-{index:02d}", text)
    for category, texts in _CATEGORIES.items()
    for index, text in enumerate(texts, start=1)
]

_FILLERS: dict[str, list[str]] = {
    "name": ["Priya", "Marco", "Aisha", "Tom", "Lena", "Kenji", "Sam", "Olga"],
    "num": ["2", "3", "5", "10", "12", "30", "42", "100"],
    "day": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "tomorrow", "end of day"],
}

_TERM_SLOT = re.compile(r"\{([abc])\}")
_ANY_SLOT = re.compile(r"\{(\w+)\}")
_MAX_SLOTS = 3


def speak(text: str, vocabulary: Vocabulary, rng: random.Random) -> tuple[str, list[str]]:
    """Replace every written term in `text` by one of its spoken forms, chosen with `rng`.

    Matching is case-sensitive and longest first (`dev@example.com` before `@`). A term edge
    that is a word character must sit on a token boundary, so `API` does not match inside
    `APIs`, while `@` matches inside `user@host` (read "user at host"). Returns the spoken text
    and the written forms found, each once, in order of first appearance.
    """
    found: list[str] = []

    def replace(match: re.Match[str]) -> str:
        written = match.group(0)
        if written not in found:
            found.append(written)
        spoken = rng.choice(vocabulary.lookup(written).spoken)
        before = text[match.start() - 1] if match.start() > 0 else " "
        after = text[match.end()] if match.end() < len(text) else " "
        # `user@host` → `user at host`, not `useratHost`: keep words apart where the term was glued.
        if _is_word(before) and _is_word(spoken[0]):
            spoken = " " + spoken
        if _is_word(after) and _is_word(spoken[-1]):
            spoken += " "
        return spoken

    return _term_pattern(tuple(vocabulary.written_forms())).sub(replace, text), found


# Recording prompts and synthetic sentences come from disjoint template families, so no synthetic
# sentence can ever repeat a prompt the user read (which is eval material after the split): a leak
# excluded by construction, whatever the seeds and counts.
STREAMS = {"record": TEMPLATES[0::2], "synth": TEMPLATES[1::2]}


def generate_sentences(
    vocabulary: Vocabulary, count: int, *, seed: int = 0, min_per_term: int = 3, stream: str = "synth",
    reject: Callable[[str], bool] | None = None,
) -> list[GeneratedSentence]:
    """`count` sentences in which every term appears in at least `min_per_term` of them.

    Each sentence takes the terms used least so far (ties broken towards terms not yet seen in
    that template, then at random), so coverage comes first and usage stays even afterwards.
    A sentence gets more term slots only when the sentences left could not otherwise cover
    what is still missing, which keeps the one-term templates in play whenever count allows.
    `reject(text)` refuses a rendered sentence (one of a held-out manifest, one holding a held-out
    term): the next template replaces it, so the count and the coverage stay as asked, and a
    reject that refuses nothing leaves the sentences exactly as without it.
    """
    written = vocabulary.written_forms()
    max_slots = min(_MAX_SLOTS, len(written))
    if min_per_term < 0:
        raise ConfigError(f"min_per_term: must not be negative, expected 0 or more, got {min_per_term}")
    minimum = max(1, math.ceil(len(written) * min_per_term / max_slots))
    if count < minimum:
        raise ConfigError(
            f"count: too few sentences to cover {len(written)} terms {min_per_term} times each "
            f"with up to {max_slots} terms per sentence, expected at least {minimum}, got {count}"
        )
    if stream not in STREAMS:
        raise ConfigError(f"stream: unknown {stream!r}, expected one of {', '.join(STREAMS)}")
    templates = STREAMS[stream]
    rng = random.Random(f"{stream}/{seed}")
    uses = {term: 0 for term in written}
    templates_seen: dict[str, set[str]] = {term: set() for term in written}
    template_uses = {template.id: 0 for template in templates}
    sentences = []
    for index in range(count):
        need = _slots_needed(uses, min_per_term, count - index, max_slots)
        eligible = [t for t in templates if need <= t.slots <= max_slots]
        eligible.sort(key=lambda t: (template_uses[t.id], rng.random()))
        sentence = _first_fitting(eligible, vocabulary, uses, templates_seen, rng, reject)
        template_uses[sentence.template] += 1
        for term in sentence.terms:
            uses[term] += 1
            templates_seen[term].add(sentence.template)
        sentences.append(sentence)
    return sentences


def sentences_from_file(path: str | Path, vocabulary: Vocabulary, *, seed: int = 0) -> list[GeneratedSentence]:
    """The user's own sentences, one per line (blank lines skipped), spoken the same way as
    generated ones; `template` records `file:line` so every sentence can be traced back."""
    path = Path(path)
    try:
        # "\n" only: a U+2028 inside a sentence is not the end of its line.
        lines = [line.rstrip("\r") for line in path.read_text(encoding="utf-8-sig").split("\n")]
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: sentences file not found, expected one sentence per line, got no file") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: unreadable sentences, expected UTF-8 text, got {e.reason} at byte {e.start}") from e
    rng = random.Random(seed)
    sentences = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if text:
            spoken, terms = speak(text, vocabulary, rng)
            sentences.append(GeneratedSentence(text=text, spoken=spoken, terms=terms, template=f"{path.name}:{number}"))
    if not sentences:
        raise ConfigError(f"{path}: no sentences, expected one sentence per line, got only blank lines")
    return sentences


def _slots_needed(uses: dict[str, int], min_per_term: int, sentences_left: int, max_slots: int) -> int:
    """The fewest term slots this sentence may have and still leave coverage reachable.

    Two things must stay true for the sentences left: the missing uses fit in their slots, and
    no term needs more uses than there are sentences (a term appears once per sentence). Taking
    the most-missing terms first with at least this many slots keeps both true to the end.
    """
    missing = [min_per_term - n for n in uses.values() if n < min_per_term]
    for_total = sum(missing) - max_slots * (sentences_left - 1)
    for_urgent = sum(1 for m in missing if m >= sentences_left)
    return max(1, for_total, for_urgent)


def _first_fitting(
    templates: list[Template],
    vocabulary: Vocabulary,
    uses: dict[str, int],
    templates_seen: dict[str, set[str]],
    rng: random.Random,
    reject: Callable[[str], bool] | None = None,
) -> GeneratedSentence:
    """The first template whose chosen terms all survive as themselves in the rendered text,
    and whose text `reject` does not refuse.

    A term can be swallowed when the text around it forms a longer term of the user's
    vocabulary; that sentence would not count for the term, so the next template is tried.
    """
    swallowed: list[str] = []
    for template in templates:
        ranked = sorted(uses, key=lambda term: (uses[term], template.id in templates_seen[term], rng.random()))
        chosen = ranked[: template.slots]
        text = _render(template, chosen, rng)
        if reject is not None and reject(text):
            continue
        spoken, terms = speak(text, vocabulary, rng)
        swallowed = [term for term in chosen if term not in terms]
        if not swallowed:
            return GeneratedSentence(text=text, spoken=spoken, terms=terms, template=template.id)
    if not swallowed:  # every template's sentence was refused
        raise ConfigError(
            f"{vocabulary.path}: every template gives a refused sentence for {', '.join(chosen)}, expected one "
            f"outside the --exclude manifests and free of held-out terms, got {text!r} last"
        )
    term = vocabulary.lookup(swallowed[0])
    raise ConfigError(
        f"{vocabulary.path}:{term.line}: term {term.written!r} merges with the words around it into "
        f"a longer term in every template, expected it to stand on its own, got {text!r}"
    )


def _render(template: Template, terms: list[str], rng: random.Random) -> str:
    """Fill term slots in a random order, so each term moves between slot positions."""
    shuffled = rng.sample(terms, len(terms))
    values = dict(zip("abc", shuffled))
    pieces = _ANY_SLOT.split(template.text)
    out = [pieces[0]]
    for slot, literal in zip(pieces[1::2], pieces[2::2]):
        value = values[slot] if slot in values else rng.choice(_FILLERS[slot])
        # A term such as `etc.` at the end of a sentence must not leave `etc..`.
        if value.endswith(".") and literal.startswith("."):
            literal = literal[1:]
        out.extend([value, literal])
    return "".join(out)


@lru_cache(maxsize=16)
def _term_pattern(written_forms: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = []
    for written in sorted(written_forms, key=len, reverse=True):
        start = r"(?<!\w)" if _is_word(written[0]) else ""
        end = r"(?!\w)" if _is_word(written[-1]) else ""
        alternatives.append(start + re.escape(written) + end)
    return re.compile("|".join(alternatives))


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"
