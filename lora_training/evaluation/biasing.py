"""Keyterm biasing at decode time: nudge greedy decoding toward the vocabulary's written forms.

Moonshine's on-device runtime offers keyterms only for its streaming models; this gives the
non-streaming tiny/base models the same help, with or without an adapter and without training.
Every written form is tokenized twice, at a word start and glued to the text before it (BPE
tokens differ there: "▁py·test" after a space, "py·test" after "("), and each token sequence goes
into one prefix trie over token ids, with its shared starts (`shared_starts`: the term spelled
from another term's first token, as the trainer also spells it). At every decoder step a row's
last tokens match some trie nodes (a term may start at any step, so every suffix shorter than
the longest term is tried), and each token that takes a match to depth d gets the runtime's bonus
`boost * (1 + ln d)` added to its logit: starting a term earns `boost`, its 2nd token 1.69·boost,
its 3rd 2.10·boost, so a term once begun tends to be finished. Greedy argmax then picks a term
token only where it was already within the bonus of the top.

Off unless a vocabulary is given: the decoder then takes no hook at all (same tokens, same speed).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Text put before a written form to tokenize it in context; the tokens kept are those after the
# context's own. "a " sets the form at a word start; a digit glues it to the text before, since
# SentencePiece and byte-level BPE vocabularies keep digits apart from letters.
_CONTEXTS = ("a ", "1")
WORD_START = "▁"  # SentencePiece's mark of a token that starts a word


def depth_bonus(boost: float, depth: int) -> float:
    """The logit bonus of a token that takes a match to `depth` tokens (1: it starts a term)."""
    return boost * (1.0 + math.log(depth))


def term_sequences(tokenizer, written_forms: Iterable[str]) -> list[tuple[int, ...]]:
    """Each written form's token ids at a word start and glued to the text before it, without duplicates.

    A context whose own tokens the form changes (merged into it) gives no variant, never a wrong one.
    """
    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    out: dict[tuple[int, ...], None] = {}
    for form in written_forms:
        for context in _CONTEXTS:
            head, ids = encode(context.rstrip()), encode(context + form)
            if ids[: len(head)] == head and len(ids) > len(head):
                out[tuple(ids[len(head):])] = None
    return list(out)


def shorter_starts(tokenizer, sequence: Sequence[int]) -> list[tuple[int, ...]]:
    """Other token sequences of `sequence`'s text that start with a shorter token: each proper prefix
    of its first token that is itself a token (at least one letter after a word-start `▁`), then the
    rest tokenized glued (`▁stdout` → `▁s·td·out`, `▁st·d·out`, `▁std·out`). Greedy decoding may
    commit to such a start before a term's later sounds arrive (training/respell.py)."""
    pieces = tokenizer.convert_ids_to_tokens(list(sequence))
    whole, first = "".join(pieces), pieces[0]
    head = tokenizer.encode(_CONTEXTS[1], add_special_tokens=False)
    found: dict[tuple[int, ...], None] = {}
    for cut in range(2 if first.startswith(WORD_START) else 1, len(first)):
        ids = tokenizer.encode(_CONTEXTS[1] + whole[cut:].replace(WORD_START, " "), add_special_tokens=False)
        if ids[: len(head)] != head or len(ids) == len(head):
            continue
        # An unknown prefix becomes the unknown token, whose text fails the check below.
        variant = (tokenizer.convert_tokens_to_ids(first[:cut]), *ids[len(head):])
        if "".join(tokenizer.convert_ids_to_tokens(list(variant))) == whole and variant != tuple(sequence):
            found[variant] = None
    return list(found)


def shared_starts(tokenizer, sequences: Iterable[Sequence[int]]) -> dict[tuple[int, ...], list[tuple[int, ...]]]:
    """Each term sequence's shorter starts that begin with a token starting another of `sequences`:
    the paths where a decoder that began one term must still be able to finish another
    (`▁st`, stderr's first token, then `d·out`: stdout)."""
    sequences = [tuple(s) for s in sequences]
    starts = {s[0] for s in sequences}
    return {s: [v for v in shorter_starts(tokenizer, s) if v[0] in starts] for s in sequences}


@dataclass
class KeytermTrie:
    """A prefix trie over token ids: node 0 is the root, a node's depth is its number of tokens."""

    children: list[dict[int, int]] = field(default_factory=lambda: [{}])
    depth: list[int] = field(default_factory=lambda: [0])

    @classmethod
    def build(cls, sequences: Iterable[Sequence[int]]) -> KeytermTrie:
        trie = cls()
        for sequence in sequences:
            node = 0
            for token in sequence:
                if token not in trie.children[node]:
                    trie.children[node][token] = len(trie.children)
                    trie.children.append({})
                    trie.depth.append(trie.depth[node] + 1)
                node = trie.children[node][token]
        return trie

    @property
    def max_depth(self) -> int:
        return max(self.depth)

    def matches(self, history: Sequence[int]) -> list[int]:
        """The nodes below the root that a suffix of `history` reaches: the terms the row is part-way through.

        Only suffixes shorter than the longest term are tried: a longer one reaches no node with a child.
        """
        nodes = []
        for start in range(max(0, len(history) - self.max_depth + 1), len(history)):
            node = 0
            for token in history[start:]:
                node = self.children[node].get(token, -1)
                if node < 0:
                    break
            else:
                nodes.append(node)
        return nodes

    def continuations(self, history: Sequence[int], *, starts: bool = True) -> dict[int, int]:
        """{token: depth after taking it} for every token that continues a term after `history`.

        Where several matches continue with one token, the deepest counts. `starts`: include every
        term's first token (depth 1), which continues the empty match at any step.
        """
        out = {token: 1 for token in self.children[0]} if starts else {}
        for node in self.matches(history):
            for token in self.children[node]:
                out[token] = max(out.get(token, 0), self.depth[node] + 1)
        return out


class KeytermBias:
    """The decoding hook (`moonshine_ops.LogitsHook`): adds `depth_bonus(boost, depth)` to each
    token that continues a term.

    The terms' first tokens get `boost` in every row at every step, in one indexed add; only
    the few tokens that continue a partial match are added row by row, as their extra over that.
    """

    def __init__(self, trie: KeytermTrie, boost: float):
        self.trie, self.boost = trie, boost
        self._first = sorted(trie.children[0])
        self._first_set = set(self._first)
        self._first_ids: dict[Any, Any] = {}

    def __call__(self, logits, histories: list[list[int]]) -> None:
        import torch

        first = self._first_ids.get(logits.device)
        if first is None:
            first = self._first_ids[logits.device] = torch.tensor(self._first, dtype=torch.long, device=logits.device)
        logits[:, first] += self.boost
        rows, tokens, extra = [], [], []
        for row, history in enumerate(histories):
            for token, depth in self.trie.continuations(history, starts=False).items():
                rows.append(row)
                tokens.append(token)
                extra.append(depth_bonus(self.boost, depth) - (self.boost if token in self._first_set else 0.0))
        if rows:
            logits[rows, tokens] += torch.tensor(extra, dtype=logits.dtype, device=logits.device)


def keyterm_bias(tokenizer, written_forms: list[str], boost: float) -> KeytermBias | None:
    """The hook for `written_forms`; None when it would add nothing (no forms, boost 0), so the
    decoder runs unhooked."""
    if not written_forms or boost == 0:
        return None
    sequences = term_sequences(tokenizer, written_forms)
    # Shared starts continue from tokens that already start a term (▁st of stderr also goes on to
    # d·out, stdout), as the trainer spells them (training/respell.py): no ordinary word gains a bonus.
    shared = [v for variants in shared_starts(tokenizer, sequences).values() for v in variants]
    return KeytermBias(KeytermTrie.build([*sequences, *shared]), boost)

