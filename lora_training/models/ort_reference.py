"""Greedy decoding with onnxruntime over the original moonshine-cpp .ort graphs, one clip at a time.

This is the reference the converted transformers model is checked against (it must produce the
same token ids) and the speed baseline benchmarks compare adapters with.
"""

from __future__ import annotations

import functools

import numpy as np

from lora_training.data.audio import SAMPLE_RATE
from lora_training.errors import ModelError
from lora_training.models.embedded import source_graphs, tokenizer_json
from lora_training.models.registry import max_new_tokens_for

DECODER_START_TOKEN_ID = 1
EOS_TOKEN_ID = 2


@functools.lru_cache(maxsize=None)
def _sessions(name: str):
    import onnxruntime

    encoder, decoder = source_graphs(name)
    providers = ["CPUExecutionProvider"]
    return (
        onnxruntime.InferenceSession(str(encoder), providers=providers),
        onnxruntime.InferenceSession(str(decoder), providers=providers),
    )


@functools.lru_cache(maxsize=None)
def _tokenizer():
    import tokenizers

    return tokenizers.Tokenizer.from_file(str(tokenizer_json()))


def ort_greedy_decode(
    audio: np.ndarray, max_new_tokens: int | None = None, *, name: str = "moonshine-base"
) -> list[int]:
    """Token ids as `model.generate` returns them: decoder start first, EOS last if reached.

    `audio` is float32 mono at 16 kHz; `max_new_tokens` defaults to `max_new_tokens_for` its length.
    """
    return session_greedy_decode(*_sessions(name), audio, max_new_tokens)


def session_greedy_decode(encoder, decoder, audio: np.ndarray, max_new_tokens: int | None = None) -> list[int]:
    """Greedy decoding over any encoder + merged-decoder session pair with the runtimes' interface
    (the shipped graphs, or an export of ours)."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ModelError(f"ort_greedy_decode: audio must be one clip, expected a non-empty 1-D array, got shape {audio.shape}")
    if max_new_tokens is None:
        max_new_tokens = max_new_tokens_for(audio.size / SAMPLE_RATE)
    hidden = encoder.run(None, {"input_values": audio[None, :]})[0]

    # The merged decoder has two branches: without cache it computes every key/value (the
    # cross-attention ones from the encoder output), with cache it only appends self-attention ones.
    past = {
        i.name: np.zeros((1, i.shape[1], 0, i.shape[3]), dtype=np.float32)
        for i in decoder.get_inputs()
        if i.name.startswith("past_key_values.")
    }
    present_names = [o.name for o in decoder.get_outputs()][1:]
    tokens = [DECODER_START_TOKEN_ID]
    for step in range(max_new_tokens):
        use_cache = step > 0
        outputs = decoder.run(
            None,
            {
                "input_ids": np.array([tokens[-1:] if use_cache else tokens], dtype=np.int64),
                "encoder_hidden_states": hidden,
                "use_cache_branch": np.array([use_cache]),
                **past,
            },
        )
        token = int(outputs[0][0, -1].argmax())
        tokens.append(token)
        if token == EOS_TOKEN_ID:
            break
        for present, value in zip(present_names, outputs[1:]):
            if not use_cache or ".decoder." in present:
                past[present.replace("present.", "past_key_values.", 1)] = value
    return tokens


def ort_transcribe(audio: np.ndarray, max_new_tokens: int | None = None, *, name: str = "moonshine-base") -> str:
    """The text of `ort_greedy_decode`, special tokens removed."""
    return _tokenizer().decode(ort_greedy_decode(audio, max_new_tokens, name=name), skip_special_tokens=True).strip()
