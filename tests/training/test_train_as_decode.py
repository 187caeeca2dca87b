"""Train as you decode: encoder adapters learn on each clip encoded as transcription encodes it.

Moonshine's GroupNorm spans time, so a clip zero-padded into a batch is encoded differently from
the same clip alone, which is how every clip is decoded. These tests pin the training path to the
unpadded encoding and show that the old zero-padded one differs, so they can fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lora_training.config import ExperimentConfig
from lora_training.models import moonshine_ops as ops
from lora_training.testing.signals import loud_syllables
from lora_training.training.collate import Example, pad_audio, pad_labels
from lora_training.training.trainer import Trainer

SECONDS = (0.6, 1.0, 1.6)  # clearly different lengths: the short clips are padded by 60% and more


@pytest.fixture(scope="module")
def audios():
    rng = np.random.default_rng(3)
    return [loud_syllables(s, rng) for s in SECONDS]


def _live_lora(model) -> None:
    """LoRA B starts at zero, which would make the adapters no-ops; give them weight so they matter."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.2, generator=generator)


def _trainer(tmp_path, tiny_model_dir, tiny_manifests, **more):
    train, evals = tiny_manifests
    cfg = ExperimentConfig(model_id=str(tiny_model_dir), train_manifest=str(train), eval_manifest=str(evals),
                           max_steps=1, warmup_steps=0, lr=5e-3, batch_size=4, lora_r=4, lora_alpha=8,
                           lora_dropout=0.0, adapter_sites="both", num_threads=1, device="cpu", safety_in_loop=0,
                           **more)
    return Trainer(cfg, tmp_path)


@pytest.fixture
def trainer(tmp_path, tiny_model_dir, tiny_manifests):
    """A set-up trainer with adapters in both sites, no dropout, so its loss is deterministic."""
    trainer = _trainer(tmp_path, tiny_model_dir, tiny_manifests)
    trainer.setup(resume=False)
    trainer.model.train()
    yield trainer
    trainer.cleanup()


def test_batched_training_states_equal_each_clip_encoded_alone(trainer, audios):
    model = trainer.accelerator.unwrap_model(trainer.model)
    _live_lora(model)
    base = model.get_base_model()

    examples = [Example(f"clip{i}", a, [2]) for i, a in enumerate(audios)]
    encoded, _ = trainer.encoder_cache.batch(base, examples)  # the trainer's path: the stem cached, layers batched
    alone = [ops.clip_encoder_states(base, a) for a in audios]  # the encoder's own forward, as decoding sees it

    assert encoded.last_hidden_state.requires_grad
    for row, states in enumerate(alone):
        assert int(encoded.attention_mask[row].sum()) == len(states)
        torch.testing.assert_close(encoded.last_hidden_state[row, : len(states)], states, rtol=1e-4, atol=1e-5)
    # The old zero-padded batch does differ for the shorter clips, or this test would prove nothing.
    values, mask = pad_audio(audios)
    with torch.no_grad():
        padded = base.get_encoder()(input_values=values, attention_mask=mask).last_hidden_state
    for row in (0, 1):
        frames = len(alone[row])
        assert not torch.allclose(padded[row, :frames], alone[row], atol=1e-3)


def test_training_loss_is_the_mean_token_loss_of_unpadded_clips(trainer, audios):
    model = trainer.accelerator.unwrap_model(trainer.model)
    _live_lora(model)
    base = model.get_base_model()
    labels = [e.labels for e in trainer.train_examples[: len(audios)]]
    assert len({len(x) for x in labels}) > 1, "label rows of different lengths exercise the label padding"
    examples = [Example(f"clip{i}", a, x) for i, (a, x) in enumerate(zip(audios, labels))]

    loss = trainer._loss(examples)

    total = 0.0
    with torch.no_grad():
        for audio, row in zip(audios, labels):
            states = ops.padded_encoder_outputs([ops.clip_encoder_states(base, audio)])
            total += base(encoder_outputs=states, labels=torch.tensor([row])).loss.item() * len(row)
    expected = total / sum(map(len, labels))
    values, mask = pad_audio(audios)
    with torch.no_grad():
        padded = base(input_values=values, attention_mask=mask, labels=pad_labels(labels)).loss.item()
    # Measured: 1e-7 relative apart; the old zero-padded loss is 5e-5 off (a random model barely listens).
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert padded != pytest.approx(expected, rel=1e-5), "the old zero-padded loss differs"


def test_one_step_moves_every_encoder_adapter(trainer):
    assert trainer.encoder_cache.frozen_layers == 0  # every encoder layer adapted: only the stem is cached
    model = trainer.accelerator.unwrap_model(trainer.model)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if ".encoder." in n and "lora_B" in n}
    assert before

    trainer.train_step()

    # B starts at zero, where weight decay does nothing: only a gradient can move it.
    after = dict(model.named_parameters())
    unchanged = [n for n, p in before.items() if torch.equal(after[n].detach(), p)]
    assert not unchanged


def test_top_layer_adapters_train_on_the_cached_lower_encoder(tmp_path, tiny_model_dir, tiny_manifests):
    trainer = _trainer(tmp_path, tiny_model_dir, tiny_manifests, encoder_layers=1)
    trainer.setup(resume=False)
    try:
        model = trainer.accelerator.unwrap_model(trainer.model)
        encoder = {n for n, p in model.named_parameters() if ".encoder." in n and "lora_B" in n}
        assert encoder and all(".encoder.layers.1." in n for n in encoder)
        before = {n: p.detach().clone() for n, p in model.named_parameters() if n in encoder}
        trainer.train_step()
        after = dict(model.named_parameters())
        assert not [n for n, p in before.items() if torch.equal(after[n].detach(), p)]
        assert trainer.encoder_cache.frozen_layers == 1 and trainer.encoder_cache.states
    finally:
        trainer.cleanup()
