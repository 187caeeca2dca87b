"""Greedy transcription of decoded audio with a (possibly adapted) Moonshine model, fast on CPU.

Why it is faster than `model.generate` over padded batches (benchmarks/transcribe_rtf.py):

- clips are sorted by length and encoded in buckets that pad less than MAX_PADDING, so the
  encoder hardly computes on zeros;
- encoded clips are decoded in larger groups (`batch_size` rows): a decoder step costs mostly
  reading the weights, which rows share; the decoder keeps a KV cache, and cross-attention
  keys and values are computed once per clip, inside its tight encoder bucket;
- a clip leaves the batch as soon as it emits EOS or reaches its own token budget (from its
  duration), so no step is spent on finished rows and no padding exists on the decoder side;
- attention heads are not zero-padded from 52 to 56 dimensions (see `moonshine_ops.unpadded_heads`).

Every one of these keeps the tokens identical to `generate` on each clip alone (tests check it);
int8 dynamic quantisation is not used: it was 2x faster but changed 7-9 of 22 benchmark transcripts.

Moonshine's decoder has 194 positions, so clips longer than `max_chunk_seconds` are cut at
their quietest points into chunks, which are decoded like any other clip and joined again.

The Moonshine internals behind the encoding and decoding live in `models/moonshine_ops.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from lora_training.data.audio import FRAME, HOP, SAMPLE_RATE, frame_energy
from lora_training.defaults import DECODE_BATCH_SIZE, MAX_CHUNK_SECONDS
from lora_training.models.moonshine_ops import Encoded, LogitsHook, decode_states, encode_clips, unpadded_heads

# An encoder bucket pads at most this share of its samples (0.2 s on a 4 s clip). Tight buckets
# waste little encoder work; decoding groups several buckets, so small buckets cost nothing there.
MAX_PADDING = 0.05
# A bucket holds at most this much audio: its cross-attention cache is ~1.3 MB per second.
MAX_BUCKET_SECONDS = 240.0
# Quiet points are found on the energy of 25 ms frames every 10 ms (FRAME, HOP), averaged over
# 200 ms so that one quiet sample inside a word is not a pause.
_SMOOTH_FRAMES = 20
Rewriter = Callable[[str], str]


@dataclass
class ClipResult:
    """One clip's transcript, or the error that stopped it; `chunks` > 1 when it was cut."""

    text: str | None
    error: str | None = None
    chunks: int = 1
    tokens: list[list[int]] = field(default_factory=list, repr=False)


def quiet_split(audio: np.ndarray, max_seconds: float = MAX_CHUNK_SECONDS) -> list[tuple[int, int]]:
    """(start, end) sample spans covering `audio`, each at most `max_seconds`, cut where it is quietest.

    Each cut is searched in the second half of the allowed span, so no chunk is shorter than half
    of `max_seconds` except the last; the cut point is the centre of the quietest 200 ms there.
    """
    limit = int(max_seconds * SAMPLE_RATE)
    if limit <= 0:
        raise ValueError(f"quiet_split: max_seconds, expected > 0, got {max_seconds}")
    if len(audio) <= limit:
        return [(0, len(audio))]
    energy = frame_energy(audio, smooth_frames=_SMOOTH_FRAMES)
    spans = []
    start = 0
    while len(audio) - start > limit:
        lo = (start + limit // 2) // HOP
        hi = max(lo + 1, (start + limit - FRAME) // HOP)
        cut = (lo + int(np.argmin(energy[lo:hi]))) * HOP + FRAME // 2
        spans.append((start, cut))
        start = cut
    spans.append((start, len(audio)))
    return spans


def length_buckets(lengths: list[int], max_batch: int, *, max_padding: float = MAX_PADDING,
                   max_samples: int = int(MAX_BUCKET_SECONDS * SAMPLE_RATE)) -> list[list[int]]:
    """Indices grouped into batches of similar length, shortest first.

    A batch closes when it holds `max_batch` clips, when adding the next (longer) clip would pad
    more than `max_padding` of the batch's samples, or would exceed `max_samples` padded samples.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    batch: list[int] = []
    total = 0
    for i in order:
        n = len(batch) + 1
        padded = n * lengths[i]
        if batch and (n > max_batch or padded - (total + lengths[i]) > max_padding * padded or padded > max_samples):
            batches.append(batch)
            batch, total = [], 0
        batch.append(i)
        total += lengths[i]
    if batch:
        batches.append(batch)
    return batches


def transcribe_clips(model, processor, audios: list[np.ndarray], *, batch_size: int = DECODE_BATCH_SIZE,
                     max_chunk_seconds: float = MAX_CHUNK_SECONDS, progress: str | None = None,
                     bias: LogitsHook | None = None, rewrite: Rewriter | None = None) -> list[ClipResult]:
    """One ClipResult per clip, in input order; a clip that fails is reported, never dropped.

    Clips (or their chunks) are encoded in tight length buckets and decoded in groups of up to
    `batch_size`. A bucket or group that raises is retried clip by clip, so one bad clip cannot
    take its neighbours down. `progress` labels a progress bar on stderr (None: no bar). `bias`
    shifts every decoding step's logits (keyterm biasing, evaluation/biasing.py); None: plain greedy.
    `rewrite` turns each clip's joined text into the text returned (spoken forms, evaluation/rewrite.py).
    """
    import torch

    from lora_training.models.adapters import frozen_dora
    from lora_training.models.registry import max_new_tokens_for

    positions = model.config.max_position_embeddings
    normalize = bool(getattr(processor.feature_extractor, "do_normalize", False))
    chunks: list[np.ndarray] = []
    owner: list[int] = []
    for i, audio in enumerate(audios):
        for start, end in quiet_split(audio, max_chunk_seconds):
            chunks.append(audio[start:end])
            owner.append(i)
    lengths = [len(c) for c in chunks]
    budgets = [max_new_tokens_for(n / SAMPLE_RATE, max_positions=positions) for n in lengths]
    states: dict[int, Encoded] = {}
    ids: dict[int, list[int]] = {}
    errors: dict[int, str] = {}
    max_samples = int(MAX_BUCKET_SECONDS * SAMPLE_RATE)

    def full(group: list[int]) -> bool:
        return len(group) >= batch_size or len(group) * lengths[group[-1]] >= max_samples

    def decode_ready(pending: list[int], flush: bool) -> list[int]:
        while pending and (flush or full(pending)):
            group = [pending.pop(0)]
            while pending and not full(group) and (len(group) + 1) * lengths[pending[0]] <= max_samples:
                group.append(pending.pop(0))
            _guarded(lambda g: decode_states(model, [states[i] for i in g], [budgets[i] for i in g], bias=bias),
                     group, ids, errors)
            for i in group:
                states.pop(i, None)
            bar.update(sum(lengths[i] for i in group))
        return pending

    bar = _progress_bar(progress, sum(lengths))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), unpadded_heads(model), frozen_dora(model):
            pending: list[int] = []
            for bucket in length_buckets(lengths, batch_size):
                _guarded(lambda b: encode_clips(model, [chunks[i] for i in b], normalize=normalize),
                         bucket, states, errors)
                pending = decode_ready(pending + [i for i in bucket if i in states], flush=False)
            decode_ready(pending, flush=True)
    finally:
        bar.close()
        model.train(was_training)

    results = [ClipResult(text="", chunks=0) for _ in audios]
    texts: list[list[str]] = [[] for _ in audios]
    for i, clip in enumerate(owner):
        result = results[clip]
        result.chunks += 1
        if i in errors:
            result.error = result.error or (errors[i] if result.chunks == 1 else f"chunk {result.chunks}: {errors[i]}")
            continue
        result.tokens.append(ids[i])
        texts[clip].append(processor.decode(ids[i], skip_special_tokens=True).strip())
    for result, parts in zip(results, texts):
        result.text = None if result.error else _rewritten(" ".join(p for p in parts if p), rewrite)
    return results


def _rewritten(text: str, rewrite: Rewriter | None) -> str:
    return rewrite(text) if rewrite else text


def _guarded(step, indices: list[int], out: dict, errors: dict[int, str]) -> None:
    """out[i] = step(indices)[k] for each index; if the step raises, each index alone, errors kept."""
    try:
        out.update(zip(indices, step(indices)))
        return
    except Exception as e:
        if len(indices) == 1:
            errors[indices[0]] = f"{type(e).__name__}: {e}"
            return
    for i in indices:
        try:
            out[i] = step([i])[0]
        except Exception as e:
            errors[i] = f"{type(e).__name__}: {e}"


def _progress_bar(label: str | None, total_samples: int):
    """Counted in whole samples (shown as seconds), so float rounding can never overshoot the total."""
    from tqdm import tqdm

    return tqdm(total=total_samples, desc=label, unit="s audio", unit_scale=1 / SAMPLE_RATE, disable=label is None,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]",
                leave=False)


def greedy_transcribe(model, processor, audios: list[np.ndarray], *, batch_size: int = DECODE_BATCH_SIZE,
                      progress: str | None = None, bias: LogitsHook | None = None,
                      rewrite: Rewriter | None = None) -> list[str]:
    """Texts for `audios` (16 kHz mono float32), in input order; the first failing clip raises."""
    results = transcribe_clips(model, processor, audios, batch_size=batch_size, progress=progress, bias=bias,
                               rewrite=rewrite)
    for i, result in enumerate(results):
        if result.error:
            raise RuntimeError(f"clip {i}: transcription failed: {result.error}")
    return [r.text for r in results]


def transcribe_with_runtime(runtime, audios: list[np.ndarray], *, max_chunk_seconds: float = MAX_CHUNK_SECONDS,
                            progress: str | None = None, rewrite: Rewriter | None = None) -> list[ClipResult]:
    """ClipResults from an exported model in an on-device runtime (export/runtimes.py), one clip at a
    time as the device decodes; long clips are cut at the same quiet points as `transcribe_clips`."""
    bar = _progress_bar(progress, sum(len(a) for a in audios))
    results = []
    try:
        for audio in audios:
            spans = quiet_split(audio, max_chunk_seconds)
            try:
                parts = [runtime.transcribe(audio[start:end]) for start, end in spans]
                results.append(ClipResult(text=_rewritten(" ".join(p for p in parts if p), rewrite), chunks=len(spans)))
            except Exception as e:
                results.append(ClipResult(text=None, error=f"{type(e).__name__}: {e}", chunks=len(spans)))
            bar.update(len(audio))
    finally:
        bar.close()
    return results
