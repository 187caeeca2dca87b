"""DoRA with the frozen base layer run once per call: `lora_dropout` on the adapter branch only.

peft (0.21) trains DoRA with dropout p > 0 as

    y = W·x + (m/n − 1)·W·drop(x) + (m/n)·s·B·A·drop(x),    n = ‖W + s·B·A‖ per output row, detached,

so every adapted Linear runs its frozen weight a second time, forward and backward, on the
dropped-out input, and rebuilds B·A each call by pushing an identity matrix through both factors.
`DoraOneBase` computes

    y = W·x + (m/n − 1)·W·x + (m/n)·s·B·A·drop(x)    (the bias is not scaled, as in peft)

which is peft's own expression for p = 0 and in eval mode, i.e. the DoRA layer (m/n)·(W + s·B·A)·x,
with dropout where LoRA puts it: on the adapter's input only. n is detached as in peft (the DoRA
paper's §4.3: "treat ‖V + ΔV‖ as a constant") and computed from B·A directly, without autograd.

What differs from peft, and only in training with p > 0 (tests/models/test_dora.py checks each):
the output, by (m/n − 1)·W·(x − drop(x)), zero in expectation; the magnitude's gradient, which
reads W·x where peft reads W·drop(x). A and B get peft's gradients for the same upstream gradient.
Why: on moonshine-base (decoder, r32, p 0.1, 1 thread) a step with peft's forward takes 1.79× a
LoRA r16 step, with this one 1.27× (benchmarks/train_throughput.py's dora-peft and dora variants).
"""

from __future__ import annotations

import torch
from peft.tuners.lora.dora import cache_decorator
from peft.tuners.lora.variants import DoraLinearVariant


@cache_decorator("weight-norm")
def _weight_norm(dora_layer, module, *, adapter_name: str) -> torch.Tensor:
    """‖W + s·B·A‖ per output row, without autograd. Under peft's DoraCaching in eval mode
    (`adapters.frozen_dora`, while decoding) it is computed once and kept in the DoRA layer's
    cache, under the key peft's own forward uses for the same value."""
    with torch.no_grad():
        delta = module.lora_B[adapter_name].weight @ module.lora_A[adapter_name].weight
        return torch.linalg.norm(module.get_base_layer().weight + module.scaling[adapter_name] * delta, dim=1)


class DoraOneBase(DoraLinearVariant):
    """peft's DoRA for nn.Linear (init, merge, unmerge and saved weights unchanged), one base pass."""

    @staticmethod
    def forward(module, active_adapter: str, x: torch.Tensor, result: torch.Tensor, **kwargs) -> torch.Tensor:
        dora = module.lora_magnitude_vector[active_adapter]
        scaling = module.scaling[active_adapter]
        scale = (dora.weight / _weight_norm(dora, module, adapter_name=active_adapter).to(x.dtype)).view(1, -1)
        bias = module.get_base_layer().bias
        base_result = result if bias is None else result - bias
        lora = module.lora_B[active_adapter](module.lora_A[active_adapter](module.lora_dropout[active_adapter](x)))
        return result + (scale - 1) * base_result + scale * lora * scaling


def use_one_base_dora(model) -> int:
    """Swap peft's DoRA variant for `DoraOneBase` on every adapted nn.Linear; returns how many."""
    swapped = 0
    for module in model.modules():
        variants = getattr(module, "lora_variant", None) or {}
        for name, variant in variants.items():
            if type(variant) is DoraLinearVariant and not module.fan_in_fan_out:
                variants[name] = DoraOneBase()
                swapped += 1
    return swapped
