"""TTS backends by name: `BACKENDS[name](options)` builds one (see base.py for the interface)."""

from __future__ import annotations

from typing import Callable

from lora_training.synth.tts.base import BackendOptions, Clip, TtsBackend
from lora_training.synth.tts.espeak import EspeakBackend
from lora_training.synth.tts.f5 import F5Backend
from lora_training.synth.tts.f5_mlx import F5MlxBackend
from lora_training.synth.tts.festival import FestivalBackend
from lora_training.synth.tts.flite import FliteBackend
from lora_training.synth.tts.offline import OfflineBackend
from lora_training.synth.tts.pocket import PocketBackend

BACKENDS: dict[str, Callable[[BackendOptions], TtsBackend]] = {
    "espeak": EspeakBackend,
    "flite": FliteBackend,
    "festival": FestivalBackend,
    "offline": OfflineBackend,
    "f5-tts": F5Backend,
    "f5-tts-mlx": F5MlxBackend,
    "pocket-tts": PocketBackend,
}

__all__ = ["BACKENDS", "BackendOptions", "Clip", "TtsBackend"]
