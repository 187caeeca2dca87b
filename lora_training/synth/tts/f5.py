"""F5-TTS (PyTorch): clones the user's voice from a few seconds of their own recordings.

Synthetic jargon in the user's own voice is closer to what the adapter will hear than any
espeak voice. Weights (~1.3 GB) come from the Hugging Face hub on first use; `check()` makes an
offline machine, or one without the package, fail in one line before anything starts.

Where the model comes from is a `source` (the published weights by default), so a test can run
the same library code on a small random model: only the weights are missing offline.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
from dataclasses import dataclass

from lora_training.synth.tts.base import BackendOptions, Clip
from lora_training.synth.tts.cloning import check_cloning, read_reference

MODEL = "F5TTS_v1_Base"
WEIGHTS = (
    ("SWivid/F5-TTS", f"{MODEL}/model_1250000.safetensors"),
    ("charactr/vocos-mel-24khz", "config.yaml"),
    ("charactr/vocos-mel-24khz", "pytorch_model.bin"),
)
# F5 works at 24 kHz: a reference at any other rate must be resampled, or the voice is pitched wrong.
MODEL_RATE = 24000
# infer_process's bound on one generation: reference plus new speech within ~22 s.
MAX_GENERATION_SECONDS = 22
# Cloned speech at 0.9-1.1x the reference's pace: variety without sounding unlike the user.
SPEED_RANGE = (0.9, 1.1)


@dataclass
class F5Model:
    """What inference needs: the flow-matching model (`f5_tts.model.CFM`) and its Vocos vocoder."""

    cfm: object
    vocoder: object


def build_model(arch: dict, checkpoint: str, vocoder_dir: str, device: str) -> F5Model:
    """The library's own loaders: `load_model` (a DiT inside CFM, EMA weights) and `load_vocoder`
    (Vocos from `config.yaml` + `pytorch_model.bin`). Both print; stdout may carry `--json`."""
    from f5_tts.infer.utils_infer import load_model, load_vocoder
    from f5_tts.model import DiT

    with contextlib.redirect_stdout(io.StringIO()):
        cfm = load_model(DiT, arch, checkpoint, mel_spec_type="vocos", device=device)
        vocoder = load_vocoder("vocos", is_local=True, local_path=vocoder_dir, device=device)
    return F5Model(cfm=cfm, vocoder=vocoder)


class Pretrained:
    """The published F5TTS_v1_Base and Vocos weights, from the hub (its cache, offline)."""

    name = MODEL
    files = WEIGHTS

    def build(self, device: str) -> F5Model:
        from importlib.resources import files

        import yaml
        from huggingface_hub import hf_hub_download

        checkpoint, vocoder_config, _ = (hf_hub_download(repo, name) for repo, name in WEIGHTS)
        config = yaml.safe_load(files("f5_tts").joinpath(f"configs/{MODEL}.yaml").read_text())
        return build_model(config["model"]["arch"], checkpoint, os.path.dirname(vocoder_config), device)


class F5Backend:
    name = "f5-tts"

    def __init__(self, options: BackendOptions, source=None):
        self.options = options
        self.source = source or Pretrained()
        self.references = ()
        self._model: F5Model | None = None
        self._prompts = {}
        self._device = "cpu"

    def check(self) -> None:
        self.references = check_cloning(self.name, self.options, "f5_tts", "f5-tts", self.source.files)

    def fingerprint(self) -> str:
        return f"{self.name}:{self.source.name}:" + ",".join(f"{r.id}={r.transcript}" for r in self.references)

    def load(self) -> None:
        import torch
        from f5_tts.infer.utils_infer import device

        # Each worker gets its share of the cores instead of every worker claiming all of them.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))
        self._device = device
        self._model = self.source.build(device)
        self._prompts = {r.id: _prompt(r.audio, r.transcript) for r in self.references}

    def synthesize(self, spoken: str, rng: random.Random) -> Clip:
        """`infer_process` without its `torchaudio.load` (torchaudio >= 2.9 reads files only through
        torchcodec and FFmpeg): the same text chunking, then the library's `infer_batch_process`."""
        import numpy as np
        import soxr
        from f5_tts.infer.utils_infer import chunk_text, infer_batch_process
        from f5_tts.model.utils import seed_everything

        from lora_training.data.audio import SAMPLE_RATE

        reference = rng.choice(self.references)
        audio, text = self._prompts[reference.id]
        speed = rng.uniform(*SPEED_RANGE)
        seconds = audio.shape[-1] / MODEL_RATE
        max_chars = int(len(text.encode("utf-8")) / seconds * (MAX_GENERATION_SECONDS - seconds) * speed)
        seed_everything(rng.randrange(2**31))
        wav, rate, _ = next(infer_batch_process(
            (audio, MODEL_RATE), text, chunk_text(spoken, max_chars=max_chars), self._model.cfm,
            self._model.vocoder, mel_spec_type="vocos", progress=None, speed=speed, device=self._device,
        ))
        samples = soxr.resample(wav.astype(np.float32), rate, SAMPLE_RATE, quality="HQ")
        return Clip(samples=samples.astype(np.float32), speaker=f"{self.name}:{reference.id}")


def _prompt(path: str, transcript: str):
    """A reference as F5 conditions on it: (1, samples) at 24 kHz, and its transcript ending in a
    sentence stop and a space, as `preprocess_ref_audio_text` makes it, so the new text follows."""
    import torch

    audio = read_reference(path, MODEL_RATE)
    text = transcript.strip()
    if not text.endswith("。"):
        text += " " if text.endswith(".") else ". "
    return torch.from_numpy(audio).unsqueeze(0), text
