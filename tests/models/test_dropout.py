"""FastDropout is inverted dropout: drops ~p of the elements, keeps the mean, routes gradients through the
kept ones only, draws from torch's seed, and is the identity in eval mode; apply_adapter installs it."""

from __future__ import annotations

import pytest
import torch

from lora_training.models.adapters import apply_adapter
from lora_training.models.dropout import FastDropout
from lora_training.testing.tiny import tiny_moonshine


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_it_drops_p_of_the_elements_and_keeps_the_mean(p):
    torch.manual_seed(0)
    x = torch.ones(400, 1000)
    y = FastDropout(p).train()(x)
    dropped = (y == 0).float().mean().item()
    assert dropped == pytest.approx(p, abs=0.004)  # 400,000 draws: a standard error of <0.0008
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)
    assert torch.unique(y).tolist() == pytest.approx([0.0, 65536 / (65536 - round(p * 65536))])


def test_torch_seed_decides_the_mask_and_gradients_flow_through_kept_elements_only():
    layer = FastDropout(0.3).train()
    x = torch.randn(64, 32, requires_grad=True)
    torch.manual_seed(7)
    y = layer(x)
    torch.manual_seed(7)
    assert torch.equal(layer(x), y)
    assert not torch.equal(layer(x), y)  # the next call draws anew
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(grad == 0, y == 0)


def test_eval_mode_and_p_zero_are_the_identity():
    x = torch.randn(8, 8)
    assert torch.equal(FastDropout(0.5).eval()(x), x)
    assert torch.equal(FastDropout(0.0).train()(x), x)


def test_apply_adapter_gives_every_adapter_fast_dropout():
    model = apply_adapter(tiny_moonshine()[0], r=4, alpha=8, dropout=0.1, use_dora=False, sites="both",
                          target_modules=["q_proj", "v_proj"])
    dropouts = [d for m in model.modules() if isinstance(getattr(m, "lora_dropout", None), torch.nn.ModuleDict)
                for d in m.lora_dropout.values()]
    assert dropouts and all(type(d) is FastDropout and d.p == 0.1 for d in dropouts)
