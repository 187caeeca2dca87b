"""Respelling vocabulary terms in training labels where two terms share a start.

Greedy decoding picks a term's first token before the term's later sounds arrive. `stdout` is one
token (`▁stdout`) and `stderr` two (`▁st·derr`): a model that hears "std..." and starts with `▁st`
has learned only one way on from there, to stderr. On the quality benchmark an adapter wrote
`stderr` for "std out" that way (docs/personalized/quality_benchmark.md).

So where a term can also be spelled from another term's first token (`▁st·d·out`, the same text;
`evaluation/biasing.shared_starts`), some of its occurrences in the training labels are spelled
so: the model learns to go on from the shared start to whichever term it hears, and keyterm
biasing continues the same paths. Only such shared starts are used: spelling every term in pieces
splits what the model learns of a rare term across spellings (on the quality benchmark it cost
unseen-term recall). Which occurrences are respelled is drawn per epoch from the run's seed
(training/data_order.py), so a resumed run spells them as the uninterrupted one did.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from lora_training.evaluation.biasing import shared_starts, term_sequences
from lora_training.evaluation.metrics import terms_regex


@dataclass(frozen=True)
class Respelling:
    """Label positions [start, end) hold one term's tokens; `variants` spell the same text otherwise."""

    start: int
    end: int
    variants: tuple[tuple[int, ...], ...]


class Respeller:
    """Finds a transcript's vocabulary terms that have shared starts, and where their tokens are."""

    def __init__(self, tokenizer, terms: Iterable[str]):
        terms = sorted({t for t in terms if t.strip()})
        self.tokenizer = tokenizer
        self.pattern = terms_regex(terms)
        self.variants = {s: tuple(v) for s, v in shared_starts(tokenizer, term_sequences(tokenizer, terms)).items() if v}

    def respellings(self, text: str) -> tuple[Respelling, ...]:
        """The terms of `text` with shared starts whose tokens line up with the term exactly (a term
        whose tokens merge with the text around it is left alone)."""
        if self.pattern is None or not self.variants:
            return ()
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = encoded.input_ids, encoded.offset_mapping
        out = []
        for match in self.pattern.finditer(text):
            span = _token_span(offsets, text, match.start(), match.end())
            variants = self.variants.get(tuple(ids[span[0]:span[1]])) if span else None
            if variants:
                out.append(Respelling(span[0], span[1], variants))
        return tuple(out)


def respeller_for(tokenizer, share: float, vocabulary: list[str] | None, utterances) -> Respeller | None:
    """The run's Respeller over its vocabulary and its rows' listed terms; None when off or without terms."""
    terms = {*(vocabulary or []), *(t for u in utterances for t in (u.terms or []))}
    return Respeller(tokenizer, terms) if share > 0 and terms else None


def _token_span(offsets: Sequence[tuple[int, int]], text: str, start: int, end: int) -> tuple[int, int] | None:
    """Tokens [i, j) covering exactly the characters [start, end) (a word-start token may also cover
    the space before `start`), or None when a token crosses either end."""
    first = next((i for i, (a, b) in enumerate(offsets) if b > start), None)
    if first is None:
        return None
    a = offsets[first][0]
    if not (a == start or (a == start - 1 and text[a] == " ")):
        return None
    for j in range(first, len(offsets)):
        if offsets[j][1] == end:
            return first, j + 1
        if offsets[j][1] > end:
            return None
    return None


def respelled(labels: Sequence[int], respellings: Sequence[Respelling], share: float, rng: random.Random) -> list[int]:
    """`labels` with each respellable term, with probability `share`, spelled by one of its variants."""
    out, last = [], 0
    for r in respellings:
        if rng.random() < share:
            out += [*labels[last:r.start], *rng.choice(r.variants)]
            last = r.end
    return [*out, *labels[last:]] if out else list(labels)


def respell_examples(examples, share: float, rng: random.Random) -> list:
    """Each Example (training/collate.py) with its labels respelled by `respelled`; untouched at share 0."""
    if share <= 0:
        return list(examples)
    return [replace(e, labels=respelled(e.labels, e.respellings, share, rng)) if e.respellings else e
            for e in examples]
