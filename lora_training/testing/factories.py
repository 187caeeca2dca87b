"""Tiny audio and manifest builders for tests, shipped with the package so every test folder shares them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from lora_training.data.manifest import Utterance, save_manifest


def write_tone(
    path: str | os.PathLike,
    seconds: float = 1.0,
    sample_rate: int = 16000,
    freq: float = 440.0,
    channels: int = 1,
) -> Path:
    """A sine tone at 0.3 amplitude; the format (wav/flac/ogg) follows the file extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    tone = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    sf.write(str(path), np.repeat(tone[:, None], channels, axis=1), sample_rate)
    return path


def make_manifest(
    folder: str | os.PathLike,
    n: int,
    *,
    texts: Sequence[str] | None = None,
    terms: Sequence[list[str] | None] | None = None,
    name: str = "manifest.jsonl",
    seconds: float = 1.0,
    base_freq: float = 220.0,
) -> Path:
    """Write n tones under folder/audio/ and a manifest beside them with relative paths.

    Default texts are distinct sentences; `terms`, when given, is one list (or None) per utterance.
    Each clip has its own pitch (`base_freq` + 5 Hz per row), so tests can tell clips apart by
    content; manifests meant to share no clip (train and eval) take different `base_freq`s.
    """
    folder = Path(folder)
    texts = list(texts) if texts is not None else [f"test sentence number {i}" for i in range(n)]
    if len(texts) != n:
        raise ValueError(f"make_manifest: texts, expected {n} items, got {len(texts)}")
    if terms is not None and len(terms) != n:
        raise ValueError(f"make_manifest: terms, expected {n} items, got {len(terms)}")
    utterances = []
    for i, text in enumerate(texts):
        audio = write_tone(folder / "audio" / f"utt_{i:04d}.wav", seconds=seconds, freq=base_freq + 5.0 * i)
        utterances.append(
            Utterance(
                audio=str(audio),
                text=text,
                duration=seconds,
                source="real",
                terms=list(terms[i]) if terms is not None and terms[i] is not None else None,
            )
        )
    return save_manifest(folder / name, utterances)
