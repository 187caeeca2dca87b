"""What a run computes once per clip: what lies below its lowest adapter.

Decoder-only runs: the encoder states and, within a memory budget, each decoder layer's frozen
cross-attention keys and values. Runs with encoder adapters: the convolutional stem (never
adapted: its GroupNorm makes each clip run alone, as decoding runs it) and the encoder layers under
the adapted top ones (`--encoder-layers`); the layers above run batched with gradients each step.

With no adapter in the encoder, a clip's encoder states never change, and neither do the frozen
parts of the decoder that read only them: the cross-attention `k_proj`/`v_proj` of every layer. The
adapters on those projections still run on the states at each step (`precomputed_cross_projections`).
Measured on moonshine-base (decoder-only LoRA r16, batch 8, 1 thread): the projections are ~12% of a
step. They cost ~16× the memory of the states (4.4 MB for a 4 s clip at fp32), hence the budget:
clips past it have theirs computed at each step, as without the cache.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from lora_training.models.moonshine_ops import (clip_encoder_states, cross_projections, encoder_prefix_states,
                                                encoder_suffix_outputs, padded_encoder_outputs,
                                                precomputed_cross_projections)
from lora_training.training.collate import Example

CROSS_CACHE_BYTES = 3 * 2**30


class EncoderCache:
    """`batch(base, examples)` -> (padded encoder outputs, context to run the decoder in)."""

    def __init__(self, *, normalize: bool, cross: bool, budget: int = CROSS_CACHE_BYTES, frozen_layers: int | None = None):
        """`frozen_layers`: cache the stem and that many encoder layers, and run the rest each step with
        gradients (None: cache the whole encoder's output, for decoder-only runs)."""
        self.normalize, self.budget, self.frozen_layers = normalize, budget, frozen_layers
        self.cross = cross and frozen_layers is None
        self.states: dict[str, torch.Tensor] = {}
        self.projections: dict[str, list[tuple[Any, Any]]] = {}
        self.cross_bytes = 0

    def batch(self, base, examples: list[Example]) -> tuple[Any, AbstractContextManager]:
        for e in examples:
            if e.key not in self.states:
                self.states[e.key] = (
                    clip_encoder_states(base, e.audio, normalize=self.normalize) if self.frozen_layers is None
                    else encoder_prefix_states(base, e.audio, self.frozen_layers, normalize=self.normalize))
        states = [self.states[e.key] for e in examples]
        if self.frozen_layers is not None:
            return encoder_suffix_outputs(base, states, self.frozen_layers), nullcontext()
        encoded = padded_encoder_outputs(states)
        if not self.cross:
            return encoded, nullcontext()
        per_clip = [self._projections(base, e.key) for e in examples]
        padded = [tuple(torch.nn.utils.rnn.pad_sequence([clip[layer][i] for clip in per_clip], batch_first=True)
                        for i in (0, 1))
                  for layer in range(len(per_clip[0]))]
        return encoded, precomputed_cross_projections(base, padded)

    def _projections(self, base, key: str) -> list[tuple[Any, Any]]:
        if key in self.projections:
            return self.projections[key]
        projections = cross_projections(base, self.states[key])
        size = sum(k.nbytes + v.nbytes for k, v in projections)
        if self.cross_bytes + size <= self.budget:
            self.projections[key] = projections
            self.cross_bytes += size
        return projections
