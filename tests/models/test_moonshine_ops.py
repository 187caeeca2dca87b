"""moonshine_ops against the library's public path, on a tiny random Moonshine.

These tests are the contract with transformers' private Moonshine internals: after an upgrade a
failure here, not in the product, says which internal moved. test_transformers_range.py runs this
file against the lowest transformers release pyproject.toml allows, so keep it fast and offline.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from lora_training.testing.signals import loud_syllables
from lora_training.data.audio import SAMPLE_RATE
from lora_training.models import moonshine_ops as ops
from lora_training.models.registry import max_new_tokens_for

SECONDS = (1.0, 1.07, 1.12, 2.0, 2.1)  # three clips within 12% of each other, two twice as long


@pytest.fixture(scope="module")
def model():
    """Tiny random Moonshine whose heads are padded (16 -> 24) like the real model's (52 -> 56).

    Weights drawn wider than the default (std 0.3, not 0.02) so greedy decoding emits varied
    tokens rather than one token repeated, which would hide a decoder that ignores its cache.
    """
    from transformers import MoonshineForConditionalGeneration

    from lora_training.testing.tiny import tiny_moonshine_config

    config = tiny_moonshine_config()
    config.initializer_range = 0.3
    config.pad_head_dim_to_multiple_of = 12
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MoonshineForConditionalGeneration(config).eval()
    assert any(getattr(m, "head_dim_padding", 0) for m in model.modules())
    return model


@pytest.fixture(scope="module")
def audios():
    rng = np.random.default_rng(2)
    return [loud_syllables(s, rng) for s in SECONDS]


def _generate_alone(model, audio: np.ndarray, budget: int) -> list[int]:
    """The library's greedy decoding of one clip: token ids without start token and EOS."""
    with torch.inference_mode():
        ids = model.generate(input_values=torch.from_numpy(audio)[None], do_sample=False, num_beams=1,
                             max_new_tokens=budget)[0].tolist()[1:]
    eos = model.generation_config.eos_token_id
    return ids[: ids.index(eos)] if eos in ids else ids


def test_greedy_decode_equals_generate_on_each_clip_alone(model, audios):
    """Batched encoding, decoding together with rows leaving at EOS or at their own budget, and
    unpadded heads all keep the tokens of `generate` on each clip alone."""
    budgets = [max_new_tokens_for(len(a) / SAMPLE_RATE) for a in audios]
    first = _generate_alone(model, audios[0], budgets[0])
    eos = first[3]  # a token clip 0 emits mid-way becomes EOS, so rows finish at different steps
    saved = model.config.eos_token_id, model.generation_config.eos_token_id
    model.config.eos_token_id = model.generation_config.eos_token_id = eos
    try:
        alone = [_generate_alone(model, a, b) for a, b in zip(audios, budgets)]
        with torch.inference_mode(), ops.unpadded_heads(model):
            assert not any(getattr(m, "head_dim_padding", 0) for m in model.modules())
            decoded = ops.decode_states(model, ops.encode_clips(model, audios), budgets)
    finally:
        model.config.eos_token_id, model.generation_config.eos_token_id = saved

    assert decoded == alone
    assert len(alone[0]) == 3 < budgets[0], "clip 0 must stop at its EOS"
    assert any(len(ids) == b for ids, b in zip(alone, budgets)), "some clip must stop at its budget"
    assert len({len(ids) for ids in alone}) > 2, "rows must leave the batch at different steps"
    assert any(getattr(m, "head_dim_padding", 0) for m in model.modules()), "padding restored on exit"


@pytest.mark.parametrize("normalize", [False, True])
def test_encoding_clips_batched_equals_each_alone(model, audios, normalize):
    """Padding must not change a clip's encoding: Moonshine's GroupNorm spans time, so a naive padded batch does."""
    with torch.inference_mode():
        batched = ops.encode_clips(model, audios, normalize=normalize)
        singles = [ops.encode_clips(model, [a], normalize=normalize)[0] for a in audios]
        library = [ops.clip_encoder_states(model, a, normalize=normalize) for a in audios]  # the encoder's own forward

    assert len(batched[0]) < len(batched[2]) < len(batched[3])
    for clip, single, states in zip(batched, singles, library):
        assert len(clip) == len(states)
        torch.testing.assert_close(clip.states, states, rtol=1e-4, atol=1e-5)
        for (k, v), (k1, v1) in zip(clip.cross, single.cross):
            torch.testing.assert_close(k, k1, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(v, v1, rtol=1e-4, atol=1e-5)
    if not normalize:
        # The naive padded encoder does differ, or this test would prove nothing.
        width = max(len(a) for a in audios[:3])
        values = torch.zeros((3, width))
        mask = torch.zeros((3, width), dtype=torch.long)
        for row, audio in enumerate(audios[:3]):
            values[row, : len(audio)] = torch.from_numpy(audio)
            mask[row, : len(audio)] = 1
        with torch.inference_mode():
            naive = model.get_encoder()(input_values=values, attention_mask=mask).last_hidden_state
        frames = len(library[0])
        assert not torch.allclose(naive[0, :frames], library[0], atol=1e-3)


def test_decoder_loss_equals_the_models_loss_and_gradients(model, audios):
    """Projecting only at real label positions changes neither the loss nor its gradients."""
    outputs = ops.padded_encoder_outputs([ops.clip_encoder_states(model, a) for a in audios[1:4]])
    rng = np.random.default_rng(5)
    rows = [[*rng.integers(3, model.config.vocab_size, n).tolist(), model.config.eos_token_id] for n in (4, 9, 1)]
    labels = torch.full((len(rows), max(map(len, rows))), ops.IGNORE_INDEX)
    for row, ids in enumerate(rows):
        labels[row, : len(ids)] = torch.tensor(ids)
    weight = model.get_decoder().layers[0].self_attn.q_proj.weight

    expected = model(encoder_outputs=outputs, labels=labels).loss
    (expected_grad,) = torch.autograd.grad(expected, weight)
    got = ops.decoder_loss(model, outputs.last_hidden_state, outputs.attention_mask, labels)
    (got_grad,) = torch.autograd.grad(got, weight)

    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got_grad, expected_grad, rtol=1e-4, atol=1e-6)
    assert outputs.attention_mask.tolist()[0].count(0) > 0, "the batch must include padded frames"


def test_decoder_loss_runs_the_heads_unpadded_and_restores_the_padding(model, audios):
    """No head-dimension padding (a copy of every layer's keys and values) while the loss runs;
    the model keeps its padding for everything else."""
    from unittest import mock

    outputs = ops.padded_encoder_outputs([ops.clip_encoder_states(model, a) for a in audios[:2]])
    labels = torch.tensor([[5, 6, model.config.eos_token_id], [7, model.config.eos_token_id, ops.IGNORE_INDEX]])
    paddings = [m.head_dim_padding for m in model.modules() if hasattr(m, "head_dim_padding")]
    assert any(paddings), "the fixture's heads must be padded for the test to mean anything"
    with mock.patch.object(torch.nn.functional, "pad", wraps=torch.nn.functional.pad) as pad:
        ops.decoder_loss(model, outputs.last_hidden_state, outputs.attention_mask, labels).backward()
    assert pad.call_count == 0
    assert [m.head_dim_padding for m in model.modules() if hasattr(m, "head_dim_padding")] == paddings


def test_no_deprecation_warnings(model, audios):
    """No warning at all, deprecations included: `past_key_values` warned on every decoder step in transformers 5.24."""
    budgets = [5, 3, 4]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FutureWarning is how transformers announces removals
        with torch.inference_mode(), ops.unpadded_heads(model):
            ops.decode_states(model, ops.encode_clips(model, audios[:3]), budgets)
        outputs = ops.padded_encoder_outputs([ops.clip_encoder_states(model, a) for a in audios[:2]])
        labels = torch.tensor([[5, 6, model.config.eos_token_id], [7, model.config.eos_token_id, ops.IGNORE_INDEX]])
        ops.decoder_loss(model, outputs.last_hidden_state, outputs.attention_mask, labels).backward()


def test_logits_hook_sees_each_rows_tokens_and_steers_its_argmax(model, audios):
    """The hook gets every unfinished row's tokens so far, aligned with the logits' rows even after rows
    leave; adding nothing keeps `decode_states`' tokens, a large bonus makes its token the argmax."""
    budgets = [max_new_tokens_for(len(a) / SAMPLE_RATE) for a in audios]
    budgets[1] = 2  # a row that leaves early, so later steps see fewer rows
    seen: list[list[list[int]]] = []

    def record(logits, histories):
        assert logits.shape[0] == len(histories)
        seen.append([list(h) for h in histories])

    forced = 7

    def force_third(logits, histories):
        for row, history in enumerate(histories):
            if len(history) == 2:
                logits[row, forced] += 1e4

    with torch.inference_mode(), ops.unpadded_heads(model):
        clips = ops.encode_clips(model, audios)
        plain = ops.decode_states(model, clips, budgets)
        hooked = ops.decode_states(model, clips, budgets, bias=record)
        steered = ops.decode_states(model, clips, budgets, bias=force_third)

    assert hooked == plain
    assert seen[0] == [[]] * len(audios) and len(seen[-1]) < len(audios)
    for step, histories in enumerate(seen):
        assert all(len(h) == step for h in histories)
        assert all(any(h == p[:step] for p in plain) for h in histories)
    assert steered[1] == plain[1]
    assert sum(len(ids) > 2 for ids in steered) >= 3
    assert all(ids[2] == forced for ids in steered if len(ids) > 2)
    assert all(ids[:2] == p[:2] for ids, p in zip(steered, plain))
