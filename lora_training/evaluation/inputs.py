"""What `transcribe` and `evaluate NAME` read, and where they will write, all checked before a model loads.

Clips come from a manifest, audio files/folders or the safety set; unreadable audio becomes a
per-clip failure record (both systems skip it alike). `check_output` refuses a result path that
could not be written (a folder, under a file, an unwritable folder, an input file) now, rather
than after minutes of decoding.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_training.defaults import BUILTIN
from lora_training.errors import ConfigError, LoraTrainingError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


@dataclass
class Clip:
    """One input clip: a manifest utterance, or an audio file without a reference."""

    id: str
    audio: str
    ref: str | None = None
    terms: list[str] | None = None
    source: str | None = None  # the manifest row's, so scores can be broken down by source


def manifest_clips(path: str | os.PathLike) -> list[Clip]:
    """Clips of a manifest; missing audio becomes a per-clip failure later, not an error here."""
    from lora_training.data.manifest import load_manifest

    return [Clip(u.id, u.audio, u.text, u.terms, u.source) for u in load_manifest(path, check_audio=False)]


def audio_clips(paths: list[str]) -> list[Clip]:
    """Clips for audio files and every audio file under folders (recursively, sorted)."""
    clips = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            if not found:
                raise ConfigError(f"{path}: no audio files, expected {' '.join(AUDIO_SUFFIXES)} files in the folder")
            clips += [Clip(str(Path(given) / p.relative_to(path)), str(p)) for p in found]
        else:
            clips.append(Clip(str(given), str(path)))
    ids = [c.id for c in clips]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(f"--audio: the same file given twice, expected each once, got {', '.join(duplicates[:3])}")
    return clips


def safety_clips(reference: str, limit: int) -> tuple[str, str | None, list[Clip]]:
    """(manifest path, description, clips) of the safety set; `limit` keeps N evenly spaced clips."""
    from lora_training.evaluation.safety import about, builtin_safety_manifest

    if reference == BUILTIN:
        path = str(builtin_safety_manifest())
        description = about(path)
    else:
        path, description = reference, None
    clips = manifest_clips(path)
    if 0 < limit < len(clips):
        clips = [clips[i * len(clips) // limit] for i in range(limit)]
    return path, description, clips


def load_clip_audio(clips: list[Clip], set_name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Decoded audio by clip id, and one failure record per clip that could not be read."""
    from lora_training.data.audio import load_audio

    audio, failures = {}, []
    for clip in clips:
        try:
            audio[clip.id] = load_audio(clip.audio, max_seconds=None)
        except LoraTrainingError as e:
            failures.append(failure_record(clip, set_name, "audio", None, str(e)))
    return audio, failures


def failure_record(clip: Clip, set_name: str, stage: str, system: str | None, error: str) -> dict[str, Any]:
    return {"id": clip.id, "audio": clip.audio, "set": set_name, "stage": stage, "system": system, "error": error}


def check_output(path: str | os.PathLike, inputs: dict[str, Any], *, name: str = "output") -> None:
    """Fail before any model loads or clip decodes unless `path` can take the results: the rules of
    `atomic.check_outputs` (not an input, not a folder, not under a file), then a real write in the
    folder it would go to, since permission bits say "writable" to root and on read-only mounts."""
    from lora_training.atomic import check_outputs

    check_outputs({name: path}, {key: value for key, value in inputs.items() if value})
    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"{name}: cannot write {path}, expected a writable folder at {folder}, "
                          f"got {e.strerror or type(e).__name__}") from e
