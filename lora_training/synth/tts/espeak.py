"""espeak-ng: most of the offline pool's voices. Robotic, but fast (~30 ms a clip) and with many voices.

One user's recordings cannot teach an adapter to tell the term from the voice; a term heard in
78 voices (6 English accents x 13 variants) at different speeds and pitches can. Every choice
comes from the clip's own rng, so a clip is the same on every run and on every machine.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
from pathlib import Path

from lora_training.errors import ConfigError, LoraTrainingError
from lora_training.synth.tts.base import BackendOptions, Clip

# espeak's Scottish and West Midlands English are left out: the baseline model misheard 36% and 28%
# of their clips past the quality gate's threshold (measured on 200 clips), the others 0-4%.
LANGUAGES = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-x-gbclan", "en-029", "en-us-nyc")
# The standard male and female variants; the novelty ones (whisper, croak, klatt…) are left out
# because the user never sounds like them.
VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
VOICES = tuple(lang if not variant else f"{lang}+{variant}" for lang in LANGUAGES for variant in VARIANTS)
# Words per minute (espeak's default is 175) and pitch on its 0-99 scale (default 50): wide enough
# for variety, narrow enough that the baseline model still understands every voice.
SPEED_RANGE = (140, 190)
PITCH_RANGE = (30, 70)
TIMEOUT_SECONDS = 60


def _language(voice: str) -> str:
    return voice.split("+", 1)[0]


class EspeakBackend:
    name = "espeak"

    def __init__(self, options: BackendOptions):
        self.options = options
        excluded = set(options.exclude_voices)
        wanted = set(options.voices)
        self.voices = tuple(
            v for v in VOICES
            if v not in excluded and _language(v) not in excluded
            and (not wanted or v in wanted or _language(v) in wanted)
        )

    def check(self) -> None:
        if self.options.reference_manifest is not None:
            raise ConfigError(
                "reference_manifest: espeak does not clone voices, expected no --reference-manifest "
                f"with --backend espeak, got {self.options.reference_manifest}"
            )
        unknown = [v for v in (*self.options.exclude_voices, *self.options.voices) if v not in VOICES and v not in LANGUAGES]
        if unknown:
            raise ConfigError(
                f"voices: unknown espeak voice(s) {', '.join(unknown)}, expected a language "
                f"({', '.join(LANGUAGES)}) or one of them with +m1..m7/+f1..f5"
            )
        if not self.voices:
            raise ConfigError("exclude_voices: every voice excluded, expected at least one voice left")
        if shutil.which("espeak-ng") is None:
            raise LoraTrainingError(
                "espeak backend: espeak-ng not found on PATH, expected it installed "
                "(`make system-deps`, apt-get install espeak-ng or brew install espeak-ng), got none"
            )

    def fingerprint(self) -> str:
        return f"espeak:{','.join(self.voices)}"

    def load(self) -> None:
        """Nothing to load: every clip is its own espeak-ng process."""

    def installed(self) -> tuple[str, ...]:
        """Every voice with espeak-ng on PATH (its English voices ship with it), else none."""
        return VOICES if shutil.which("espeak-ng") is not None else ()

    def synthesize(self, spoken: str, rng: random.Random) -> Clip:
        return self.speak(rng.choice(self.voices), spoken, rng)

    def speak(self, voice: str, spoken: str, rng: random.Random) -> Clip:
        from lora_training.data.audio import load_audio

        speed = rng.randint(*SPEED_RANGE)
        pitch = rng.randint(*PITCH_RANGE)
        with tempfile.TemporaryDirectory(prefix="espeak-") as folder:
            wav = Path(folder) / "clip.wav"
            # Text on stdin, so a sentence starting with "-" ("--force is risky") is never an option.
            command = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav)]
            try:
                done = subprocess.run(command, input=spoken.encode("utf-8"), capture_output=True,
                                      timeout=TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired as e:
                raise LoraTrainingError(
                    f"espeak backend: espeak-ng hung, expected a clip within {TIMEOUT_SECONDS} s, "
                    f"got none for {spoken!r}"
                ) from e
            if done.returncode != 0 or not wav.is_file():
                reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
                raise LoraTrainingError(
                    f"espeak backend: espeak-ng failed for voice {voice}, expected exit 0, got exit "
                    f"{done.returncode}: {reason[0] if reason else 'no message'}"
                )
            samples = load_audio(wav, min_seconds=0.0, max_seconds=None)
        return Clip(samples=samples, speaker=f"espeak:{voice}")
