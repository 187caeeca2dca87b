"""Pocket TTS executed: the real `pocket_tts` flow LM and Mimi codec at a toy size with random
weights, loaded from a config and a safetensors file by the library's own loader, so everything
but the published weights runs offline; and the one-line failures when those weights are missing
or the hub refuses the gated voice-cloning ones."""

import importlib.util
import math
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from lora_training.data.manifest import load_manifest
from lora_training.errors import ModelError
from lora_training.models.embedded import BECKETT_TRANSCRIPT
from lora_training.synth.tts import BACKENDS, BackendOptions

# find_spec, not importorskip: importing pocket_tts at collection would set torch's threads (below).
pytestmark = pytest.mark.skipif(importlib.util.find_spec("pocket_tts") is None,
                                reason="pocket-tts not installed (pip install -e '.[pocket]')")

REPO = Path(__file__).resolve().parents[2]
SPOKEN = "Run cube control apply before the demo."
SENTENCES = ["Restart nginx now.", "Run kubectl apply."]
# Mimi's frames: 12.5 per second, 1920 samples at 24 kHz, 1280 at 16 kHz.
FRAME_RATE, FRAME_16K = 12.5, 1280
# The released configs' layout at a toy size: a 1-layer flow LM, Mimi with its real strides
# (6*5*4 samples per encoder step, 16 steps per frame) but few channels.
SEANET = dict(channels=1, n_residual_layers=1, ratios=[6, 5, 4], kernel_size=3, residual_kernel_size=3,
              last_kernel_size=3, dilation_base=2, pad_mode="constant", compress=2)
MIMI_TRANSFORMER = dict(num_heads=2, num_layers=1, layer_scale=0.01, context=50, dim_feedforward=32)
TINY_MIMI = dict(dtype="float32", sample_rate=24000, channels=1, frame_rate=FRAME_RATE, inner_dim=8, outer_dim=16,
                 seanet=dict(SEANET, dimension=16, n_filters=2),
                 transformer=dict(MIMI_TRANSFORMER, d_model=16, input_dimension=16, output_dimensions=[16]),
                 quantizer=dict(dimension=8, output_dimension=16))


def tiny_flow_lm(tokenizer: str, n_bins: int) -> dict:
    return dict(dtype="float32", insert_bos_before_voice=True, flow=dict(depth=1, dim=16),
                transformer=dict(d_model=32, hidden_scale=2, max_period=10000, num_heads=2, num_layers=1),
                lookup_table=dict(dim=32, n_bins=n_bins, tokenizer="sentencepiece", tokenizer_path=tokenizer))


@dataclass(frozen=True)
class TinyPocket:
    """A random toy model in the published formats (YAML config + safetensors), loaded by
    `TTSModel.load_model` as `Pretrained` loads the real one."""

    config: str
    name = "tiny-random"
    files = ()

    def build(self):
        from pocket_tts import TTSModel

        return TTSModel.load_model(config=self.config)


@pytest.fixture(scope="module", autouse=True)
def torch_threads():
    """pocket_tts calls torch.set_num_threads(1) on import: these tests run as its worker does,
    the tests after them with the threads they had."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_pocket(tmp_path_factory):
    """A sentencepiece model trained on the test's sentences (the real one is a hub download),
    the library's own random initialisation, saved as the weights file a config points at."""
    import sentencepiece as spm
    import torch
    from safetensors.torch import save_file

    from pocket_tts import TTSModel

    folder = tmp_path_factory.mktemp("tiny_pocket")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([BECKETT_TRANSCRIPT, SPOKEN, *SENTENCES, "Now, then; what: yes! no?"]),
        model_prefix=str(folder / "tokenizer"), vocab_size=60, model_type="bpe", hard_vocab_limit=False,
        minloglevel=2,
    )
    n_bins = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model")).vocab_size()
    config = dict(flow_lm=tiny_flow_lm(str(folder / "tokenizer.model"), n_bins), mimi=TINY_MIMI)
    (folder / "random.yaml").write_text(yaml.safe_dump(config))
    torch.manual_seed(0)
    model = TTSModel.load_model(config=str(folder / "random.yaml"))  # no weights_path: random, as built
    # Without weights the voice projection is zeros (the reference would not matter); and a random
    # EOS head stops anywhere: switched off, every clip runs to the model's budget for its text.
    torch.nn.init.normal_(model.flow_lm.speaker_proj_weight, std=0.1)
    torch.nn.init.constant_(model.flow_lm.out_eos.bias, -1e4)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
    (folder / "tiny.yaml").write_text(yaml.safe_dump({**config, "weights_path": str(folder / "model.safetensors")}))
    return TinyPocket(str(folder / "tiny.yaml"))


def test_pocket_clones_a_16khz_clip_as_long_as_the_models_budget_for_the_text(tiny_pocket, references):
    import sentencepiece as spm

    from lora_training.synth.tts.pocket import PocketBackend

    backend = PocketBackend(BackendOptions(reference_manifest=references), source=tiny_pocket)
    backend.check()
    backend.load()
    clip = backend.synthesize(SPOKEN, random.Random(0))
    assert clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert np.isfinite(clip.samples).all() and np.abs(clip.samples).max() > 0
    assert clip.speaker == "pocket-tts:beckett"
    assert sf.info(backend.references[0].audio).samplerate == 24000  # chosen and resampled once
    # TTSModel._estimate_max_gen_len: tokens / 3 per second plus 2 s, in frames (EOS is off).
    tokenizer = spm.SentencePieceProcessor(model_file=str(Path(tiny_pocket.config).with_name("tokenizer.model")))
    frames = math.ceil((len(tokenizer.encode(SPOKEN)) / 3 + 2) * FRAME_RATE)
    assert len(clip.samples) == frames * FRAME_16K
    # Every random draw comes from the rng (the decoder thread batches frames as they come: float noise).
    again = backend.synthesize(SPOKEN, random.Random(0))
    np.testing.assert_allclose(again.samples, clip.samples, atol=1e-5)
    assert not np.allclose(backend.synthesize(SPOKEN, random.Random(1)).samples, clip.samples, atol=1e-3)


def test_pocket_through_synthesize_dataset_writes_and_resumes(tiny_pocket, references, tmp_path, monkeypatch):
    from functools import partial

    from lora_training.synth.synthesize import SynthConfig, synthesize_dataset
    from lora_training.synth.tts.pocket import PocketBackend

    # The table builds backends by name; workers (spawned) receive this one pickled, source and all.
    monkeypatch.setitem(BACKENDS, "pocket-tts", partial(PocketBackend, source=tiny_pocket))
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("\n".join(SENTENCES) + "\n")
    cfg = SynthConfig(sentences=str(sentences), output=str(tmp_path / "out" / "s.jsonl"), backend="pocket-tts",
                      reference_manifest=references, gate=False, workers=1)
    first = synthesize_dataset(cfg, progress=False)
    rows = load_manifest(cfg.output)
    assert (first.kept, len(rows)) == (2, 2)
    assert {r.speaker for r in rows} == {"pocket-tts:beckett"} and {r.source for r in rows} == {"synthetic"}
    assert [r.text for r in rows] == SENTENCES
    assert all(sf.info(r.audio).samplerate == 16000 for r in rows)
    stamps = {r.id: os.stat(r.audio).st_mtime_ns for r in rows}
    second = synthesize_dataset(cfg, progress=False)
    assert (second.synthesized, second.resumed, second.clips) == (0, 2, 2)
    assert {r.id: os.stat(r.audio).st_mtime_ns for r in load_manifest(cfg.output)} == stamps


def test_pocket_cli_offline_names_the_missing_weights_in_one_line(references, tmp_path):
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("Run kubectl apply.\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty_cache")}
    done = subprocess.run(
        [sys.executable, "main.py", "synth", "--sentences", str(sentences), "--output", str(tmp_path / "o.jsonl"),
         "--backend", "pocket-tts", "--reference-manifest", references, "--no-gate"],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert done.stderr.startswith("error: pocket-tts backend: model weights not downloaded")
    assert "kyutai/pocket-tts/languages/english/model.safetensors" in done.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_pocket_check_finds_weights_cached_under_the_pinned_commit(references, tmp_path, monkeypatch):
    """The library downloads by commit, so the cache has that snapshot and no `main` ref: offline,
    check() must look there or it would call downloaded weights missing."""
    from huggingface_hub import constants

    from lora_training.synth.tts.pocket import WEIGHTS, PocketBackend

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for repo, name, revision in WEIGHTS:
        path = tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / revision / name
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
    backend = PocketBackend(BackendOptions(reference_manifest=references))
    backend.check()
    assert [r.id for r in backend.references] == ["beckett"]


def test_pocket_load_refuses_the_weights_without_voice_cloning(tiny_pocket, references, tmp_path, monkeypatch):
    """Online without access to the gated weights, the library falls back to weights without a
    voice projection and would speak in no one's voice: load() says so in one line instead."""
    from huggingface_hub import constants

    from lora_training.synth.tts.cloning import load_references
    from lora_training.synth.tts.pocket import WEIGHTS, PocketBackend

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # the hub refuses: as a gated repo does
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    config = yaml.safe_load(Path(tiny_pocket.config).read_text())
    repo, name, revision = WEIGHTS[0]
    config.update(weights_path=f"hf://{repo}/{name}@{revision}",
                  weights_path_without_voice_cloning=config["weights_path"])
    (tmp_path / "gated.yaml").write_text(yaml.safe_dump(config))
    backend = PocketBackend(BackendOptions(reference_manifest=references), source=TinyPocket(str(tmp_path / "gated.yaml")))
    backend.references = load_references(backend.name, references)
    with pytest.raises(ModelError, match=r"^pocket-tts backend: the hub refused the voice-cloning weights, .*kyutai/pocket-tts"):
        backend.load()


def test_pocket_weights_are_the_ones_the_package_config_pins():
    """WEIGHTS (what check() looks for in the hub cache) against the package's own English config."""
    from pocket_tts.utils.config import CONFIGS_DIR, load_config

    from lora_training.synth.tts.pocket import LANGUAGE, WEIGHTS

    config = load_config(CONFIGS_DIR / f"{LANGUAGE}.yaml")
    (model_repo, model, model_rev), (tok_repo, tok, tok_rev) = WEIGHTS
    assert config.weights_path == f"hf://{model_repo}/{model}@{model_rev}"
    assert config.flow_lm.lookup_table.tokenizer_path == f"hf://{tok_repo}/{tok}@{tok_rev}"
    assert config.mimi.weights_path is None and config.flow_lm.weights_path is None  # one file holds both
