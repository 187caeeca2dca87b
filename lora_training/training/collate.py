"""Turning utterances into batches: labels, length-bucketed batch order, padding.

Labels are the text's tokens plus the end token, padded with -100 and with no start token:
the model right-shifts them itself (decoder_start_token_id) to build the decoder input.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import numpy as np
import torch

from lora_training.data.audio import normalize_audio
from lora_training.errors import LoraTrainingError
from lora_training.models.moonshine_ops import IGNORE_INDEX  # the label padding the model's loss skips


@dataclass
class Example:
    """One training utterance, decoded and tokenised once. `key` names its audio in the encoder
    cache; `views` are augmented copies of a real recording (`--augment-views`), each with its own key;
    `respellings` are the label spans of its vocabulary terms that may be spelled otherwise (training/respell.py)."""

    key: str
    audio: np.ndarray
    labels: list[int]
    synthetic: bool = False
    views: tuple["Example", ...] = ()
    respellings: tuple = ()

    @property
    def length(self) -> int:
        return len(self.audio)


def encode_labels(tokenizer, text: str, eos_token_id: int) -> list[int]:
    return [*tokenizer(text, add_special_tokens=False).input_ids, eos_token_id]


def build_examples(utterances, audio, tokenizer, eos_token_id: int, *, views: int = 0, seed: int = 0,
                   respeller=None) -> list[Example]:
    """An Example per utterance (audio from the AudioCache `audio`); each real recording gets
    `views` augmented copies, each seeded by the run's seed, its audio path and its number, so a
    resumed run hears the very same copies. With a `respeller` (training/respell.py) each
    Example knows where its terms' tokens are and how else they may be spelled."""
    out = []
    for u in utterances:
        samples, labels, synthetic = audio.get(u.audio), encode_labels(tokenizer, u.text, eos_token_id), u.source == "synthetic"
        spans = respeller.respellings(u.text) if respeller else ()
        copies = () if synthetic else tuple(Example(f"{u.audio}#view{v}", _augmented(samples, seed, u.audio, v), labels,
                                                    respellings=spans) for v in range(1, views + 1))
        out.append(Example(u.audio, samples, labels, synthetic, copies, spans))
    return out


def _augmented(samples: np.ndarray, seed: int, key: str, view: int) -> np.ndarray:
    from lora_training.data.augment import augment

    digest = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little")
    return augment(samples, np.random.default_rng([seed, digest, view]))


def check_label_lengths(utterances, examples: list[Example], positions: int) -> None:
    """Moonshine's decoder has `positions` positions: a longer transcript cannot be trained on."""
    too_long = [(u, len(e.labels)) for u, e in zip(utterances, examples) if len(e.labels) >= positions]
    if too_long:
        u, n = too_long[0]
        raise LoraTrainingError(
            f"utterance {u.id}: transcript has {n} tokens, expected fewer than the model's {positions} "
            f"positions ({len(too_long)} such utterance(s)); split long recordings"
        )


def bucketed_batches(lengths: list[int], batch_size: int, rng: random.Random, bucket_batches: int = 32) -> list[list[int]]:
    """Indices grouped into batches of similar length, in random order.

    Shuffle, then sort within windows of `bucket_batches` batches and cut: padding shrinks
    to the spread inside a window while the order stays random across epochs.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * bucket_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def pad_labels(label_lists: list[list[int]]) -> torch.Tensor:
    width = max(len(x) for x in label_lists)
    out = torch.full((len(label_lists), width), IGNORE_INDEX, dtype=torch.long)
    for row, labels in enumerate(label_lists):
        out[row, : len(labels)] = torch.tensor(labels, dtype=torch.long)
    return out


def pad_audio(audios: list[np.ndarray], normalize: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad raw 16 kHz audio: what Moonshine's Wav2Vec2 feature extractor does, without its
    per-call overhead. `normalize` mirrors the extractor's `do_normalize` (off for Moonshine).

    Only for the library's own padded path (the `generate` baseline in benchmarks/transcribe_rtf.py):
    the encoder's GroupNorm spans time, so training and decoding encode each clip unpadded instead
    (`moonshine_ops.encoder_suffix_outputs`, `encode_clips`)."""
    width = max(len(a) for a in audios)
    values = np.zeros((len(audios), width), dtype=np.float32)
    mask = torch.zeros((len(audios), width), dtype=torch.long)
    for row, audio in enumerate(audios):
        if normalize:
            audio = normalize_audio(audio)
        values[row, : len(audio)] = audio
        mask[row, : len(audio)] = 1
    return torch.from_numpy(values), mask
