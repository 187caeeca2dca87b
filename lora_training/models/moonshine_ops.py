"""The one home for transformers' Moonshine internals, so an upgrade breaks one test, not the product.

Fast batched transcription and training (decoder-only, and encoder adapters trained on clips encoded
as decoding encodes them) reach below `MoonshineForConditionalGeneration`'s public `forward`/`generate`:
the encoder's convolutional stem (conv1, GroupNorm, conv2, conv3), its rotary embedding and layers,
the decoder's KV-cache classes and the keyword that passes them, the attention layers' head-dimension
padding, `shift_tokens_right` and the output projection. None of that is a stable API; transformers
renames and reshapes it between minor releases (the decoder's `past_key_values` argument became
`cache` in 5.24). Everything of that kind lives here and nowhere else, and
tests/models/test_moonshine_ops.py checks each function against the library's public path
(`generate`, `model(labels=...)`, the encoder on each clip alone), on the installed release and on
the lowest supported one (tests/models/test_transformers_range.py).

Nothing here imports from `training` or `evaluation`: both build on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from lora_training.data.audio import normalize_audio

# Label padding: transformers' loss and `shift_tokens_right` both treat -100 as "no target".
IGNORE_INDEX = -100

# A decoding hook: adds to one step's logits (rows × vocabulary, in place) given each row's tokens so
# far (no start token). evaluation/biasing.py's keyterm bias is one; the decoder knows nothing of it.
LogitsHook = Callable[[Any, list[list[int]]], None]


def pad_encoder_states(states: list) -> tuple[Any, Any]:
    """Stack per-utterance encoder outputs (frames × hidden) with a frame mask for cross-attention."""
    import torch

    width = max(s.shape[0] for s in states)
    hidden = states[0].shape[1]
    out = states[0].new_zeros((len(states), width, hidden))
    mask = torch.zeros((len(states), width), dtype=torch.int32)
    for row, s in enumerate(states):
        out[row, : s.shape[0]] = s
        mask[row, : s.shape[0]] = 1
    return out, mask


def padded_encoder_outputs(states: list):
    """Per-clip encoder states (frames × hidden), padded into what the model takes as `encoder_outputs`."""
    from transformers.models.moonshine.modeling_moonshine import MoonshineEncoderModelOutput

    hidden, mask = pad_encoder_states(states)
    return MoonshineEncoderModelOutput(last_hidden_state=hidden, attention_mask=mask.to(hidden.device))


def _clip_values(encoder, audio: np.ndarray, normalize: bool):
    """One clip as the encoder's 1 × samples input, on its device and in its dtype."""
    import torch

    param = next(encoder.parameters())
    if normalize:
        audio = normalize_audio(audio)
    return torch.tensor(audio, dtype=param.dtype, device=param.device)[None]  # a copy: cached audio is read-only


def clip_encoder_states(model, audio: np.ndarray, *, normalize: bool = False):
    """One clip's encoder output (frames × hidden), computed alone and without gradients.

    For caching during decoder-only training: with no adapter in the encoder its output for a
    clip never changes. The clip runs unpadded, so GroupNorm sees only its own samples. This is
    the encoder's own forward, the reference the batched paths below are tested against.
    """
    import torch

    encoder = model.get_encoder()
    with torch.no_grad():
        out = encoder(input_values=_clip_values(encoder, audio, normalize))
    return out.last_hidden_state[0].detach()


def cross_projections(model, states) -> list[tuple[Any, Any]]:
    """Each decoder layer's frozen cross-attention key and value projections (frames × width) of one
    clip's encoder states, adapters left out. When only the decoder trains they never change, so a
    trainer computes them once per clip rather than every step (~12% of a moonshine-base decoder-only
    step); the adapters on `k_proj`/`v_proj` still run on the states at every step."""
    import torch

    with torch.no_grad():
        return [(_frozen(layer.encoder_attn.k_proj)(states), _frozen(layer.encoder_attn.v_proj)(states))
                for layer in model.get_decoder().layers]


def _frozen(linear):
    """The frozen Linear under a PEFT layer (or the Linear itself)."""
    return linear.get_base_layer() if hasattr(linear, "get_base_layer") else linear


@contextmanager
def precomputed_cross_projections(model, projections: list[tuple[Any, Any]]) -> Iterator[None]:
    """While the decoder runs on a batch, each cross-attention `k_proj`/`v_proj` frozen layer answers
    with its precomputed output (`projections`: per layer, batch × frames × width, from
    `cross_projections`, padded) instead of multiplying again. Only adapted layers (PEFT's, whose
    forward calls `base_layer` and adds the adapter) are switched; DoRA's weight norm still reads the
    real layer through `get_base_layer()`."""
    import torch

    class Precomputed(torch.nn.Module):
        def __init__(self, output, layer):
            super().__init__()
            self.output, self.base_layer = output, layer

        def forward(self, x, *args, **kwargs):
            if x.shape[:-1] != self.output.shape[:-1]:
                raise ValueError(f"precomputed cross projection: states {tuple(x.shape)}, expected "
                                 f"{tuple(self.output.shape[:-1])} × hidden")
            return self.output

    swapped = []
    for layer, outputs in zip(model.get_decoder().layers, projections):
        for proj, output in zip((layer.encoder_attn.k_proj, layer.encoder_attn.v_proj), outputs):
            if hasattr(proj, "base_layer"):
                swapped.append((proj, proj.base_layer))
                proj.base_layer = Precomputed(output, proj.base_layer)
    try:
        yield
    finally:
        for proj, original in swapped:
            proj.base_layer = original


def decoder_loss(model, encoder_states, encoder_mask, labels):
    """The same loss as `model(labels=...)`, but the 32k-way output projection runs only at real
    label positions, not at padding (with its loss it is still ~17% of a moonshine-base decoder-only
    step), and the attention heads run unpadded (`unpadded_heads`: the padding copies every layer's
    cross-attention keys and values, ~2.5% of the step).

    `model` is the bare MoonshineForConditionalGeneration (under PEFT, `get_base_model()`);
    `encoder_states` is batch × frames × hidden with `encoder_mask` marking real frames; `labels`
    are padded with IGNORE_INDEX. Under DDP call the wrapped model instead: a forward that bypasses
    the wrapper does not sync gradients.
    """
    import torch
    from transformers.models.moonshine.modeling_moonshine import shift_tokens_right

    config = model.config
    decoder_input = shift_tokens_right(labels, config.pad_token_id, config.decoder_start_token_id)
    with unpadded_heads(model.get_decoder()):
        hidden = model.get_decoder()(
            input_ids=decoder_input, encoder_hidden_states=encoder_states,
            encoder_attention_mask=encoder_mask, use_cache=False,
        ).last_hidden_state
    keep = labels != IGNORE_INDEX
    logits = model.proj_out(hidden[keep])
    return torch.nn.functional.cross_entropy(logits.float(), labels[keep])


@dataclass
class Encoded:
    """One clip after the encoder: its states, and every decoder layer's cross-attention keys and values.

    The keys and values are computed here, on the tight encoder bucket, rather than by the
    decoder's first step on a padded decoding group: they are half of all decoder work.
    """

    states: Any  # frames × hidden
    cross: list[tuple[Any, Any]]  # per decoder layer: keys, values (heads × frames × head_dim)

    def __len__(self) -> int:
        return self.states.shape[0]


def _stem(encoder, audio: np.ndarray, normalize: bool):
    """One clip through the convolutional stem, alone: frames × hidden.

    Moonshine's GroupNorm normalises over time as well as channels, so zero padding shifts the
    statistics of the whole clip and changes its transcript (4 of 22 test clips at 10% padding).
    The stem therefore runs on each clip unpadded; the transformer layers after it work per frame
    apart from attention, which a mask keeps to the clip's own frames.
    """
    import torch

    x = encoder.groupnorm(torch.tanh(encoder.conv1(_clip_values(encoder, audio, normalize)[None])))
    x = torch.nn.functional.gelu(encoder.conv3(torch.nn.functional.gelu(encoder.conv2(x))))
    return x[0].transpose(0, 1)


def _encoder_layers(encoder, states: list, start: int, stop: int | None, *, final: bool):
    """Encoder layers `start:stop` over per-clip states (frames × hidden), batched: batch × frames ×
    hidden and the real-frame mask; `final` applies the closing layer norm. Frames past a clip's end
    hold junk that the mask hides. Gradients flow unless the caller stops them."""
    import torch
    from transformers.masking_utils import create_bidirectional_mask

    hidden, mask = pad_encoder_states(states)
    mask = mask.to(hidden.device)
    attention = None
    if any(len(s) < hidden.shape[1] for s in states):
        attention = create_bidirectional_mask(config=encoder.config, inputs_embeds=hidden,
                                              attention_mask=mask, encoder_hidden_states=hidden)
    positions = torch.arange(hidden.shape[1], device=hidden.device)[None]
    rotary = encoder.rotary_emb(hidden, position_ids=positions)
    for layer in encoder.layers[start:stop]:
        hidden = layer(hidden, attention_mask=attention, position_ids=positions, position_embeddings=rotary)
    return (encoder.layer_norm(hidden) if final else hidden), mask


def _encode_each(model, audios: list[np.ndarray], normalize: bool) -> tuple[Any, Any]:
    """The encoder on a batch as if on each clip alone: batch × frames × hidden, and the real-frame mask."""
    encoder = model.get_encoder()
    return _encoder_layers(encoder, [_stem(encoder, a, normalize) for a in audios], 0, None, final=True)


def encoder_prefix_states(model, audio: np.ndarray, layers: int, *, normalize: bool = False):
    """One clip through the stem and the first `layers` encoder layers, alone and without gradients
    (frames × hidden). When adapters sit only in the layers above, this part never changes for a
    clip: a trainer computes it once (training/encoder_cache.py) and runs the rest each step
    (`encoder_suffix_outputs`)."""
    import torch

    encoder = model.get_encoder()
    with torch.no_grad():
        hidden, _ = _encoder_layers(encoder, [_stem(encoder, audio, normalize)], 0, layers, final=False)
    return hidden[0].detach()


def encoder_suffix_outputs(model, states: list, start: int):
    """The batch's `encoder_outputs` from per-clip `encoder_prefix_states(..., start)`: the encoder
    layers from `start` on, batched and masked, with gradients. This is how encoder adapters train:
    each clip encoded as decoding (`encode_clips`) encodes it, where a zero-padded batch through the
    encoder's own forward would give every clip but the longest other states."""
    from transformers.models.moonshine.modeling_moonshine import MoonshineEncoderModelOutput

    hidden, mask = _encoder_layers(model.get_encoder(), states, start, None, final=True)
    return MoonshineEncoderModelOutput(last_hidden_state=hidden, attention_mask=mask)


def encode_clips(model, audios: list[np.ndarray], *, normalize: bool = False) -> list[Encoded]:
    """Each clip encoded (unpadded results), computed as one batch (`_encode_each`)."""
    hidden, mask = _encode_each(model, audios, normalize)
    lengths = mask.sum(1).tolist()
    cross = []
    for layer in model.get_decoder().layers:
        attn = layer.encoder_attn
        shape = (hidden.shape[0], hidden.shape[1], attn.config.num_key_value_heads, attn.head_dim)
        cross.append((attn.k_proj(hidden).view(shape).transpose(1, 2), attn.v_proj(hidden).view(shape).transpose(1, 2)))
    return [Encoded(hidden[i, :n], [(k[i, :, :n], v[i, :, :n]) for k, v in cross]) for i, n in enumerate(lengths)]


def _cross_attention_cache(model, clips: list[Encoded]):
    """A decoder cache whose cross-attention part already holds the clips' keys and values, padded.

    The cross-attention cache is filled before the EncoderDecoderCache is built around it: the
    constructor then marks every filled layer as computed, so the attention layers read these
    keys and values instead of projecting the encoder states again (no private flag is set).
    """
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    cross_cache = DynamicCache(config=model.config)
    frames = max(len(c) for c in clips)
    for layer, (k0, _) in enumerate(clips[0].cross):
        keys = k0.new_zeros((len(clips), k0.shape[0], frames, k0.shape[2]))
        values = keys.clone()
        for row, clip in enumerate(clips):
            keys[row, :, : len(clip)], values[row, :, : len(clip)] = clip.cross[layer]
        cross_cache.update(keys, values, layer)
    return EncoderDecoderCache(DynamicCache(config=model.config), cross_cache)


def _cache_keyword(decoder) -> str:
    """The keyword under which the decoder takes its KV cache.

    transformers 5.24 renamed `past_key_values` to `cache` (the old name still works there but warns
    on every call that it goes away in 5.40); releases before 5.24 only know `past_key_values`.
    """
    import inspect

    return "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"


def decode_states(model, clips: list[Encoded], budgets: list[int], *,
                  bias: LogitsHook | None = None) -> list[list[int]]:
    """Greedy token ids (no start token, no EOS) for encoded clips, decoded together.

    The same tokens as `model.generate(..., do_sample=False, num_beams=1, max_new_tokens=budget)`
    on each clip alone, but rows share the decoder passes while they are unfinished. Rows need
    not be of similar length: padded frames are masked, and a step's cost is mostly reading the
    weights that every row shares. `bias`, when given, shifts each step's logits before the argmax
    (keyterm biasing); None leaves the loop exactly as it is without one.
    """
    import torch

    config = model.config
    hidden, encoder_mask = pad_encoder_states([c.states for c in clips])
    device = hidden.device
    encoder_mask = encoder_mask.to(device) if any(len(c) < hidden.shape[1] for c in clips) else None
    decoder = model.get_decoder()
    head = model.get_output_embeddings()
    cache = _cross_attention_cache(model, clips)
    cache_keyword = _cache_keyword(decoder)
    rows = list(range(len(clips)))
    tokens = torch.full((len(rows), 1), config.decoder_start_token_id, dtype=torch.long, device=device)
    out: list[list[int]] = [[] for _ in rows]
    while rows:
        state = decoder(input_ids=tokens, encoder_hidden_states=hidden, encoder_attention_mask=encoder_mask,
                        use_cache=True, **{cache_keyword: cache}).last_hidden_state
        logits = head(state[:, -1])
        if bias is not None:
            bias(logits, [out[row] for row in rows])
        next_ids = logits.argmax(-1)
        keep = []
        for j, (row, token) in enumerate(zip(rows, next_ids.tolist())):
            if token == config.eos_token_id:
                continue
            out[row].append(token)
            if len(out[row]) < budgets[row]:
                keep.append(j)
        if len(keep) < len(rows):
            if not keep:
                break
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            hidden = hidden[index]
            encoder_mask = encoder_mask[index] if encoder_mask is not None else None
            next_ids = next_ids[index]
            rows = [rows[j] for j in keep]
        tokens = next_ids[:, None]
    return out


@contextmanager
def unpadded_heads(model) -> Iterator[None]:
    """Switch off Moonshine's head-dimension padding (52 -> 56, for ONNX and flash kernels) while decoding.

    The padding copies q, k and v, including the whole cross-attention cache, at every decoder
    step: ~7-15% of CPU decoding time. Zeros add nothing to q·k and are sliced off the output,
    so the result is the same without them (identical tokens on 44 test clips).
    """
    modules = [m for m in model.modules() if getattr(m, "head_dim_padding", 0)]
    saved = [m.head_dim_padding for m in modules]
    for m in modules:
        m.head_dim_padding = 0
    try:
        yield
    finally:
        for m, padding in zip(modules, saved):
            m.head_dim_padding = padding
