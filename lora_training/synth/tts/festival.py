"""festival: three more offline voices (two diphone, one HTS), ~0.4 s a clip, deterministic.

Each clip varies speed and pitch around the voice's own settings with a scheme prelude handed to
`text2wave -eval`. Verified on festival 2.5: `Duration_Stretch` and `int_lr_params`'
`target_f0_mean` move the diphone voices; the HTS voice ignores both, its speed is hts_engine's
`-r`, and its `-fm` (half-tones) is accepted but changes nothing, so its pitch stays as trained.
"""

from __future__ import annotations

import random

from lora_training.synth.tts import engine
from lora_training.synth.tts.base import BackendOptions, Clip

# Voice → how festival synthesises it, which decides the knobs it has. The baseline heard 20
# Harvard sentences (159 words) per voice with a WER of kal_diphone 16%, ked_diphone 15%,
# cmu_us_slt_arctic_hts 6% (espeak's six accents: 21-43%); a voice over 30% would be left out.
METHODS = {"kal_diphone": "diphone", "ked_diphone": "diphone", "cmu_us_slt_arctic_hts": "hts"}
VOICES = tuple(METHODS)
# Multiples of the voice's own settings, as flite.py's: ~espeak's speed range, ±2.5 semitones.
STRETCH_RANGE = (0.9, 1.25)
PITCH_RANGE = (0.85, 1.15)


def prelude(voice: str, stretch: float, pitch: float) -> list[str]:
    """The scheme text2wave evaluates before it speaks: the voice, then its speed and pitch."""
    if METHODS[voice] == "hts":
        rate = round(1 / stretch, 3)
        return [f"(voice_{voice})", f'(set! hts_engine_params (cons (list "-r" {rate}) hts_engine_params))']
    return [
        f"(voice_{voice})",
        f"(Parameter.set 'Duration_Stretch (* {stretch} (Parameter.get 'Duration_Stretch)))",
        # assoc reads the first entry, so the one consed on front overrides the voice's own.
        f"(set! int_lr_params (cons (list 'target_f0_mean (* {pitch} (cadr (assoc 'target_f0_mean int_lr_params)))) "
        "int_lr_params))",
    ]


class FestivalBackend:
    name = "festival"

    def __init__(self, options: BackendOptions):
        self.options = options
        self.voices = engine.select_voices(self.name, VOICES, options)

    def installed(self) -> tuple[str, ...]:
        """The table's voices this festival has (its `voice.list`); none without festival."""
        listed = engine.listing(self.name, ["festival", "-b", "(print (voice.list))"])
        return tuple(v for v in VOICES if v in listed.replace("(", " ").replace(")", " ").split())

    def check(self) -> None:
        engine.check_options(self.name, VOICES, self.options, self.voices)
        engine.require_tool(self.name, "text2wave")
        engine.missing_voices(self.name, self.voices, self.installed())

    def fingerprint(self) -> str:
        return f"festival:{','.join(self.voices)}"

    def load(self) -> None:
        """Nothing to load: every clip is its own text2wave process."""

    def synthesize(self, spoken: str, rng: random.Random) -> Clip:
        return self.speak(rng.choice(self.voices), spoken, rng)

    def speak(self, voice: str, spoken: str, rng: random.Random) -> Clip:
        stretch = round(rng.uniform(*STRETCH_RANGE), 3)
        pitch = round(rng.uniform(*PITCH_RANGE), 3)
        evals = [arg for expression in prelude(voice, stretch, pitch) for arg in ("-eval", expression)]
        samples = engine.speak(self.name, voice, spoken,
                               lambda text, wav: ["text2wave", *evals, str(text), "-o", str(wav)])
        return Clip(samples=samples, speaker=f"festival:{voice}")
