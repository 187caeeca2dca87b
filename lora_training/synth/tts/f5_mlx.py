"""F5-TTS on Apple Silicon through MLX (`f5-tts-mlx`): the same voice cloning as f5.py, several
times faster on a Mac than PyTorch's MPS path. Anywhere else it fails in one line (MLX also
runs on Linux CPUs, where f5.py is the better choice). Like f5.py, the model comes from a
`source`, so a test can run the library on a small random model."""

from __future__ import annotations

import platform
import random
import sys

from lora_training.errors import LoraTrainingError
from lora_training.synth.tts.base import BackendOptions, Clip
from lora_training.synth.tts.cloning import check_cloning, read_reference

MODEL = "lucasnewman/f5-tts-mlx"
# What `F5TTS.from_pretrained` reads: the model, the duration predictor `duration=None` needs
# (without it sampling raises), the vocabulary, and the Vocos vocoder's config and weights.
WEIGHTS = (
    (MODEL, "model_v1.safetensors"),
    (MODEL, "duration_v2.safetensors"),
    (MODEL, "vocab.txt"),
    ("lucasnewman/vocos-mel-24khz", "config.yaml"),
    ("lucasnewman/vocos-mel-24khz", "model.safetensors"),
)
MODEL_RATE = 24000
# The model's references are loudness-normalised to this RMS, as its own generate() does.
TARGET_RMS = 0.1
SPEED_RANGE = (0.9, 1.1)


class Pretrained:
    """The published MLX weights, from the hub (its cache, offline)."""

    name = MODEL
    files = WEIGHTS

    def build(self):
        from f5_tts_mlx.cfm import F5TTS

        return F5TTS.from_pretrained(MODEL)


class F5MlxBackend:
    name = "f5-tts-mlx"

    def __init__(self, options: BackendOptions, source=None):
        self.options = options
        self.source = source or Pretrained()
        self.references = ()
        self._model = None

    def check(self) -> None:
        machine = f"{sys.platform}/{platform.machine()}"
        if machine != "darwin/arm64":
            raise LoraTrainingError(
                f"{self.name} backend: needs Apple Silicon, expected darwin/arm64, got {machine} "
                "(use --backend f5-tts or espeak)"
            )
        self.references = check_cloning(self.name, self.options, "f5_tts_mlx", "f5-tts-mlx", self.source.files)

    def fingerprint(self) -> str:
        return f"{self.name}:{self.source.name}:" + ",".join(f"{r.id}={r.transcript}" for r in self.references)

    def load(self) -> None:
        self._model = self.source.build()

    def synthesize(self, spoken: str, rng: random.Random) -> Clip:
        import mlx.core as mx
        import numpy as np
        import soxr
        from f5_tts_mlx.utils import convert_char_to_pinyin

        from lora_training.data.audio import SAMPLE_RATE

        reference = rng.choice(self.references)
        audio = read_reference(reference.audio, MODEL_RATE)
        rms = float(np.sqrt(np.mean(audio**2)))
        if 0 < rms < TARGET_RMS:
            audio = audio * (TARGET_RMS / rms)
        text = convert_char_to_pinyin([f"{reference.transcript} {spoken}"])
        wave, _ = self._model.sample(
            mx.expand_dims(mx.array(audio), axis=0),
            text=text,
            duration=None,  # from the model's duration predictor
            speed=rng.uniform(*SPEED_RANGE),
            seed=rng.randrange(2**31),
        )
        # The model continues the reference: what follows it is the new sentence.
        generated = np.array(wave[len(audio):], dtype=np.float32)
        samples = soxr.resample(generated, MODEL_RATE, SAMPLE_RATE, quality="HQ")
        return Clip(samples=samples.astype(np.float32), speaker=f"{self.name}:{reference.id}")
