"""Level, clipping and silence checks for one recording, shared by `record` (on the spot) and `verify`.

A bad clip teaches the adapter to write words nobody said: silence becomes a hallucinated
sentence, speech cut at an edge becomes a transcript longer than the audio, and clipping adds
distortion the user's real dictation never has. All functions are pure, on float32 samples in
[-1, 1] at 16 kHz, so they are tested on synthetic arrays.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from lora_training.data.audio import FRAME, HOP, MAX_SECONDS, MIN_SECONDS, SAMPLE_RATE, frame_energy


@dataclass(frozen=True)
class Thresholds:
    """Limits of a usable dictation clip; the defaults are for a laptop or headset microphone."""

    # Peak below -40 dBFS: nothing but the noise floor was recorded.
    silent_peak: float = 0.01
    # Peak below -26 dBFS or speech RMS below -40 dBFS: speech drowns in noise once normalised.
    min_peak: float = 0.05
    min_speech_rms: float = 0.01
    # |x| at or above this counts as full scale (16-bit full scale is 0.99997).
    clip_level: float = 0.99
    # More than 0.1% of samples at full scale (16 a second) is audible clipping, not a stray peak.
    max_clipped_fraction: float = 0.001
    # A frame is speech when its RMS is within 26 dB of the loudest frame and above -50 dBFS.
    speech_relative: float = 0.05
    speech_floor: float = 0.003
    # Pauses before and after speech: more than 1.5 s is dead time the model learns to fill;
    # less than 50 ms means the recording started or stopped while the user was talking.
    max_edge_silence: float = 1.5
    min_edge_silence: float = 0.05


@dataclass(frozen=True)
class Levels:
    """Measurements of one clip; `lead`/`trail` are None when no frame is speech."""

    seconds: float
    peak: float
    speech_rms: float
    clipped_fraction: float
    lead: float | None
    trail: float | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Issue:
    """One problem: `code` is stable for reports and tests, `message` reads `what, expected X, got Y`."""

    code: str
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def dbfs(value: float) -> float:
    """Decibels relative to full scale; silence is -inf rather than an error."""
    return 20 * math.log10(value) if value > 0 else -math.inf


def measure(samples: np.ndarray, thresholds: Thresholds = Thresholds()) -> Levels:
    """Peak, speech RMS, clipped share and the silence before and after speech."""
    x = np.asarray(samples, dtype=np.float32)
    seconds = len(x) / SAMPLE_RATE
    if len(x) == 0:
        return Levels(seconds=0.0, peak=0.0, speech_rms=0.0, clipped_fraction=0.0, lead=None, trail=None)
    magnitude = np.abs(x)
    peak = float(magnitude.max())
    # Speech activity is judged on the RMS of 25 ms frames every 10 ms, the usual speech-analysis grid.
    rms = np.sqrt(frame_energy(x))
    speech = np.flatnonzero(rms >= max(thresholds.speech_floor, thresholds.speech_relative * rms.max()))
    if len(speech) == 0:
        lead = trail = None
        speech_rms = 0.0
    else:
        lead = speech[0] * HOP / SAMPLE_RATE
        trail = max(0.0, seconds - (speech[-1] * HOP + FRAME) / SAMPLE_RATE)
        speech_rms = float(np.sqrt(np.mean(rms[speech] ** 2)))
    return Levels(
        seconds=seconds,
        peak=peak,
        speech_rms=speech_rms,
        clipped_fraction=float(np.mean(magnitude >= thresholds.clip_level)),
        lead=lead,
        trail=trail,
    )


def issues_for(levels: Levels, thresholds: Thresholds = Thresholds()) -> list[Issue]:
    """Every problem `levels` shows; a silent clip reports only `silent`, the rest would be noise."""
    t = thresholds
    issues = []
    if levels.seconds < MIN_SECONDS:
        issues.append(Issue("short", f"clip too short, expected at least {MIN_SECONDS:g} s, got {levels.seconds:.2f} s"))
    elif levels.seconds > MAX_SECONDS:
        issues.append(Issue("long", f"clip too long, expected at most {MAX_SECONDS:g} s, got {levels.seconds:.2f} s"))
    if levels.peak < t.silent_peak or levels.lead is None:
        issues.append(Issue("silent", f"no speech, expected a peak above {dbfs(t.silent_peak):.0f} dBFS, "
                                      f"got {dbfs(levels.peak):.1f} dBFS"))
        return issues
    if levels.peak < t.min_peak:
        issues.append(Issue("quiet", f"too quiet, expected a peak above {dbfs(t.min_peak):.0f} dBFS, "
                                     f"got {dbfs(levels.peak):.1f} dBFS (move closer or raise the input gain)"))
    elif levels.speech_rms < t.min_speech_rms:
        issues.append(Issue("quiet", f"too quiet, expected speech RMS above {dbfs(t.min_speech_rms):.0f} dBFS, "
                                     f"got {dbfs(levels.speech_rms):.1f} dBFS (move closer or raise the input gain)"))
    if levels.clipped_fraction > t.max_clipped_fraction:
        issues.append(Issue("clipped", f"clipping, expected at most {100 * t.max_clipped_fraction:g}% of samples "
                                       f"at full scale, got {100 * levels.clipped_fraction:.2f}% (lower the input gain)"))
    for code, edge, seconds, cut in (("lead", "before", levels.lead, "start"), ("trail", "after", levels.trail, "end")):
        if seconds > t.max_edge_silence:
            issues.append(Issue(f"long_{code}", f"long silence {edge} speech, expected at most "
                                               f"{t.max_edge_silence:g} s, got {seconds:.2f} s"))
        elif seconds < t.min_edge_silence:
            issues.append(Issue(f"cut_{cut}", f"speech cut at the {cut}, expected at least "
                                             f"{t.min_edge_silence:g} s of silence {edge} it, got {seconds:.2f} s"))
    return issues


def check_audio(samples: np.ndarray, thresholds: Thresholds = Thresholds()) -> tuple[Levels, list[Issue]]:
    """Measure and judge one clip in one call."""
    levels = measure(samples, thresholds)
    return levels, issues_for(levels, thresholds)
