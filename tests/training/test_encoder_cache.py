"""Cached cross-attention keys and values, and the cached encoder below top-layer adapters: the same
loss and adapter gradients as computing them each step, for LoRA and DoRA; the memory budget."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from lora_training.errors import ModelError
from lora_training.models import moonshine_ops as ops
from lora_training.models.adapters import apply_adapter
from lora_training.testing.tiny import tiny_moonshine
from lora_training.training.collate import Example
from lora_training.training.encoder_cache import EncoderCache


def _examples(n=3):
    rng = np.random.default_rng(0)
    return [Example(f"clip{i}", (rng.standard_normal(4000 + 1500 * i) * 0.1).astype(np.float32), [5, 6, 7, 2])
            for i in range(n)]


def _adapted(use_dora):
    model, _ = tiny_moonshine()
    peft = apply_adapter(model, r=4, alpha=8, dropout=0.0, use_dora=use_dora, sites="decoder",
                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2"])
    torch.manual_seed(1)
    for name, p in peft.named_parameters():
        if "lora_B" in name:  # B starts at zero: give the adapters something to say
            torch.nn.init.normal_(p, std=0.2)
    return peft.train()


def _loss_and_grads(peft, cache, examples):
    base = peft.get_base_model()
    encoded, context = cache.batch(base, examples)
    labels = torch.tensor([[5, 6, 7, 2], [8, 9, 2, -100], [5, 2, -100, -100]][: len(examples)])
    with context:
        loss = ops.decoder_loss(base, encoded.last_hidden_state, encoded.attention_mask, labels)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in peft.named_parameters() if p.requires_grad}
    peft.zero_grad()
    return loss.item(), grads


@pytest.mark.parametrize("use_dora", [False, True])
def test_cached_cross_projections_give_the_same_loss_and_gradients(use_dora):
    peft, examples = _adapted(use_dora), _examples()
    cached = EncoderCache(normalize=False, cross=True)
    plain_loss, plain = _loss_and_grads(peft, EncoderCache(normalize=False, cross=False), examples)
    for _ in range(2):  # the first fills the cache, the second reads it
        loss, grads = _loss_and_grads(peft, cached, examples)
        assert loss == pytest.approx(plain_loss, rel=1e-5)
        for name, grad in plain.items():
            torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6)
    assert set(cached.projections) == {"clip0", "clip1", "clip2"}
    # The real layers are back after each step, and k/v adapters got gradients through the cached path.
    layer = peft.get_base_model().get_decoder().layers[0].encoder_attn.k_proj
    assert isinstance(layer.base_layer, torch.nn.Linear)
    assert any("encoder_attn.k_proj.lora_A" in n and g.abs().sum() > 0 for n, g in grads.items())


def test_clips_past_the_budget_are_computed_each_step():
    peft, examples = _adapted(False), _examples()
    base = peft.get_base_model()
    one = sum(k.nbytes + v.nbytes for k, v in ops.cross_projections(
        base, ops.clip_encoder_states(base, examples[0].audio)))
    cache = EncoderCache(normalize=False, cross=True, budget=one)
    plain_loss, _ = _loss_and_grads(peft, EncoderCache(normalize=False, cross=False), examples)
    loss, _ = _loss_and_grads(peft, cache, examples)
    assert list(cache.projections) == ["clip0"] and cache.cross_bytes == one
    assert loss == pytest.approx(plain_loss, rel=1e-5)


def test_a_mismatched_batch_is_refused_not_misread():
    peft, examples = _adapted(False), _examples()
    base = peft.get_base_model()
    states = ops.clip_encoder_states(base, examples[0].audio)
    wrong = [(k[:-1][None], v[:-1][None]) for k, v in ops.cross_projections(base, states)]
    encoded = ops.padded_encoder_outputs([states])
    with pytest.raises(ValueError, match="precomputed cross projection"):
        with ops.precomputed_cross_projections(base, wrong):
            ops.decoder_loss(base, encoded.last_hidden_state, encoded.attention_mask, torch.tensor([[5, 2]]))


def _encoder_adapted(use_dora, encoder_layers):
    model, _ = tiny_moonshine()
    peft = apply_adapter(model, r=4, alpha=8, dropout=0.0, use_dora=use_dora, sites="both", encoder_layers=encoder_layers,
                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2"])
    torch.manual_seed(1)
    for name, p in peft.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.2)
    return peft.train()


class _Uncached:
    """The reference: the library's own encoder forward on each clip alone, with gradients, every step."""

    def batch(self, base, examples):
        encoder = base.get_encoder()
        states = [encoder(input_values=torch.from_numpy(e.audio)[None]).last_hidden_state[0] for e in examples]
        return ops.padded_encoder_outputs(states), contextlib.nullcontext()


@pytest.mark.parametrize("use_dora", [False, True])
@pytest.mark.parametrize("top", [1, 0])  # the top layer of two (the stem and layer 0 cached); every layer (the stem)
def test_cached_lower_encoder_gives_the_same_loss_and_gradients(use_dora, top):
    peft, examples = _encoder_adapted(use_dora, top), _examples()
    adapted = {n.split(".lora_")[0] for n, p in peft.named_parameters() if p.requires_grad and ".encoder." in n}
    assert {n.split(".encoder.layers.")[1][0] for n in adapted} == ({"1"} if top else {"0", "1"})
    plain_loss, plain = _loss_and_grads(peft, _Uncached(), examples)
    cached = EncoderCache(normalize=False, cross=True, frozen_layers=2 - (top or 2))
    for _ in range(2):  # the first fills the cache, the second reads it
        loss, grads = _loss_and_grads(peft, cached, examples)
        assert loss == pytest.approx(plain_loss, rel=1e-5)
        for name, grad in plain.items():
            torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6)
    assert set(cached.states) == {"clip0", "clip1", "clip2"} and not cached.projections  # no k/v cache: they change
    assert any(".encoder.layers.1.self_attn.q_proj.lora_A" in n and g.abs().sum() > 0 for n, g in grads.items())
    # What is cached is the state below the adapters, not the encoder's output.
    base = peft.get_base_model()
    assert not torch.allclose(cached.states["clip0"], ops.clip_encoder_states(base, examples[0].audio), atol=1e-3)


def test_more_encoder_layers_than_the_model_has_is_one_clear_error():
    model, _ = tiny_moonshine()
    with pytest.raises(ModelError, match=r"^encoder_layers: 3, expected at most 2 \(the layers"):
        apply_adapter(model, r=4, alpha=8, dropout=0.0, use_dora=False, sites="both", encoder_layers=3,
                      target_modules=["q_proj"])
