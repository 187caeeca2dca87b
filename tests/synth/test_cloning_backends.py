"""Voice cloning executed: the real F5-TTS (and MLX port) classes at a toy size with random
weights, so everything but the published weights runs offline; and the one-line failure when
those weights are missing."""

import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lora_training.data.manifest import load_manifest
from lora_training.models.embedded import BECKETT_TRANSCRIPT
from lora_training.synth.tts import BACKENDS, BackendOptions
from lora_training.synth.tts.cloning import load_references

REPO = Path(__file__).resolve().parents[2]
SPOKEN = "Run cube control apply before the demo."
# F5's mel frames: 24 kHz audio, hop 256.
HOP, MODEL_RATE = 256, 24000
TINY_ARCH = dict(dim=64, depth=2, heads=2, ff_mult=2, text_dim=32, text_mask_padding=True, qk_norm=None,
                 conv_layers=1, pe_attn_head=None, attn_backend="torch", attn_mask_enabled=False,
                 checkpoint_activations=False)
# `make test` installs both libraries (scripts/cloning-test-deps.sh); a skip means a venv made otherwise.
NEEDS_F5 = "f5-tts not installed: run scripts/cloning-test-deps.sh PYTHON (make test's install step does)"
NEEDS_MLX = "f5-tts-mlx/mlx not installed: run scripts/cloning-test-deps.sh PYTHON (make test's install step does)"
TINY_VOCOS = """\
feature_extractor:
  class_path: vocos.feature_extractors.MelSpectrogramFeatures
  init_args: {sample_rate: 24000, n_fft: 1024, hop_length: 256, n_mels: 100, padding: center}
backbone:
  class_path: vocos.models.VocosBackbone
  init_args: {input_channels: 100, dim: 32, intermediate_dim: 64, num_layers: 1}
head:
  class_path: vocos.heads.ISTFTHead
  init_args: {dim: 32, n_fft: 1024, hop_length: 256, padding: center}
"""


@dataclass(frozen=True)
class TinyF5:
    """A random toy checkpoint in the published files' formats, loaded by the backend's own loader."""

    folder: str
    name = "tiny-random"
    files = ()

    def build(self, device):
        from lora_training.synth.tts.f5 import build_model

        return build_model(TINY_ARCH, f"{self.folder}/model.safetensors", self.folder, device)


@pytest.fixture(scope="module")
def tiny_f5(tmp_path_factory):
    """Random weights for CFM(DiT) and Vocos, written as the published checkpoint and vocoder files."""
    pytest.importorskip("f5_tts", reason=NEEDS_F5)
    from importlib.resources import files

    import torch
    from f5_tts.model import CFM, DiT
    from f5_tts.model.utils import get_tokenizer
    from safetensors.torch import save_file
    from vocos import Vocos

    folder = tmp_path_factory.mktemp("tiny_f5")
    torch.manual_seed(0)
    (folder / "config.yaml").write_text(TINY_VOCOS)
    torch.save(Vocos.from_hparams(str(folder / "config.yaml")).state_dict(), folder / "pytorch_model.bin")
    # The library's vocabulary, which load_model reads when given none.
    vocab_char_map, vocab_size = get_tokenizer(str(files("f5_tts").joinpath("infer/examples/vocab.txt")), "custom")
    cfm = CFM(transformer=DiT(**TINY_ARCH, text_num_embeds=vocab_size, mel_dim=100),
              mel_spec_kwargs=dict(n_fft=1024, hop_length=HOP, win_length=1024, n_mel_channels=100,
                                   target_sample_rate=MODEL_RATE, mel_spec_type="vocos"),
              vocab_char_map=vocab_char_map)
    save_file({k: v.contiguous() for k, v in cfm.state_dict().items()}, folder / "model.safetensors")
    return TinyF5(str(folder))


def test_f5_clones_a_16khz_clip_as_long_as_f5s_duration_rule(tiny_f5, references):
    from lora_training.synth.tts.f5 import F5Backend

    backend = F5Backend(BackendOptions(reference_manifest=references), source=tiny_f5)
    backend.check()
    backend.load()
    rng = random.Random(0)
    clip = backend.synthesize(SPOKEN, rng)
    assert clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert np.isfinite(clip.samples).all() and clip.speaker == "f5-tts:beckett"
    # infer_batch_process's rule: new frames = ref frames / ref text bytes * gen text bytes / speed, with the
    # reference at 24 kHz (at 16 kHz it would count 2/3 of the frames) and its transcript given F5's ". "
    # ending plus the space infer_batch_process adds; Vocos turns n frames into n - 1 hops.
    replay = random.Random(0)
    replay.choice(backend.references)
    speed = replay.uniform(0.9, 1.1)
    assert sf.info(backend.references[0].audio).samplerate == MODEL_RATE  # chosen and resampled once
    ref_frames = sf.info(backend.references[0].audio).frames // HOP
    frames = int(ref_frames / len(BECKETT_TRANSCRIPT + "  ") * len(SPOKEN) / speed)
    assert len(clip.samples) / 16000 == pytest.approx((frames - 1) * HOP / MODEL_RATE, abs=0.005)

def test_f5_through_synthesize_dataset_writes_and_resumes(tiny_f5, references, tmp_path, monkeypatch):
    from functools import partial

    from lora_training.synth.synthesize import SynthConfig, synthesize_dataset
    from lora_training.synth.tts.f5 import F5Backend

    # The table builds backends by name; workers (spawned) receive this one pickled, source and all.
    monkeypatch.setitem(BACKENDS, "f5-tts", partial(F5Backend, source=tiny_f5))
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("Restart nginx now.\nRun kubectl apply.\n")
    cfg = SynthConfig(sentences=str(sentences), output=str(tmp_path / "out" / "s.jsonl"), backend="f5-tts",
                      reference_manifest=references, gate=False, workers=1)
    first = synthesize_dataset(cfg, progress=False)
    rows = load_manifest(cfg.output)
    assert (first.kept, len(rows)) == (2, 2)
    assert {r.speaker for r in rows} == {"f5-tts:beckett"} and {r.source for r in rows} == {"synthetic"}
    assert [r.text for r in rows] == ["Restart nginx now.", "Run kubectl apply."]
    assert all(sf.info(r.audio).samplerate == 16000 for r in rows)
    stamps = {r.id: os.stat(r.audio).st_mtime_ns for r in rows}
    second = synthesize_dataset(cfg, progress=False)
    assert (second.synthesized, second.resumed, second.clips) == (0, 2, 2)
    assert {r.id: os.stat(r.audio).st_mtime_ns for r in load_manifest(cfg.output)} == stamps


def test_f5_cli_offline_names_the_missing_weights_in_one_line(references, tmp_path):
    pytest.importorskip("f5_tts", reason=NEEDS_F5)
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("Run kubectl apply.\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty_cache")}
    done = subprocess.run(
        [sys.executable, "main.py", "synth", "--sentences", str(sentences), "--output", str(tmp_path / "o.jsonl"),
         "--backend", "f5-tts", "--reference-manifest", references, "--no-gate"],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert done.stderr.startswith("error: f5-tts backend: model weights not downloaded")
    assert "SWivid/F5-TTS/F5TTS_v1_Base/model_1250000.safetensors" in done.stderr
    assert not (tmp_path / "o.jsonl").exists()


@dataclass(frozen=True)
class TinyMlx:
    """f5_tts_mlx's own classes as `F5TTS.from_pretrained` assembles them, at a toy size, random."""

    folder: str
    name = "tiny-random"
    files = ()

    def build(self):
        from f5_tts_mlx.cfm import F5TTS
        from f5_tts_mlx.dit import DiT
        from f5_tts_mlx.duration import DurationPredictor, DurationTransformer
        from vocos_mlx import Vocos

        vocab = {c: i for i, c in enumerate([" ", *"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,'?!"])}
        duration = DurationPredictor(
            transformer=DurationTransformer(dim=32, depth=1, heads=2, text_dim=16, ff_mult=2, conv_layers=1,
                                            text_num_embeds=len(vocab) - 1),
            vocab_char_map=vocab,
        )
        return F5TTS(
            transformer=DiT(dim=32, depth=1, heads=2, ff_mult=2, text_dim=16, conv_layers=1,
                            text_num_embeds=len(vocab) - 1, text_mask_padding=True),
            vocab_char_map=vocab,
            vocoder=Vocos.from_hparams(f"{self.folder}/config.yaml").decode,
            duration_predictor=duration,
        )


def test_f5_mlx_clones_a_16khz_clip_with_a_random_small_model(references, tmp_path):
    pytest.importorskip("mlx.core", reason=NEEDS_MLX)
    pytest.importorskip("f5_tts_mlx", reason=NEEDS_MLX)
    from lora_training.synth.tts.f5_mlx import F5MlxBackend

    (tmp_path / "config.yaml").write_text(TINY_VOCOS)
    backend = F5MlxBackend(BackendOptions(reference_manifest=references), source=TinyMlx(str(tmp_path)))
    backend.references = load_references(backend.name, references)  # check() insists on Apple Silicon
    backend.load()
    clip = backend.synthesize(SPOKEN, random.Random(0))
    assert clip.samples.dtype == np.float32 and clip.samples.ndim == 1 and np.isfinite(clip.samples).all()
    assert clip.speaker == "f5-tts-mlx:beckett"
