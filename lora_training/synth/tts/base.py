"""What every TTS backend shares: its options, its output, and the interface the pipeline calls.

A backend lives in two processes: the main process builds it from `BackendOptions` and calls
`check()` (cheap: tools, packages, weights, reference clips) before any work starts; each worker
process receives a pickled copy, calls `load()` once (models) and then `synthesize()` per clip.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class BackendOptions:
    """Every backend option, so the table's constructors share one signature."""

    # Voices never used for synthetic speakers, e.g. the voice a demo plays the "real user" with:
    # espeak's by name (`en-us+m3`) or language (`en-gb`, all its variants), the others qualified
    # (`flite:slt`, `festival:kal_diphone`) or, for the offline pool, a whole engine (`flite`).
    exclude_voices: tuple[str, ...] = ()
    # Voices (named as above) to use exclusively, e.g. the one voice a demo's "real user" has.
    voices: tuple[str, ...] = ()
    # Voice-cloning backends: a manifest of the user's own recordings to clone the voice from.
    reference_manifest: str | None = None


@dataclass
class Clip:
    samples: np.ndarray = field(repr=False)  # float32 mono at 16 kHz
    speaker: str


class TtsBackend(Protocol):
    name: str

    def check(self) -> None:
        """Raise a one-line LoraTrainingError naming what is missing; no model is loaded."""

    def fingerprint(self) -> str:
        """What changes the audio besides the text and the seed; part of every clip's id."""

    def load(self) -> None:
        """Heavy setup, once per worker process."""

    def synthesize(self, spoken: str, rng: random.Random) -> Clip:
        """One clip of `spoken`; every random choice (voice, speed, seed) comes from `rng`."""
