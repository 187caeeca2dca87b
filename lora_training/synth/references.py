"""Choosing the reference clips a voice-cloning model copies the user's voice from.

The clone copies everything in its reference: a clipped, silent or cut clip becomes a clipped,
silent or cut voice, a 16 kHz clip fed to a 24 kHz model comes out an octave up ("chipmunk"),
and a transcript that does not match the audio makes the model speak the mismatch. So a few
clean real recordings of a length the model copies well are chosen from the user's manifest,
spread over the recording set (voice and microphone vary from session to session), resampled
once to the model's rate and cached by content.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path

import numpy as np

from lora_training.errors import ConfigError
from lora_training.synth.tts.cloning import Reference

# F5-TTS clips references longer than ~12 s; 5-10 s gives it a few sentences of voice with
# room for its own output in the 30 s it attends to.
REFERENCE_SECONDS = (5.0, 10.0)
# Several references give the clone variety (each synthetic clip copies one of them).
REFERENCE_COUNT = 4
# F5-TTS (and its MLX port) work at 24 kHz.
F5_SAMPLE_RATE = 24000


def default_cache_dir() -> Path:
    from lora_training.models.embedded import cache_root

    return cache_root() / "references"


def _problems(utt, low: float, high: float) -> list[str]:
    """Why a row cannot be a reference: its source, its length, then every `verify` check it fails."""
    from lora_training.data.audio import audio_duration, load_audio
    from lora_training.data.manifest import is_real
    from lora_training.data.quality import check_audio

    if not is_real(utt.source):
        return ["synthetic"]
    seconds = utt.duration if utt.duration is not None else audio_duration(utt.audio)
    if seconds < low:
        return ["too short"]
    if seconds > high:
        return ["too long"]
    _, issues = check_audio(load_audio(utt.audio, max_seconds=None))
    return [issue.code for issue in issues]


def _spread(items: list, count: int) -> list:
    """`count` items from the middles of `count` equal stretches of the list: deterministic, and
    drawn from early, middle and late recording sessions rather than the first few clips."""
    n = len(items)
    return items if n <= count else [items[(2 * i + 1) * n // (2 * count)] for i in range(count)]


def _cached_copy(audio: str, sample_rate: int, cache_dir: Path) -> Path:
    """The clip as mono 16-bit wav at `sample_rate`, named by a hash of its samples, written once."""
    import soundfile as sf
    import soxr

    from lora_training.data.audio import write_wav

    data, rate = sf.read(audio, dtype="float32", always_2d=True)
    digest = hashlib.sha256(f"{rate}/{data.shape[1]}/".encode())
    digest.update(np.ascontiguousarray(data).tobytes())
    path = cache_dir / f"{digest.hexdigest()[:20]}-{sample_rate}.wav"
    if not path.is_file():
        # Resampled from the recording's own rate: a 48 kHz recording keeps its 8-12 kHz band,
        # which a detour through the 16 kHz training copy would lose.
        mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
        if rate != sample_rate:
            mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
        write_wav(path, mono, sample_rate)
    return path


def choose_references(
    manifest_path: str | os.PathLike,
    *,
    count: int = REFERENCE_COUNT,
    seconds: tuple[float, float] = REFERENCE_SECONDS,
    sample_rate: int = F5_SAMPLE_RATE,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[Reference, ...]:
    """Up to `count` clean real clips of `seconds` from the manifest, resampled to `sample_rate`.

    A clip qualifies when it is the user's own recording (not synthetic), within `seconds`, and
    passes every `verify` check (not silent, quiet, clipped, cut or padded with long silence).
    Its transcript is what was said: the row's `spoken`, else its `text`.
    """
    from lora_training.data.manifest import load_manifest

    if count < 1:
        raise ConfigError(f"reference count: expected at least 1, got {count}")
    low, high = seconds
    utterances = load_manifest(manifest_path)
    good, refused = [], Counter()
    for utt in utterances:
        problems = _problems(utt, low, high)
        refused.update(problems)
        if not problems:
            good.append(utt)
    if not good:
        why = ", ".join(f"{n} {reason}" for reason, n in refused.most_common()) or "no rows"
        raise ConfigError(
            f"{manifest_path}: no reference clip for voice cloning, expected a clean real recording of "
            f"{low:g}-{high:g} s, got {len(utterances)} clip(s): {why}"
        )
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return tuple(
        Reference(
            id=utt.id or Path(utt.audio).stem,
            audio=str(_cached_copy(utt.audio, sample_rate, folder)),
            transcript=utt.spoken or utt.text,
        )
        for utt in _spread(good, count)
    )
