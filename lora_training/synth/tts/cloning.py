"""What the voice-cloning backends (F5-TTS and its MLX port) need before a model is loaded:
the package, the weights (hub downloads, so offline they must already be cached) and short
reference clips of the user with their transcripts."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from lora_training.errors import ConfigError, LoraTrainingError, ModelError

# F5-TTS clips references longer than ~12 s and clones poorly from under ~2 s of speech.
REFERENCE_SECONDS = (2.0, 12.0)


@dataclass(frozen=True)
class Reference:
    id: str
    audio: str
    transcript: str  # what was said (the manifest's `spoken`, else `text`)


def require_package(backend: str, module: str, requirement: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise LoraTrainingError(
            f"{backend} backend: Python package {module!r} not installed, "
            f"expected `pip install {requirement}`, got none"
        )


def require_hub_files(backend: str, files: tuple[tuple[str, str], ...]) -> None:
    """Weights come from the Hugging Face hub: offline, every file must already be in its cache.

    Without this check the package would retry the unreachable hub and end in a traceback.
    """
    from huggingface_hub import try_to_load_from_cache

    from lora_training.models.registry import _hub_resolvable

    missing = [f"{repo}/{name}" for repo, name in files if not isinstance(try_to_load_from_cache(repo, name), str)]
    if missing and not _hub_resolvable():
        raise ModelError(
            f"{backend} backend: model weights not downloaded and the Hugging Face hub is unreachable, "
            f"expected {', '.join(missing)} in the hub cache, got offline (download them once online)"
        )


def load_references(backend: str, manifest: str | None) -> tuple[Reference, ...]:
    """The manifest's clips of a length the model clones well, each with what was said in it."""
    from lora_training.data.audio import audio_duration
    from lora_training.data.manifest import load_manifest

    if manifest is None:
        raise ConfigError(
            f"reference_manifest: {backend} clones the user's voice, expected --reference-manifest "
            "with recordings of the user (e.g. data/my_voice_train.jsonl), got none"
        )
    low, high = REFERENCE_SECONDS
    references = tuple(
        Reference(id=utt.id, audio=utt.audio, transcript=utt.spoken or utt.text)
        for utt in load_manifest(manifest)
        if low <= (utt.duration or audio_duration(utt.audio)) <= high
    )
    if not references:
        raise ConfigError(
            f"{manifest}: no reference clip, expected at least one clip of {low:g}-{high:g} s, got none"
        )
    return references


def check_cloning(backend: str, options, module: str, requirement: str,
                  files: tuple[tuple[str, str], ...]) -> tuple[Reference, ...]:
    """Every cheap check a cloning backend makes before work starts; returns its reference clips."""
    voices = (*options.exclude_voices, *options.voices)
    if voices:
        raise ConfigError(
            f"voices: only espeak has voices to choose, expected no --voices/--exclude-voices with "
            f"--backend {backend}, got {', '.join(voices)}"
        )
    require_package(backend, module, requirement)
    references = load_references(backend, options.reference_manifest)
    require_hub_files(backend, files)
    return references
