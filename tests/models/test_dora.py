"""DoraOneBase against peft's own DoRA forward: equal where models/dora.py says so, and otherwise
different by exactly the documented terms."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora.variants import DoraLinearVariant

from lora_training.models.adapters import apply_adapter
from lora_training.models.dora import DoraOneBase, use_one_base_dora
from lora_training.testing.tiny import tiny_moonshine


def _pair(dropout: float, bias: bool):
    """(peft's DoRA layer, ours): the same weights, B and the magnitude moved off their no-op start."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        base = torch.nn.Sequential(torch.nn.Linear(12, 10, bias=bias))
        peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, use_dora=True,
                                                     target_modules=["0"]))
        layer = peft_model.base_model.model[0]
        torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.3)
        layer.lora_magnitude_vector["default"].weight.data.mul_(torch.linspace(0.7, 1.3, 10))
    ours = copy.deepcopy(layer)
    assert use_one_base_dora(ours) == 1
    return layer, ours


def _run(layer, x, upstream, seed: int):
    """Output and the gradients of x, A, B and the magnitude for `upstream`, with dropout drawn from `seed`."""
    x = x.clone().requires_grad_()
    torch.manual_seed(seed)
    y = layer(x)
    params = [layer.lora_A["default"].weight, layer.lora_B["default"].weight,
              layer.lora_magnitude_vector["default"].weight]
    grads = torch.autograd.grad(y, [x, *params], upstream)
    return y.detach(), dict(zip(("x", "A", "B", "magnitude"), grads))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mode, dropout", [("eval", 0.3), ("train", 0.0)])
def test_equals_peft_without_dropout_in_play(mode, dropout, bias):
    """In eval mode, or training without dropout, output and every gradient are peft's."""
    layer, ours = _pair(dropout, bias)
    layer.train(mode == "train")
    ours.train(mode == "train")
    x, upstream = torch.randn(5, 7, 12), torch.randn(5, 7, 10)
    expected, expected_grads = _run(layer, x, upstream, seed=1)
    got, got_grads = _run(ours, x, upstream, seed=1)
    torch.testing.assert_close(got, expected)
    for name in expected_grads:
        torch.testing.assert_close(got_grads[name], expected_grads[name], msg=name)


@pytest.mark.parametrize("bias", [True, False])
def test_with_dropout_differs_from_peft_by_the_documented_terms(bias):
    """Same dropout mask: the output differs by (m/n − 1)·W·(x − drop(x)); A and B get peft's gradients;
    the magnitude's gradient differs by Σ upstream·W·(x − drop(x)) / n."""
    layer, ours = _pair(0.3, bias)
    layer.train()
    ours.train()
    x, upstream = torch.randn(5, 7, 12), torch.randn(5, 7, 10)
    expected, expected_grads = _run(layer, x, upstream, seed=1)
    got, got_grads = _run(ours, x, upstream, seed=1)

    torch.manual_seed(1)
    dropped = layer.lora_dropout["default"](x)
    assert (dropped == 0).any(), "the test needs dropout to act"
    weight = layer.get_base_layer().weight
    delta = layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    norm = torch.linalg.norm(weight + layer.scaling["default"] * delta, dim=1)
    magnitude = layer.lora_magnitude_vector["default"].weight
    missed = (x - dropped) @ weight.T  # W·(x − drop(x)): the base pass peft runs on the dropped input
    assert ((magnitude / norm - 1) * missed).abs().max() > 1e-2, "the outputs must differ for the test to mean anything"
    torch.testing.assert_close(got - expected, (magnitude / norm - 1) * missed.detach())
    torch.testing.assert_close(got_grads["A"], expected_grads["A"])
    torch.testing.assert_close(got_grads["B"], expected_grads["B"])
    torch.testing.assert_close(got_grads["magnitude"] - expected_grads["magnitude"],
                               (upstream * missed).sum((0, 1)).detach() / norm)


def test_apply_adapter_swaps_every_dora_layer_and_keeps_the_models_output():
    """On Moonshine every adapted Linear gets DoraOneBase; in eval mode the logits are peft's."""
    model, _ = tiny_moonshine()
    config = dict(r=4, alpha=8, dropout=0.1, sites="both", target_modules=["q_proj", "v_proj", "fc1", "fc2"])
    ours = apply_adapter(copy.deepcopy(model), use_dora=True, **config)
    theirs = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, use_dora=True,
                                                             target_modules=ours.peft_config["default"].target_modules))
    variants = [v for m in ours.modules() for v in (getattr(m, "lora_variant", None) or {}).values()]
    assert len(variants) == 2 * 4 + 2 * 6  # encoder layers: q, v, fc1, fc2; decoder layers: also cross-attention q, v
    assert all(type(v) is DoraOneBase for v in variants)
    assert all(type(v) is DoraLinearVariant for m in theirs.modules()
               for v in (getattr(m, "lora_variant", None) or {}).values())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        for p in ours.parameters():
            if p.requires_grad:
                p.data.add_(0.05 * torch.randn_like(p))
    theirs.load_state_dict(ours.state_dict())
    values = torch.randn(2, 4000)
    labels = torch.tensor([[5, 6, 2], [7, 2, 2]])
    with torch.no_grad():
        got = ours.eval()(input_values=values, labels=labels).logits
        expected = theirs.eval()(input_values=values, labels=labels).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_load_adapter_runs_a_saved_dora_adapter_with_the_forward_it_trained_with(tmp_path):
    from lora_training.models.adapters import base_fingerprint, load_adapter, save_adapter

    model, _ = tiny_moonshine()
    fingerprint = base_fingerprint(model)
    trained = apply_adapter(copy.deepcopy(model), r=4, alpha=8, dropout=0.1, use_dora=True, sites="decoder",
                            target_modules=["q_proj", "fc1"])
    save_adapter(trained, tmp_path / "adapter", base_model="tiny", fingerprint=fingerprint, info={})
    loaded = load_adapter(model, tmp_path / "adapter", base_model="tiny")
    variants = [v for m in loaded.modules() for v in (getattr(m, "lora_variant", None) or {}).values()]
    assert len(variants) == 2 * 3 and all(type(v) is DoraOneBase for v in variants)


def test_frozen_dora_computes_the_weight_norm_once_while_decoding():
    """adapters.frozen_dora's cache serves DoraOneBase too: one norm for many forwards, the same output."""
    from unittest import mock

    from lora_training.models.adapters import frozen_dora

    _, ours = _pair(0.1, bias=True)
    ours.eval()
    x = torch.randn(3, 12)
    expected = ours(x)
    with mock.patch.object(torch.linalg, "norm", wraps=torch.linalg.norm) as norm:
        with frozen_dora(ours):
            got = [ours(x) for _ in range(3)]
        assert norm.call_count == 1
        ours(x)
        assert norm.call_count == 2, "outside the context the norm follows the weights again"
    for y in got:
        torch.testing.assert_close(y, expected)
