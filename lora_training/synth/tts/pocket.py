"""Pocket TTS (Kyutai, `pocket-tts`): voice cloning that runs on a laptop CPU, no GPU, no Mac.

F5-TTS needs a GPU (or Apple Silicon) to be quick and a torchaudio that does not import beside
a CPU torch; Pocket TTS is a ~100M-parameter model that runs faster than real time on two CPU
cores. It clones from the reference audio alone (no transcript): the reference is encoded once
per worker into a voice state, which every sentence then continues from.

The cloning weights are gated on the Hugging Face hub (accept Kyutai's terms, then log in);
`check()` fails in one line offline without them, `load()` when the hub refused them. As in
f5.py, the model comes from a `source`, so a test can run the library on a small random model.
"""

from __future__ import annotations

import random
from pathlib import Path

from lora_training.errors import ModelError
from lora_training.synth.tts.base import BackendOptions, Clip
from lora_training.synth.tts.cloning import check_cloning, read_reference

# The package's default English model (`TTSModel.load_model()`); its config pins these files.
LANGUAGE = "english"
REVISION = "db04f0e653473e5c7333c69686ac92b7460b0c1d"
WEIGHTS = (
    ("kyutai/pocket-tts", f"languages/{LANGUAGE}/model.safetensors", REVISION),
    ("kyutai/pocket-tts-without-voice-cloning", f"languages/{LANGUAGE}/tokenizer.json",
     "00eac05ed3d16bdc3f6b5d598874019c34a89214"),
)


class Pretrained:
    """Kyutai's published English weights, from the hub (its cache, offline)."""

    name = f"{LANGUAGE}@{REVISION[:12]}"
    files = WEIGHTS

    def build(self):
        from pocket_tts import TTSModel

        return TTSModel.load_model(language=LANGUAGE)


class PocketBackend:
    name = "pocket-tts"

    def __init__(self, options: BackendOptions, source=None):
        self.options = options
        self.source = source or Pretrained()
        self.references = ()
        self._model = None
        self._voices = {}

    def check(self) -> None:
        self.references = check_cloning(self.name, self.options, "pocket_tts", "pocket-tts", self.source.files)

    def fingerprint(self) -> str:
        # The voice comes from the reference audio alone: its cached copy is named by its content.
        return f"{self.name}:{self.source.name}:" + ",".join(f"{r.id}={Path(r.audio).stem}" for r in self.references)

    def load(self) -> None:
        """The model, then one voice state per reference (the slow step: encoding the clip). Mimi,
        the model's codec, works at 24 kHz like F5, so the cached references need no resampling.

        The library runs generation on one torch thread plus a decoder thread (it sets
        `torch.set_num_threads(1)` on import), so each worker takes about two cores.
        """
        import torch

        model = self.source.build()
        if not model.has_voice_cloning:
            raise ModelError(
                f"{self.name} backend: the hub refused the voice-cloning weights, expected access to "
                "kyutai/pocket-tts (accept its terms on huggingface.co, then `hf auth login`), "
                "got only the weights without voice cloning"
            )
        self._model = model
        self._voices = {
            r.id: model.get_state_for_audio_prompt(torch.from_numpy(read_reference(r.audio, model.sample_rate))[None])
            for r in self.references
        }

    def synthesize(self, spoken: str, rng: random.Random) -> Clip:
        """The library's `generate_audio` (its own text chunking and end-of-speech rule) from a
        reference's voice state, seeded from `rng`; the state is copied, so it serves again."""
        import numpy as np
        import soxr
        import torch

        from lora_training.data.audio import SAMPLE_RATE

        reference = rng.choice(self.references)
        torch.manual_seed(rng.randrange(2**31))  # the sampling noise of every frame
        audio = self._model.generate_audio(self._voices[reference.id], spoken)
        samples = soxr.resample(audio.numpy(), self._model.sample_rate, SAMPLE_RATE, quality="HQ")
        return Clip(samples=samples.astype(np.float32), speaker=f"{self.name}:{reference.id}")
