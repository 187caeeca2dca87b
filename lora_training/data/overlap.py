"""Rows that training shares with a held-out set (eval, dev, safety): the leak that makes a score
unbelievable.

A held-out sentence or clip that also trains the adapter measures memorisation, not the
generalisation the score claims, and it creeps in without anyone deciding it: a prompt recorded
twice, a re-split, a synthetic sentence that happens to be an eval sentence, a clip copied into two
folders. A training row overlaps a held-out row when

- their texts normalise alike, with `normalize_text`, the normaliser the metrics score with:
  "Run kubectl." and "run kubectl" are one sentence to the WER, so they are one sentence here;
- or their clips hold the same samples (`audio.samples_hash`: the decoded samples, not the file
  bytes, so a copy under another name or re-encoded without loss is still the same clip).

Only clips whose header (rate, channels, frames) matches a clip on the other side are decoded, since
equal samples need equal headers: disjoint data costs one header read per clip. Headers and hashes
live for one check, keyed by the file's identity and mtime, never by its name alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Sequence

from lora_training.data.audio import audio_header, samples_hash
from lora_training.data.manifest import Utterance, load_numbered_manifest
from lora_training.data.normalize import normalize_text

# Offenders a message names; a count says how many more there are.
SHOWN = 3


@dataclass(frozen=True)
class Row:
    """One manifest line: where it is, and its utterance (audio path absolute)."""

    manifest: str
    line: int
    utt: Utterance

    @property
    def where(self) -> str:
        return f"{self.manifest}:{self.line}"


@dataclass(frozen=True)
class Overlap:
    """A training row and a held-out row that share their normalised text, their samples, or both."""

    row: Row
    held_out: Row
    same_text: bool
    same_audio: bool

    @property
    def why(self) -> str:
        return " and ".join(name for name, on in (("same text", self.same_text), ("same audio", self.same_audio)) if on)

    def describe(self) -> str:
        return f"{self.row.where} {self.why} as {self.held_out.where}"


def read_rows(paths: Iterable[str | os.PathLike]) -> list[Row]:
    """Every row of the manifests, validated as `load_manifest` validates them, with its line."""
    return [Row(str(path), line, utt) for path in paths for line, utt in load_numbered_manifest(path)]


def find_overlaps(rows: Sequence[Row], held_out: Sequence[Row]) -> list[Overlap]:
    """Every (training row, held-out row) pair that shares normalised text or samples, in training order.

    A text that normalises to nothing (punctuation only) matches nothing: it is not a sentence.
    """
    by_text: dict[str, list[int]] = {}
    for j, h in enumerate(held_out):
        if key := normalize_text(h.utt.text):
            by_text.setdefault(key, []).append(j)
    same_audio = _same_audio(rows, held_out)
    pairs = []
    for row, audio_matches in zip(rows, same_audio, strict=True):
        key = normalize_text(row.utt.text)
        text_matches = set(by_text.get(key, ())) if key else set()
        for j in sorted(text_matches | audio_matches):
            pairs.append(Overlap(row, held_out[j], j in text_matches, j in audio_matches))
    return pairs


def overlapping_rows(overlaps: Sequence[Overlap]) -> int:
    """Training rows with at least one held-out partner (a row matching two held-out rows counts once)."""
    return len({o.row.where for o in overlaps})


def describe_overlaps(overlaps: Sequence[Overlap], shown: int = SHOWN) -> str:
    """The first `shown` training rows with their first partner and why, then how many more."""
    first: dict[str, Overlap] = {}
    for o in overlaps:
        first.setdefault(o.row.where, o)
    named = "; ".join(o.describe() for o in list(first.values())[:shown])
    more = len(first) - shown
    return named + (f" (and {more} more)" if more > 0 else "")


def overlap_problem(where: str, overlaps: Sequence[Overlap], held_out: str, fix: str) -> str:
    """The one-line refusal: how many rows, the first few with file:line and why, and the way out."""
    return (f"{where}: {overlapping_rows(overlaps)} training row(s) share text or audio with {held_out}, expected "
            f"none (a held-out sentence or clip that also trains measures memorisation, not generalisation), "
            f"got {describe_overlaps(overlaps)}; {fix}")


class _Clips:
    """Headers and sample hashes, each read once per check, keyed by file identity and mtime."""

    def __init__(self) -> None:
        self._headers: dict[tuple, tuple[int, int, int]] = {}
        self._hashes: dict[tuple, str] = {}

    @staticmethod
    def _identity(path: str) -> tuple:
        st = os.stat(path)
        return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size

    def header(self, path: str) -> tuple[int, int, int]:
        key = self._identity(path)
        if key not in self._headers:
            self._headers[key] = audio_header(path)
        return self._headers[key]

    def hash(self, path: str) -> str:
        key = self._identity(path)
        if key not in self._hashes:
            self._hashes[key] = samples_hash(path)
        return self._hashes[key]


def _same_audio(rows: Sequence[Row], held_out: Sequence[Row]) -> list[set[int]]:
    """For each training row, the indexes of held-out rows whose clip holds the same samples."""
    clips = _Clips()
    held_headers = [clips.header(h.utt.audio) for h in held_out]
    row_headers = [clips.header(r.utt.audio) for r in rows]
    shared = set(held_headers) & set(row_headers)
    by_hash: dict[str, set[int]] = {}
    for j, (h, header) in enumerate(zip(held_out, held_headers, strict=True)):
        if header in shared:
            by_hash.setdefault(clips.hash(h.utt.audio), set()).add(j)
    return [by_hash.get(clips.hash(r.utt.audio), set()) if header in shared else set()
            for r, header in zip(rows, row_headers, strict=True)]
