"""A tiny random Moonshine (~1.1 M parameters, mostly the embedding) for fast tests.

It keeps the real tokenizer and vocabulary, so manifests, collation and decoding run exactly as
with the real model; only the weights are random.
"""

from __future__ import annotations

import os
from pathlib import Path


def tiny_moonshine_config():
    """Two encoder and two decoder layers of width 32; the default MoonshineConfig lacks pad_token_id."""
    from transformers import MoonshineConfig

    return MoonshineConfig(
        vocab_size=32768,
        hidden_size=32,
        intermediate_size=64,
        encoder_num_hidden_layers=2,
        decoder_num_hidden_layers=2,
        encoder_num_attention_heads=2,
        decoder_num_attention_heads=2,
        max_position_embeddings=194,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        decoder_start_token_id=1,
    )


def tiny_moonshine(seed: int = 0):
    """(model, processor): the same seed gives the same weights, without touching the global RNG."""
    import torch
    from transformers import MoonshineForConditionalGeneration

    from lora_training.models.embedded import build_processor, tokenizer_json

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MoonshineForConditionalGeneration(tiny_moonshine_config())
    return model.eval(), build_processor(tokenizer_json())


def save_tiny_moonshine(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A local save_pretrained folder, usable wherever a model reference is expected."""
    folder = Path(folder)
    model, processor = tiny_moonshine(seed)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
