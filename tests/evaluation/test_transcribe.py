"""Fast batched decoding: same tokens as `generate` per clip, chunking at quiet points, failures kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lora_training.testing.signals import loud_syllables
from lora_training.data.audio import SAMPLE_RATE
from lora_training.evaluation import transcribe
from lora_training.evaluation.transcribe import length_buckets, quiet_split, transcribe_clips


def test_quiet_split_cuts_a_long_clip_inside_its_pauses():
    rng = np.random.default_rng(0)
    pause = np.zeros(int(0.4 * SAMPLE_RATE), np.float32)
    speech = [loud_syllables(seconds, rng) for seconds in (12, 14, 13, 9)]
    parts = [part for clip in speech for part in (clip, pause)][:-1]
    audio = np.concatenate(parts)
    pauses, start = [], 0
    for part in parts:
        if part is pause:
            pauses.append((start, start + len(pause)))
        start += len(part)

    spans = quiet_split(audio, max_seconds=20.0)

    assert spans[0][0] == 0 and spans[-1][1] == len(audio)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:])), "spans must be contiguous"
    assert all(end - begin <= 20 * SAMPLE_RATE for begin, end in spans)
    for cut in (end for _, end in spans[:-1]):
        assert any(lo <= cut <= hi for lo, hi in pauses), f"cut at {cut / SAMPLE_RATE:.2f}s is not in a pause"
    assert len(spans) == 4  # one cut in each pause: 12.2 | 14.4 | 13.4 | 9.2 s


@pytest.mark.parametrize("seconds, expected", [(5.0, 1), (20.0, 1), (20.5, 2), (61.0, 4)])
def test_quiet_split_chunk_counts(seconds, expected):
    audio = loud_syllables(seconds, np.random.default_rng(1))
    spans = quiet_split(audio, max_seconds=20.0)
    assert len(spans) == expected
    assert all(end - begin <= 20 * SAMPLE_RATE for begin, end in spans)


@pytest.mark.parametrize(
    "lengths, max_batch, expected",
    [
        ([100, 100, 100, 100], 2, [[0, 1], [2, 3]]),
        ([100, 300, 105, 310], 8, [[0, 2], [1, 3]]),  # 100 and 300 together would pad 2/3 of the batch
        ([50, 40, 30], 8, [[2, 1], [0]]),  # 30+40 pads 10/80 = 12.5%; adding 50 would pad 40/150
        ([7], 4, [[0]]),
        ([], 4, []),
    ],
)
def test_length_buckets(lengths, max_batch, expected):
    assert length_buckets(lengths, max_batch, max_padding=0.15) == expected


@pytest.mark.parametrize("batch_size", [2, 8])
def test_batched_tokens_equal_each_clip_decoded_alone(batch_size):
    """Buckets and decoding groups change no token: each clip as if encoded and decoded alone.

    That per-clip decoding equals `generate` is tests/models/test_moonshine_ops.py's to check.
    """
    from lora_training.models.moonshine_ops import decode_states, encode_clips
    from lora_training.models.registry import max_new_tokens_for
    from lora_training.testing.tiny import tiny_moonshine

    model, processor = tiny_moonshine(seed=3)
    rng = np.random.default_rng(2)
    audios = [loud_syllables(s, rng) for s in (1.0, 1.07, 1.12, 2.0, 2.1)]
    with torch.inference_mode():
        alone = [decode_states(model, encode_clips(model, [a]), [max_new_tokens_for(len(a) / SAMPLE_RATE)])[0]
                 for a in audios]

    results = transcribe_clips(model, processor, audios, batch_size=batch_size)

    assert [r.tokens[0] for r in results] == alone
    assert [r.text for r in results] == [processor.decode(a, skip_special_tokens=True).strip() for a in alone]


@pytest.mark.parametrize("stage", ["encode_clips", "decode_states"])
def test_failing_clip_is_reported_and_its_neighbours_survive(monkeypatch, stage):
    from lora_training.testing.tiny import tiny_moonshine

    model, processor = tiny_moonshine()
    rng = np.random.default_rng(3)
    audios = [loud_syllables(s, rng) for s in (1.0, 1.1, 1.12)]
    assert length_buckets([len(a) for a in audios], 8) == [[0, 1, 2]]  # one batch, so the retry is exercised
    with torch.inference_mode():
        frames = [len(transcribe.encode_clips(model, [a])[0]) for a in audios]
    assert len(set(frames)) == 3
    real = getattr(transcribe, stage)

    def poisoned(model, items, *args, **kw):
        sizes = [len(a) for a in items] if stage == "encode_clips" else [len(s) for s in items]
        if (len(audios[1]) if stage == "encode_clips" else frames[1]) in sizes:
            raise RuntimeError("boom")
        return real(model, items, *args, **kw)

    monkeypatch.setattr(transcribe, stage, poisoned)
    results = transcribe_clips(model, processor, audios)
    assert [r.error is None for r in results] == [True, False, True]
    assert "RuntimeError: boom" in results[1].error and results[1].text is None
    with pytest.raises(RuntimeError, match="clip 1: transcription failed"):
        transcribe.greedy_transcribe(model, processor, audios)


def test_long_clip_is_decoded_in_chunks_and_joined(monkeypatch):
    from lora_training.testing.tiny import tiny_moonshine

    model, processor = tiny_moonshine()
    audio = loud_syllables(45.0, np.random.default_rng(4))
    # Stand-ins that carry each chunk's length through: "states" of len/1000 rows, one token per chunk.
    monkeypatch.setattr(transcribe, "encode_clips",
                        lambda model, items, **kw: [torch.zeros(len(a) // 1000, 2) for a in items])
    monkeypatch.setattr(transcribe, "decode_states",
                        lambda model, states, budgets, **kw: [[1000 + len(s)] for s in states])

    [result] = transcribe_clips(model, processor, [audio], max_chunk_seconds=20.0)

    spans = quiet_split(audio, 20.0)
    assert result.chunks == len(spans) == 3 and max(end - start for start, end in spans) <= 20 * SAMPLE_RATE
    assert result.tokens == [[1000 + (end - start) // 1000] for start, end in spans]
    assert result.text == " ".join(processor.decode(t).strip() for t in result.tokens)
