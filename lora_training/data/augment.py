"""Augmentation: speed, tempo, room reverb and background noise, for synthetic and real clips alike.

Clean TTS in an anechoic void is easy to recognise and unlike a laptop microphone in an office;
varying pace, room and noise makes the adapter learn the words rather than the recording.
Every random draw comes from the caller's `numpy.random.Generator`, so a seed fixes the result.

Time stretching and reverb use pedalboard (Rubber Band and JUCE's Freeverb, both deterministic)
and speed perturbation uses soxr; audiomentations was not used because it draws from the global
`random`/`np.random` state (determinism would mean reseeding globals inside trainer workers),
pins soxr below 1.0 and needs pyroomacoustics for its room simulator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lora_training.data.audio import SAMPLE_RATE

# Peak ceiling after reverb and noise, so a 16-bit wav never clips.
PEAK = 0.99


@dataclass(frozen=True)
class AugmentConfig:
    """Each effect is applied with its probability, its strength drawn uniformly from its range."""

    # Speed perturbation (pace and pitch together, as in Kaldi's 0.9/1.0/1.1 recipe).
    speed_probability: float = 0.3
    speed_range: tuple[float, float] = (0.9, 1.1)
    # Tempo: pace only, pitch kept (a faster or slower talker with the same voice).
    tempo_probability: float = 0.3
    tempo_range: tuple[float, float] = (0.85, 1.15)
    # Freeverb room size 0-1; at 16 kHz 0.1-0.6 spans a small office to a meeting room.
    reverb_probability: float = 0.4
    room_size_range: tuple[float, float] = (0.1, 0.6)
    wet_level_range: tuple[float, float] = (0.05, 0.3)
    # White noise; 10 dB is a loud fan, 30 dB a quiet room.
    noise_probability: float = 0.5
    snr_db_range: tuple[float, float] = (10.0, 30.0)


def augment(
    samples: np.ndarray,
    rng: np.random.Generator,
    *,
    sample_rate: int = SAMPLE_RATE,
    config: AugmentConfig = AugmentConfig(),
) -> np.ndarray:
    """A new float32 mono clip: speed, tempo, reverb, then noise (noise is the microphone's, not the room's)."""
    out = np.asarray(samples, dtype=np.float32)
    if rng.random() < config.speed_probability:
        out = change_speed(out, rng.uniform(*config.speed_range), sample_rate)
    if rng.random() < config.tempo_probability:
        out = change_tempo(out, rng.uniform(*config.tempo_range), sample_rate)
    if rng.random() < config.reverb_probability:
        out = add_reverb(out, rng.uniform(*config.room_size_range), rng.uniform(*config.wet_level_range), sample_rate)
    if rng.random() < config.noise_probability:
        out = add_noise(out, rng.uniform(*config.snr_db_range), rng)
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > PEAK:
        out = out * (PEAK / peak)
    return out.astype(np.float32)


def change_speed(samples: np.ndarray, factor: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Play `factor` times faster, pitch included: resample as if recorded at rate x factor."""
    import soxr

    return soxr.resample(samples, sample_rate * factor, sample_rate, quality="HQ").astype(np.float32)


def change_tempo(samples: np.ndarray, factor: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """`factor` times faster (length / factor) at the same pitch."""
    from pedalboard import time_stretch

    return time_stretch(samples[None, :], sample_rate, stretch_factor=factor)[0].astype(np.float32)


def add_reverb(samples: np.ndarray, room_size: float, wet_level: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    from pedalboard import Reverb

    room = Reverb(room_size=room_size, damping=0.5, wet_level=wet_level, dry_level=1.0 - wet_level, width=0.0)
    return room(samples, sample_rate).astype(np.float32)


def add_noise(samples: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White noise at `snr_db` below the clip's mean power (a silent clip stays silent)."""
    power = float(np.mean(np.square(samples, dtype=np.float64))) if samples.size else 0.0
    noise = rng.standard_normal(samples.shape) * np.sqrt(power / 10 ** (snr_db / 10))
    return (samples + noise).astype(np.float32)
