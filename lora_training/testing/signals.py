"""Speech-like test signals with known levels and pauses, for the recording quality checks."""

from __future__ import annotations

import numpy as np

from lora_training.data.audio import SAMPLE_RATE


def speech_like(
    seconds: float = 2.0,
    *,
    lead: float = 0.4,
    trail: float = 0.4,
    amplitude: float = 0.3,
    noise: float = 1e-4,
    seed: int = 0,
) -> np.ndarray:
    """A voiced 140 Hz buzz with a 4 Hz syllable envelope between `lead` and `trail` seconds of
    room noise; its peak is `amplitude`, so level and pause checks have exact expectations."""
    rng = np.random.default_rng(seed)
    n = round(seconds * SAMPLE_RATE)
    out = (noise * rng.standard_normal(n)).astype(np.float32)
    start, end = round(lead * SAMPLE_RATE), n - round(trail * SAMPLE_RATE)
    t = np.arange(end - start) / SAMPLE_RATE
    voiced = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in (1, 2, 3))
    envelope = 0.6 + 0.4 * np.abs(np.sin(2 * np.pi * 2 * t))
    burst = voiced * envelope
    out[start:end] += (amplitude * burst / np.abs(burst).max()).astype(np.float32)
    return out


def loud_syllables(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Loud noise with a 4 Hz syllable envelope: no quiet point inside it longer than ~50 ms, so a
    decoder test clip is never cut at a pause and keeps its exact length."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = 0.6 + 0.4 * np.abs(np.sin(2 * np.pi * 4 * t))
    return (0.3 * envelope * rng.standard_normal(t.size)).astype(np.float32)
