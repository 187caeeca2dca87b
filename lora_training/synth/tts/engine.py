"""What the command-line engines flite and festival share: voice names, install hints, one run.

A voice is named bare inside its own backend (`--backend flite --voices slt`) or qualified with
its engine (`flite:slt`), the name a clip's `speaker` records and the `offline` backend needs,
so a speaker copied from a manifest works in both.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lora_training.errors import ConfigError, LoraTrainingError
from lora_training.synth.tts.base import BackendOptions

# A clip is one short sentence: festival takes ~0.4 s, flite ~0.05 s; a minute means a hung tool.
TIMEOUT_SECONDS = 60
INSTALL = {
    "flite": "apt-get install flite or brew install flite",
    "festival": "apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts; "
                "no Homebrew formula",
}


def bare(engine: str, name: str) -> str:
    """`flite:slt` → `slt`; a bare name stays as it is."""
    prefix = f"{engine}:"
    return name[len(prefix):] if name.startswith(prefix) else name


def select_voices(engine: str, table: tuple[str, ...], options: BackendOptions) -> tuple[str, ...]:
    """`table`'s voices that `options` leave, in table order (the order seeds pick from)."""
    excluded = {bare(engine, n) for n in options.exclude_voices}
    wanted = {bare(engine, n) for n in options.voices}
    return tuple(v for v in table if v not in excluded and (not wanted or v in wanted))


def check_options(engine: str, table: tuple[str, ...], options: BackendOptions, voices: tuple[str, ...]) -> None:
    if options.reference_manifest is not None:
        raise ConfigError(
            f"reference_manifest: {engine} does not clone voices, expected no --reference-manifest "
            f"with --backend {engine}, got {options.reference_manifest}"
        )
    unknown = [n for n in (*options.exclude_voices, *options.voices) if bare(engine, n) not in table]
    if unknown:
        raise ConfigError(
            f"voices: unknown {engine} voice(s) {', '.join(unknown)}, expected one of {', '.join(table)} "
            f"(bare or as {engine}:NAME)"
        )
    if not voices:
        raise ConfigError("exclude_voices: every voice excluded, expected at least one voice left")


def require_tool(engine: str, tool: str) -> None:
    if shutil.which(tool) is None:
        raise LoraTrainingError(
            f"{engine} backend: {tool} not found on PATH, expected it installed "
            f"(`make system-deps`, {INSTALL[engine]}), got none"
        )


def missing_voices(engine: str, voices: tuple[str, ...], installed: tuple[str, ...]) -> None:
    """A voice of the table the tool does not list: its package is not installed."""
    missing = [v for v in voices if v not in installed]
    if missing:
        raise LoraTrainingError(
            f"{engine} backend: voice(s) {', '.join(missing)} not installed, expected them among the "
            f"installed {', '.join(installed) or 'none'} (`make system-deps`, {INSTALL[engine]})"
        )


def listing(engine: str, command: list[str]) -> str:
    """What a tool prints about itself (its voices); empty when the tool is missing or fails."""
    if shutil.which(command[0]) is None:
        return ""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired as e:
        raise LoraTrainingError(
            f"{engine} backend: `{' '.join(command)}` hung, expected its voices within {TIMEOUT_SECONDS} s, got none"
        ) from e
    return done.stdout + done.stderr if done.returncode == 0 else ""


def speak(engine: str, voice: str, spoken: str, command: Callable[[Path, Path], list[str]]) -> np.ndarray:
    """Run `command(text_file, wav_file)` and read the wav as float32 mono 16 kHz (soxr resamples).

    The text goes in a file, so a sentence starting with "-" ("--force is risky") is never an option.
    """
    from lora_training.data.audio import load_audio

    with tempfile.TemporaryDirectory(prefix=f"{engine}-") as folder:
        text, wav = Path(folder) / "clip.txt", Path(folder) / "clip.wav"
        text.write_text(spoken + "\n", encoding="utf-8")
        argv = command(text, wav)
        try:
            done = subprocess.run(argv, capture_output=True, timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired as e:
            raise LoraTrainingError(
                f"{engine} backend: {argv[0]} hung, expected a clip within {TIMEOUT_SECONDS} s, got none for {spoken!r}"
            ) from e
        # festival exits 0 after a scheme error ("SIOD ERROR: ..."); a 44-byte wav is a header alone.
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
        if done.returncode != 0 or b"ERROR" in done.stderr or not wav.is_file() or wav.stat().st_size <= 44:
            raise LoraTrainingError(
                f"{engine} backend: {argv[0]} failed for voice {voice}, expected exit 0 and a clip, got exit "
                f"{done.returncode}: {reason[0] if reason else 'no audio for ' + repr(spoken)}"
            )
        return load_audio(wav, min_seconds=0.0, max_seconds=None)
