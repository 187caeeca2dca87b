"""The embedded Moonshine base: a real transformers model, built offline, identical to onnxruntime.

Uses the normal cache (LORA_TRAINING_CACHE or ~/.cache/lora_training): the first run converts
(~10 s), later runs load the cached folder.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lora_training.data.audio import load_audio
from lora_training.models.embedded import beckett_wav, embedded_model_dir, source_graphs
from lora_training.models.registry import greedy_decode, resolve_model

pytestmark = pytest.mark.real_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def base():
    """(model, processor, folder, beckett samples), loaded once for the module."""
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    folder = embedded_model_dir()
    model, processor = resolve_model("embedded:moonshine-base")
    return model, processor, folder, load_audio(beckett_wav())


@pytest.fixture(scope="module")
def beckett_ids(base):
    model, processor, _, audio = base
    return greedy_decode(model, processor, audio)


def test_every_tensor_loads_with_no_missing_or_unexpected_keys(base):
    from safetensors import safe_open
    from transformers import MoonshineForConditionalGeneration

    _, _, folder, _ = base
    _, info = MoonshineForConditionalGeneration.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert len(list(f.keys())) == 210  # proj_out is tied to the embedding, stored once


def test_beckett_transcript(base, beckett_ids):
    text = base[1].decode(beckett_ids, skip_special_tokens=True).lower()
    for phrase in ("ever tried", "fail again", "fail better"):
        assert phrase in text, text


def test_token_ids_equal_onnxruntime_on_the_original_graphs(base, beckett_ids):
    from lora_training.models.ort_reference import ort_greedy_decode

    assert beckett_ids[0] == 1 and beckett_ids[-1] == 2 and len(beckett_ids) > 10
    assert beckett_ids == ort_greedy_decode(base[3])


def test_provenance_names_sources_versions_and_tensor_count(base):
    import hashlib

    _, _, folder, _ = base
    provenance = json.loads((folder / "provenance.json").read_text())
    assert provenance["tensors"] == 210
    assert provenance["model"] == "embedded:moonshine-base"
    assert {"moonshine-cpp", "useful-moonshine-onnx", "onnxruntime", "transformers", "torch"} <= set(
        provenance["packages"]
    )
    encoder, _ = source_graphs()
    recorded = {Path(s["path"]).name: s["sha256"] for s in provenance["sources"]}
    assert recorded["encoder_model.ort"] == hashlib.sha256(encoder.read_bytes()).hexdigest()
    assert provenance["conversion_seconds"] > 0


def test_second_call_reuses_the_cache(base):
    _, _, folder, _ = base
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    start = time.perf_counter()
    assert embedded_model_dir() == folder
    assert time.perf_counter() - start < 1.0
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp


def test_cli_models_check_json(base):
    env = {**os.environ, "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "main.py", "models", "check", "embedded:moonshine-base", "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["resolved"] == str(base[2])
    assert "fail better" in result["transcript"].lower()
    assert result["audio_seconds"] == pytest.approx(9.96, abs=0.05)
