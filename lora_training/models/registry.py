"""Model references → (model, processor).

A reference is a Hugging Face hub id, a local `save_pretrained` folder, or `embedded:<name>`
(built offline from installed packages, see embedded.py). Everything else in the toolkit goes
through `resolve_model`, so the three kinds behave the same downstream.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from lora_training.defaults import EMBEDDED_MODEL, MODEL_REFERENCE_HELP, default_model
from lora_training.errors import ModelError
from lora_training.options import option
from lora_training.models.embedded import (
    EMBEDDED_PREFIX,
    beckett_wav,
    embedded_cache_path,
    embedded_model_dir,
)

# Moonshine's reference uses 6 tokens/s; dictated jargon ("__init__.py", "dev@example.com") is denser.
TOKENS_PER_SECOND = 10.0
# Short clips still get room for a word or two of long BPE pieces plus EOS.
MIN_NEW_TOKENS = 10
# Decoder positions of every published Moonshine (tiny and base); the start token takes one.
MOONSHINE_MAX_POSITIONS = 194


def _classify(ref: str) -> tuple[str, str]:
    """("embedded", name), ("folder", path) or ("hub", id); a path that does not exist is an error."""
    if ref.startswith(EMBEDDED_PREFIX):
        return "embedded", ref[len(EMBEDDED_PREFIX):]  # embedded.py rejects unknown names
    path = Path(ref).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"model {ref}: not a save_pretrained folder, expected {path / 'config.json'}, got none")
        return "folder", str(path.resolve())
    if ref.startswith((".", "/", "~")) or "\\" in ref or ref.count("/") > 1:
        raise ModelError(
            f"model {ref}: folder not found, expected a hub id, a local folder or {EMBEDDED_PREFIX}moonshine-base"
        )
    return "hub", ref


def describe_reference(ref: str) -> str:
    """What `ref` resolves to: a folder path (embedded models: their cache folder) or `hub:<id>`."""
    kind, target = _classify(ref)
    if kind == "embedded":
        return str(embedded_cache_path(target))
    return target if kind == "folder" else f"hub:{target}"


def resolve_model(ref: str, *, device: str = "cpu", rebuild: bool = False):
    """Load (model, processor) for a hub id, a local folder or `embedded:<name>`; eval mode, on `device`.

    `rebuild` re-converts an embedded model even if it is cached.
    """
    kind, target = _classify(ref)
    if kind == "embedded":
        kind, target = "folder", str(embedded_model_dir(target, rebuild=rebuild))
    if kind == "folder":
        model_type = json.loads((Path(target) / "config.json").read_text(encoding="utf-8")).get("model_type")
        if model_type != "moonshine":
            raise ModelError(f"model {ref}: wrong architecture, expected model_type 'moonshine', got {model_type!r}")
        model, processor = _load(target)
    else:
        model, processor = _load_from_hub(ref)
    return model.to(device).eval(), processor


def _load(source: str, local_files_only: bool = False):
    from transformers import AutoProcessor, MoonshineForConditionalGeneration

    from lora_training.models.runtime import quiet_libraries

    quiet_libraries()
    model = MoonshineForConditionalGeneration.from_pretrained(source, local_files_only=local_files_only)
    return model, AutoProcessor.from_pretrained(source, local_files_only=local_files_only)


def _offline_hint() -> str:
    """The two ways to work without the hub, the embedded one only where it can be installed."""
    from lora_training.defaults import embedded_available
    from lora_training.models.embedded import INSTALL_HINT

    embedded = (f"--model-id {EMBEDDED_MODEL} (offline)" if embedded_available()
                else f"the embedded model ({INSTALL_HINT}, Linux x86-64)")
    return f"use {embedded} or a local save_pretrained folder"


def _hub_resolvable() -> bool:
    """False when offline mode is on or the hub's host name does not resolve.

    Without this, huggingface_hub retries an unreachable host for ~25 s before giving up.
    """
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.is_offline_mode():
        return False
    try:
        socket.getaddrinfo(urlparse(constants.ENDPOINT).hostname, 443)
    except OSError:
        return False
    return True


def _load_from_hub(ref: str):
    from transformers import AutoConfig

    local_files_only = not _hub_resolvable()  # then only the local hub cache can answer
    try:
        # The config is tiny: fetch it first so a wrong or unreachable id fails before any weights.
        config = AutoConfig.from_pretrained(ref, local_files_only=local_files_only)
        if config.model_type != "moonshine":
            raise ModelError(f"model {ref}: wrong architecture, expected model_type 'moonshine', got {config.model_type!r}")
        return _load(ref, local_files_only=local_files_only)
    except (OSError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(
            f"model {ref}: cannot load from the Hugging Face hub (offline, unreachable or no such id), "
            f"expected a reachable hub id, got {type(e).__name__}: {reason[:160]}; {_offline_hint()}"
        ) from e


def max_new_tokens_for(seconds: float, *, max_positions: int = MOONSHINE_MAX_POSITIONS) -> int:
    """A decoding cap for a clip of `seconds`: 10 tokens/s, at least 10, at most max_positions - 1.

    The cap stops a hallucinating decoder early and never asks for more positions than the model has.
    """
    if not seconds > 0:
        raise ModelError(f"max_new_tokens_for: clip duration must be positive, expected > 0 s, got {seconds}")
    return min(max_positions - 1, max(MIN_NEW_TOKENS, math.ceil(seconds * TOKENS_PER_SECOND)))


def greedy_decode(model, processor, audio, max_new_tokens: int | None = None) -> list[int]:
    """Greedy token ids for one clip (float32 16 kHz), decoder start token first, as `generate` returns them."""
    import torch

    from lora_training.data.audio import SAMPLE_RATE

    if max_new_tokens is None:
        max_new_tokens = max_new_tokens_for(len(audio) / SAMPLE_RATE, max_positions=model.config.max_position_embeddings)
    inputs = processor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt")
    with torch.inference_mode():
        ids = model.generate(
            input_values=inputs["input_values"].to(model.device),
            attention_mask=inputs["attention_mask"].to(model.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
        )
    return ids[0].tolist()


@dataclass
class CheckOptions:
    model_id: str = option(default_model("check"), MODEL_REFERENCE_HELP, positional=True, nargs="?")
    audio: str | None = option(None, "clip to transcribe (default: the wheel's beckett.wav)")
    rebuild: bool = option(False, "rebuild the embedded model even if cached")


def check_model(ref: str, audio: str | os.PathLike | None = None, rebuild: bool = False) -> dict:
    """Load `ref` and transcribe one clip (default: beckett.wav); timings included, JSON-ready."""
    from lora_training.data.audio import SAMPLE_RATE, load_audio

    from lora_training.defaults import embedded_available

    if audio is None and not embedded_available():
        raise ModelError(f"models check {ref}: no test clip, expected --audio FILE (the default clip ships in the "
                         f"embedded extra, which is not installed here)")
    audio_path = Path(audio) if audio is not None else beckett_wav()
    samples = load_audio(audio_path)  # a bad clip fails before the model is loaded
    # Imported before the clock: load_seconds measures the model (~0.5 s), not the libraries (~5 s).
    from transformers import MoonshineForConditionalGeneration  # noqa: F401  (public name; loads the model code)

    start = time.perf_counter()
    model, processor = resolve_model(ref, rebuild=rebuild)
    load_seconds = time.perf_counter() - start
    start = time.perf_counter()
    ids = greedy_decode(model, processor, samples)
    decode_seconds = time.perf_counter() - start
    return {
        "model": ref,
        "resolved": describe_reference(ref),
        "load_seconds": round(load_seconds, 3),
        "audio": str(audio_path),
        "audio_seconds": round(len(samples) / SAMPLE_RATE, 3),
        "transcript": processor.decode(ids, skip_special_tokens=True).strip(),
        "decode_seconds": round(decode_seconds, 3),
    }
