"""Decoding a DoRA adapter computes each layer's weight norm once per call, never a stale one."""

import numpy as np
import pytest
import torch

from lora_training.evaluation.transcribe import greedy_transcribe
from lora_training.models.adapters import apply_adapter, frozen_dora
from lora_training.models.registry import resolve_model


@pytest.fixture
def dora_model(tiny_model_dir):
    torch.manual_seed(0)
    model, processor = resolve_model(str(tiny_model_dir), device="cpu")
    model = apply_adapter(model, r=4, alpha=8, dropout=0.1, use_dora=True, sites="decoder",
                          target_modules=["q_proj", "v_proj", "fc1", "fc2"])
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    return model, processor


def _norm_calls(monkeypatch):
    calls = []
    real = torch.linalg.norm
    monkeypatch.setattr(torch.linalg, "norm", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_the_norm_is_computed_once_per_layer_and_transcripts_do_not_change(dora_model, monkeypatch):
    model, processor = dora_model
    audio = [0.1 * np.random.default_rng(0).standard_normal(16000).astype(np.float32)]
    layers = sum(1 for m in model.modules() if hasattr(m, "_dora_cache"))
    calls = _norm_calls(monkeypatch)
    cached = greedy_transcribe(model, processor, audio)
    assert len(calls) == layers  # without the cache: once per layer per decoded token
    calls.clear()
    with torch.inference_mode():
        model.eval()
        reference = model.generate(input_values=torch.from_numpy(audio[0])[None], max_new_tokens=64)
    assert len(calls) > layers
    assert cached[0] and processor.decode(reference[0], skip_special_tokens=True).strip().startswith(cached[0])


def test_weights_changed_between_decodes_are_used(dora_model):
    model, processor = dora_model
    audio = [0.1 * np.random.default_rng(1).standard_normal(16000).astype(np.float32)]
    before = greedy_transcribe(model, processor, audio)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_magnitude_vector" in name:
                p.mul_(3.0)
    with frozen_dora(model):  # a cache filled here must not outlive the block
        pass
    after = greedy_transcribe(model, processor, audio)
    model.eval()
    with torch.inference_mode():
        fresh = model.generate(input_values=torch.from_numpy(audio[0])[None], max_new_tokens=64)
    assert processor.decode(fresh[0], skip_special_tokens=True).strip().startswith(after[0])
    assert before != after
