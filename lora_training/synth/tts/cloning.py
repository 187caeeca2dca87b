"""What the voice-cloning backends (F5-TTS, its MLX port, Pocket TTS) need before a model is
loaded: the package, the weights (hub downloads, so offline they must already be cached) and
short reference clips of the user with their transcripts."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from lora_training.errors import ConfigError, LoraTrainingError, ModelError



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


def require_hub_files(backend: str, files: tuple[tuple[str, ...], ...]) -> None:
    """Weights come from the Hugging Face hub: offline, every file must already be in its cache.

    Without this check the package would retry the unreachable hub and end in a traceback.
    A file is `(repo, path)` or `(repo, path, revision)`: one a package pins to a commit is cached
    under that commit, where a lookup of the default branch would not find it.
    """
    from huggingface_hub import try_to_load_from_cache

    from lora_training.models.registry import _hub_resolvable

    missing = []
    for repo, name, *pinned in files:
        if not isinstance(try_to_load_from_cache(repo, name, revision=pinned[0] if pinned else None), str):
            missing.append(f"{repo}/{name}")
    if missing and not _hub_resolvable():
        raise ModelError(
            f"{backend} backend: model weights not downloaded and the Hugging Face hub is unreachable, "
            f"expected {', '.join(missing)} in the hub cache, got offline (download them once online)"
        )


def load_references(backend: str, manifest: str | None) -> tuple[Reference, ...]:
    """The reference clips chosen from the user's recordings (synth/references.py): 5-10 s, clean,
    real, spread over the set, resampled once to the cloning model's 24 kHz."""
    if manifest is None:
        raise ConfigError(
            f"reference_manifest: {backend} clones the user's voice, expected --reference-manifest "
            "with recordings of the user (e.g. data/my_voice_train.jsonl), got none"
        )
    from lora_training.synth.references import choose_references

    return choose_references(manifest)


def check_cloning(backend: str, options, module: str, requirement: str,
                  files: tuple[tuple[str, ...], ...]) -> tuple[Reference, ...]:
    """Every cheap check a cloning backend makes before work starts; returns its reference clips."""
    voices = (*options.exclude_voices, *options.voices)
    if voices:
        raise ConfigError(
            f"voices: only espeak has voices to choose, expected no --voices/--exclude-voices with "
            f"--backend {backend}, got {', '.join(voices)}"
        )
    require_package(backend, module, requirement)
    require_hub_files(backend, files)  # offline without weights is the likeliest failure: said first
    return load_references(backend, options.reference_manifest)


def read_reference(path: str, rate: int):
    """A reference clip as mono float32 at `rate`, resampled from the file's own rate (a chosen
    reference is already at the model's 24 kHz; going through 16 kHz would lose its top band)."""
    import soundfile as sf
    import soxr

    data, native = sf.read(path, dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    return mono if native == rate else soxr.resample(mono, native, rate, quality="HQ").astype("float32")
