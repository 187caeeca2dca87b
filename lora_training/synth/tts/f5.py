"""F5-TTS (PyTorch): clones the user's voice from a few seconds of their own recordings.

Synthetic jargon in the user's own voice is closer to what the adapter will hear than any
espeak voice. Weights (~1.3 GB) come from the Hugging Face hub on first use; `check()` makes an
offline machine, or one without the package, fail in one line before anything starts.
"""

from __future__ import annotations

import os
import random

from lora_training.synth.tts.base import BackendOptions, Clip
from lora_training.synth.tts.cloning import check_cloning

MODEL = "F5TTS_v1_Base"
WEIGHTS = (
    ("SWivid/F5-TTS", f"{MODEL}/model_1250000.safetensors"),
    ("charactr/vocos-mel-24khz", "config.yaml"),
    ("charactr/vocos-mel-24khz", "pytorch_model.bin"),
)
# Cloned speech at 0.9-1.1x the reference's pace: variety without sounding unlike the user.
SPEED_RANGE = (0.9, 1.1)


def _quiet(*_args, **_kwargs) -> None:
    """F5-TTS prints every step through `show_info`; a progress bar of our own covers it."""


class F5Backend:
    name = "f5-tts"

    def __init__(self, options: BackendOptions):
        self.options = options
        self.references = ()
        self._model = None

    def check(self) -> None:
        self.references = check_cloning(self.name, self.options, "f5_tts", "f5-tts", WEIGHTS)

    def fingerprint(self) -> str:
        return f"{self.name}:{MODEL}:" + ",".join(f"{r.id}={r.transcript}" for r in self.references)

    def load(self) -> None:
        import torch
        from f5_tts.api import F5TTS

        # Each worker gets its share of the cores instead of every worker claiming all of them.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))
        self._model = F5TTS(model=MODEL)

    def synthesize(self, spoken: str, rng: random.Random) -> Clip:
        import soxr

        from lora_training.data.audio import SAMPLE_RATE

        reference = rng.choice(self.references)
        wav, rate, _ = self._model.infer(
            ref_file=reference.audio,
            ref_text=reference.transcript,
            gen_text=spoken,
            show_info=_quiet,
            speed=rng.uniform(*SPEED_RANGE),
            seed=rng.randrange(2**31),
        )
        samples = soxr.resample(wav.astype("float32"), rate, SAMPLE_RATE, quality="HQ")
        return Clip(samples=samples.astype("float32"), speaker=f"{self.name}:{reference.id}")
