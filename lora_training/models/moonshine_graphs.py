"""Moonshine's forward written as plain tensor ops that torch.onnx can trace, for export.

The on-device runtimes (moonshine-cpp, sherpa-onnx) run two graphs with a fixed interface: an
encoder (`input_values` -> `last_hidden_state`) and one decoder *step* that takes and returns the
KV cache as flat tensors (`past_key_values.{i}.{decoder|encoder}.{key|value}` -> `present.*`).
transformers' own forward keeps its cache in Python objects and builds its rotary tables with
ops the TorchScript exporter cannot translate (`repeat_interleave` over a traced size), so the
same computation is restated here over the model's own modules and weights. It is checked token
for token against `generate` (tests/models/test_moonshine_graphs.py), so a transformers change
that moves the math breaks a test, not the user's exported model.

Like models/moonshine_ops.py, this module reaches into Moonshine internals; nothing else may.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CacheLayout:
    """The decoder's flat cache interface: per layer decoder key/value, then encoder key/value."""

    layers: int
    heads: int
    head_dim: int

    @classmethod
    def of(cls, model) -> "CacheLayout":
        attn = model.get_decoder().layers[0].self_attn
        return cls(len(model.get_decoder().layers), attn.config.num_key_value_heads, attn.head_dim)

    def past_names(self) -> list[str]:
        return [f"past_key_values.{i}.{part}.{kv}" for i in range(self.layers)
                for part in ("decoder", "encoder") for kv in ("key", "value")]

    def present_names(self) -> list[str]:
        return [n.replace("past_key_values.", "present.", 1) for n in self.past_names()]


def _heads(attn, x: torch.Tensor) -> torch.Tensor:
    """batch × time × (heads·dim) -> batch × heads × time × dim."""
    return x.view(x.shape[0], -1, attn.config.num_key_value_heads, attn.head_dim).transpose(1, 2)


def _attend(attn, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    scores = torch.matmul(q, k.transpose(-1, -2)) * attn.scaling
    if mask is not None:
        scores = scores + mask
    out = torch.matmul(torch.softmax(scores, dim=-1), v)
    return attn.o_proj(out.transpose(1, 2).flatten(2))


def _rotary(rotary_emb, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (time × rotary_dim) for Moonshine's interleaved partial rotary embedding."""
    freqs = positions[:, None].float() * rotary_emb.inv_freq[None, :]
    cos, sin = freqs.cos(), freqs.sin()
    return torch.stack((cos, cos), dim=-1).flatten(-2), torch.stack((sin, sin), dim=-1).flatten(-2)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first rotary_dim channels in (even, odd) pairs; the rest pass unchanged."""
    n = cos.shape[-1]
    rot, keep = x[..., :n], x[..., n:]
    turned = torch.stack((-rot[..., 1::2], rot[..., 0::2]), dim=-1).flatten(-2)
    return torch.cat([rot * cos + turned * sin, keep], dim=-1)


class EncoderGraph(torch.nn.Module):
    """input_values (batch × samples, raw 16 kHz) -> last_hidden_state (batch × frames × hidden)."""

    def __init__(self, model):
        super().__init__()
        self.encoder = model.get_encoder()

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        e = self.encoder
        x = e.groupnorm(torch.tanh(e.conv1(input_values[:, None])))
        x = torch.nn.functional.gelu(e.conv3(torch.nn.functional.gelu(e.conv2(x)))).transpose(1, 2)
        cos, sin = _rotary(e.rotary_emb, torch.arange(x.shape[1], dtype=torch.long))
        for layer in e.layers:
            h = layer.input_layernorm(x)
            attn = layer.self_attn
            q = _rotate(_heads(attn, attn.q_proj(h)), cos, sin)
            k = _rotate(_heads(attn, attn.k_proj(h)), cos, sin)
            x = x + _attend(attn, q, k, _heads(attn, attn.v_proj(h)), None)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return e.layer_norm(x)


class DecoderStepGraph(torch.nn.Module):
    """One decoder pass: (input_ids, encoder_hidden_states[, *past]) -> (logits, *present).

    `cached=False` is the first pass: no past, the cross-attention keys and values are projected
    from the encoder states. `cached=True` appends to the self-attention past and passes the
    cross-attention past through unchanged. The runtimes pick between them with `use_cache_branch`.
    """

    def __init__(self, model, cached: bool):
        super().__init__()
        self.decoder, self.head, self.cached = model.get_decoder(), model.get_output_embeddings(), cached

    def forward(self, input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor, *past: torch.Tensor):
        d = self.decoder
        x = d.embed_tokens(input_ids)
        past_length = past[0].shape[2] if self.cached else 0
        positions = torch.arange(input_ids.shape[1], dtype=torch.long) + past_length
        cos, sin = _rotary(d.rotary_emb, positions)
        seen = torch.arange(input_ids.shape[1] + past_length, dtype=torch.long)
        causal = torch.where(seen[None, :] > positions[:, None], float("-inf"), 0.0)
        present = []
        for i, layer in enumerate(d.layers):
            h = layer.input_layernorm(x)
            attn = layer.self_attn
            k = _rotate(_heads(attn, attn.k_proj(h)), cos, sin)
            v = _heads(attn, attn.v_proj(h))
            if self.cached:
                k, v = torch.cat([past[4 * i], k], dim=2), torch.cat([past[4 * i + 1], v], dim=2)
            x = x + _attend(attn, _rotate(_heads(attn, attn.q_proj(h)), cos, sin), k, v, causal)
            cross = layer.encoder_attn
            if self.cached:
                ck, cv = past[4 * i + 2], past[4 * i + 3]
            else:
                ck, cv = _heads(cross, cross.k_proj(encoder_hidden_states)), _heads(cross, cross.v_proj(encoder_hidden_states))
            x = x + _attend(cross, _heads(cross, cross.q_proj(layer.post_attention_layernorm(x))), ck, cv, None)
            x = x + layer.mlp(layer.final_layernorm(x))
            present += [k, v, ck, cv]
        return (self.head(d.norm(x)), *present)
