"""Greedy transcription of decoded audio with a (possibly adapted) Moonshine model.

Clips are sorted by length and decoded in batches so padding stays small; each batch's
token budget follows its longest clip, because Moonshine loops when left to run on.
"""

from __future__ import annotations

import numpy as np

from lora_training.data.audio import SAMPLE_RATE


def greedy_transcribe(model, processor, audios: list[np.ndarray], *, batch_size: int = 8) -> list[str]:
    """Texts for `audios` (16 kHz mono float32), in input order."""
    import torch

    from lora_training.models.registry import max_new_tokens_for
    from lora_training.training.collate import pad_audio

    order = sorted(range(len(audios)), key=lambda i: len(audios[i]))
    texts: list[str] = [""] * len(audios)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch = [audios[i] for i in idx]
                values, mask = pad_audio(batch, normalize=getattr(processor.feature_extractor, "do_normalize", False))
                budget = max_new_tokens_for(max(len(a) for a in batch) / SAMPLE_RATE)
                ids = model.generate(
                    input_values=values.to(device), attention_mask=mask.to(device), max_new_tokens=budget,
                    do_sample=False, num_beams=1,
                )
                for i, text in zip(idx, processor.batch_decode(ids, skip_special_tokens=True)):
                    texts[i] = text.strip()
    finally:
        model.train(was_training)
    return texts
