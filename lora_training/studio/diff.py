"""A transcript's word-level differences from its reference, as the WER counts them.

The words are the scorer's normalised words (the result's own normaliser: case, edge punctuation and
number words do not count) and the alignment is jiwer's, the one behind every WER the toolkit
reports, so a word marked here is exactly a word the WER counted as an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import jiwer

from lora_training.data.normalize import get_normalizer


@dataclass(frozen=True)
class Chunk:
    """A run of words: `equal` (hyp == ref), `insert` (hyp only), `delete` (ref only) or `substitute`."""

    kind: str
    ref: str
    hyp: str


def word_diff(ref: str, hyp: str, normalizer: str = "jargon") -> list[Chunk]:
    """The hypothesis against the reference, chunk by chunk.

    Neighbouring edits are merged into one chunk, so "kubectl" heard as "cube control" reads as one
    substitution rather than jiwer's insertion of "cube" beside a substitution of "control".
    """
    normalize = get_normalizer(normalizer)
    out = jiwer.process_words(normalize(ref), normalize(hyp))
    ref_words, hyp_words = out.references[0], out.hypotheses[0]
    chunks: list[Chunk] = []
    edit_ref: list[str] = []
    edit_hyp: list[str] = []

    def flush() -> None:
        if edit_ref or edit_hyp:
            kind = "substitute" if edit_ref and edit_hyp else "delete" if edit_ref else "insert"
            chunks.append(Chunk(kind, " ".join(edit_ref), " ".join(edit_hyp)))
            edit_ref.clear()
            edit_hyp.clear()

    for a in out.alignments[0]:
        r, h = ref_words[a.ref_start_idx:a.ref_end_idx], hyp_words[a.hyp_start_idx:a.hyp_end_idx]
        if a.type == "equal":
            flush()
            chunks.append(Chunk("equal", " ".join(r), " ".join(h)))
        else:
            edit_ref += r
            edit_hyp += h
    flush()
    return chunks
