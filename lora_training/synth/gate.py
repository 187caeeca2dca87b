"""Quality gate: a baseline model listens to every synthetic clip before it enters a dataset.

TTS sometimes produces a clip that is empty, garbled or cut short; training on it teaches the
adapter to write words nobody said. The gate transcribes each clip and compares the transcript
with the *spoken* text (what TTS read: "dev at example dot com", not "dev@example.com"), so
jargon the baseline merely misspells still passes: that misrecognition is what training fixes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np

from lora_training.evaluation.metrics import utterance_wer
from lora_training.evaluation.normalize import normalize_for_safety

Transcriber = Callable[[list[np.ndarray]], list[str]]
Decision = Literal["keep", "regenerate", "drop"]

# Measured on 200 espeak clips (30-term lexicon, moonshine-base, see docs/synthetic_speech.md):
# intact clips score WER 0.00-0.50 against the spoken text (median 0.08, 99th percentile 0.40:
# jargon such as "kube cuttle" heard as "cube cuddle" costs a word or two), while silence and
# noise score 1.00, reversed speech ≥ 0.90 and clips cut to their first half ≥ 0.45 (median 0.60).
# 0.5 keeps every intact clip of that sample and rejects all broken ones but some cut ones.
DEFAULT_MAX_WER = 0.5
DEFAULT_RETRIES = 2
DEFAULT_MODEL = "embedded:moonshine-base"


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    wer: float | None  # None: the clip was not listened to (gate off)
    transcript: str | None


def decide(spoken: str, transcript: str, attempt: int, *, max_wer: float, retries: int) -> Verdict:
    """Keep a clip whose transcript is within `max_wer` of what was spoken; otherwise try again
    with another seed and voice while attempts remain (attempt 0 is the first), then drop it.

    WER uses the safety normalisation, so "42" heard as "forty-two" is no error: the gate asks
    whether the audio says the sentence, not how a model formats it.
    """
    wer = utterance_wer(spoken, transcript, normalize_for_safety)
    if wer <= max_wer:
        return Verdict("keep", wer, transcript)
    return Verdict("regenerate" if attempt < retries else "drop", wer, transcript)


class QualityGate:
    """Transcribes clips in batches (a batch of 8 costs ~2x one clip on CPU) and decides each."""

    batch_size = 8

    def __init__(self, transcribe: Transcriber, *, max_wer: float = DEFAULT_MAX_WER, retries: int = DEFAULT_RETRIES):
        self.transcribe = transcribe
        self.max_wer = max_wer
        self.retries = retries

    def check(self, spoken: Sequence[str], audios: list[np.ndarray], attempts: Sequence[int]) -> list[Verdict]:
        transcripts = self.transcribe(audios)
        return [
            decide(s, t, a, max_wer=self.max_wer, retries=self.retries)
            for s, t, a in zip(spoken, transcripts, attempts, strict=True)
        ]

    def describe(self) -> dict:
        return {"max_wer": self.max_wer, "retries": self.retries}


class OpenGate:
    """`--no-gate`: every clip is kept unheard, so the pipeline has no `if gate:` branches."""

    batch_size = 1

    def check(self, spoken: Sequence[str], audios: list[np.ndarray], attempts: Sequence[int]) -> list[Verdict]:
        return [Verdict("keep", None, None) for _ in spoken]

    def describe(self) -> None:
        return None


def model_transcriber(model_ref: str) -> Transcriber:
    """Load `model_ref` now (so a bad reference fails before synthesis starts) and return a
    function transcribing a batch of 16 kHz clips with it."""
    from lora_training.evaluation.transcribe import greedy_transcribe
    from lora_training.models.registry import resolve_model

    model, processor = resolve_model(model_ref)

    def transcribe(audios: list[np.ndarray]) -> list[str]:
        return greedy_transcribe(model, processor, audios, batch_size=QualityGate.batch_size)

    return transcribe
