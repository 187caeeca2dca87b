"""flite (CMU's small festival): five more offline voices, ~50 ms a clip, deterministic.

Each clip varies speed and pitch around the voice's own defaults with flite's `--setf` features
(`duration_stretch`, `int_f0_target_mean`), both drawn from the clip's rng.
"""

from __future__ import annotations

import random

from lora_training.synth.tts import engine
from lora_training.synth.tts.base import BackendOptions, Clip

# Voice → its defaults (duration_stretch, int_f0_target_mean in Hz): kal's from flite's source
# (setting them reproduces the default audio), the clustergen voices' as the measured median F0.
# `awb_time` is left out: it speaks only the time of day. The baseline (embedded:moonshine-base)
# heard 20 Harvard sentences (159 words) per voice at seeded speeds and pitches with a WER of kal
# 17%, kal16 14%, awb 9%, rms 6%, slt 12% (espeak's six accents: 21-43%); a voice over 30% would
# be left out.
DEFAULTS = {"kal": (1.1, 95), "kal16": (1.1, 95), "awb": (1.0, 131), "rms": (1.0, 103), "slt": (1.0, 170)}
VOICES = tuple(DEFAULTS)
# Multiples of the defaults: ~espeak's speed range (0.92-1.25 of its default) and ±2.5 semitones.
STRETCH_RANGE = (0.9, 1.25)
PITCH_RANGE = (0.85, 1.15)


class FliteBackend:
    name = "flite"

    def __init__(self, options: BackendOptions):
        self.options = options
        self.voices = engine.select_voices(self.name, VOICES, options)

    def installed(self) -> tuple[str, ...]:
        """The table's voices this flite has (`flite -lv`); none without flite."""
        listed = engine.listing(self.name, ["flite", "-lv"]).replace(":", " ").split()
        return tuple(v for v in VOICES if v in listed)

    def check(self) -> None:
        engine.check_options(self.name, VOICES, self.options, self.voices)
        engine.require_tool(self.name, "flite")
        engine.missing_voices(self.name, self.voices, self.installed())

    def fingerprint(self) -> str:
        return f"flite:{','.join(self.voices)}"

    def load(self) -> None:
        """Nothing to load: every clip is its own flite process."""

    def synthesize(self, spoken: str, rng: random.Random) -> Clip:
        return self.speak(rng.choice(self.voices), spoken, rng)

    def speak(self, voice: str, spoken: str, rng: random.Random) -> Clip:
        stretch, f0 = DEFAULTS[voice]
        stretch = round(stretch * rng.uniform(*STRETCH_RANGE), 3)
        f0 = round(f0 * rng.uniform(*PITCH_RANGE), 1)
        samples = engine.speak(self.name, voice, spoken, lambda text, wav: [
            "flite", "-voice", voice, "--setf", f"duration_stretch={stretch}",
            "--setf", f"int_f0_target_mean={f0}", "-f", str(text), "-o", str(wav),
        ])
        return Clip(samples=samples, speaker=f"flite:{voice}")
