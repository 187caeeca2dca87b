"""The built-in safety set: real human English speech assembled offline from two Debian packages.

What it is, and is not: one professional voice reading telephone prompts (Asterisk's core
sounds, 8 kHz telephone band, upsampled to 16 kHz) plus five LibriVox audiobook sentences
(pocketsphinx-testdata). It is a tripwire for an adapter that damages ordinary English, narrow
in speakers and style, not a general benchmark; use `--safety-manifest` with your own
general-domain recordings for a broader check.

The manifest and its 16 kHz wavs are built once into the user cache, in a folder keyed by the
sources' names, sizes, mtimes and transcripts, so an upgraded package is never served stale.

The set is split once, reproducibly (by a hash of each clip's id, so adding a package's clip
never moves another), into a *measurement* half, which every safety WER reads, and a *replay*
half, which training may mix in against forgetting. A run never uses both: a safety score on
clips the adapter trained on would hide the damage it measures. Both halves hold the same
voices (one telephone voice dominates), so replay protects that voice's English more than
English in general.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from lora_training.errors import ConfigError

DEBIAN_PACKAGES = ("asterisk-core-sounds-en-wav", "pocketsphinx-testdata")
ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds/en")
# The prompts' text index ships in asterisk-core-sounds-en (a dependency of the -wav package).
ASTERISK_INDEX = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
# Bump when the selection, conversion or split changes: the cache key includes it.
BUILDER_VERSION = 2
HALVES = ("measure", "replay")
# Prompts under 3 s are single words ("Activated."); over 20 s they would need chunking.
MIN_PROMPT_SECONDS = 3.0
MAX_PROMPT_SECONDS = 20.0
DESCRIPTION = (
    "built-in safety set: Asterisk telephone prompts (one professional female voice, 8 kHz telephone band "
    "upsampled to 16 kHz, 3-20 s) and LibriVox audiobook sentences from pocketsphinx-testdata (16 kHz); "
    "a tripwire for damage to ordinary English, narrow in speakers and style"
)
# Index lines that describe a sound rather than transcribe speech, or hold symbols the speaker
# says as words ("press * to ...", "www.asterisk.org"): skipped, since no spelling is right.
_NOT_SPEECH = re.compile(r"[\[\](){}*#<>/@=]|\w\.\w")
_ELLIPSIS = re.compile(r"\.{2,}")
_LIBRIVOX_LINE = re.compile(r"^<s>\s*(.*?)\s*</s>\s*\((\S+)\)\s*$")


@dataclass(frozen=True)
class SafetySource:
    """One clip of the safety set before conversion."""

    id: str
    path: Path
    text: str
    speaker: str


def find_sources() -> list[SafetySource]:
    """Every usable clip the installed packages provide, else the online set (safety_online.py);
    an error naming both, and --safety-manifest, if neither can be had."""
    import soundfile as sf

    from lora_training.defaults import hidden
    from lora_training.evaluation.safety_online import online_sources
    from lora_training.models.embedded import cache_root

    sources = [] if hidden("debian") else _librivox_sources()
    for name, text in [] if hidden("debian") else _asterisk_index():
        path = ASTERISK_SOUNDS / f"{name}.wav"
        if not path.is_file():
            continue
        info = sf.info(str(path))
        if MIN_PROMPT_SECONDS <= info.frames / info.samplerate <= MAX_PROMPT_SECONDS:
            sources.append(SafetySource(f"asterisk/{name}", path, text, "asterisk-allison"))
    if sources:
        return sources
    sources, why_not = online_sources(cache_root() / "safety" / "librispeech")
    if not sources:
        raise ConfigError(
            f"--safety builtin: no speech found, expected Debian packages {' and '.join(DEBIAN_PACKAGES)} "
            f"(files under {ASTERISK_SOUNDS} and {LIBRIVOX}) or the online set, got neither ({why_not}); install "
            f"the packages (`apt-get install {' '.join(DEBIAN_PACKAGES)}`, scripts/system-deps.sh does), connect "
            f"once, or pass a general-English manifest of your own with --safety-manifest PATH"
        )
    return sources


def description_of(sources: list[SafetySource]) -> str:
    from lora_training.evaluation.safety_online import DESCRIPTION as ONLINE

    return ONLINE if sources and sources[0].id.startswith("librispeech/") else DESCRIPTION


def about(manifest: str | Path) -> str | None:
    """The description of a built safety set, from the about.json beside its manifest."""
    path = Path(manifest).parent / "about.json"
    return json.loads(path.read_text(encoding="utf-8")).get("description") if path.is_file() else None


def _asterisk_index() -> list[tuple[str, str]]:
    """(prompt name, transcript) pairs, speech only, first of each distinct transcript."""
    if not ASTERISK_INDEX.is_file():
        return []
    pairs = []
    seen: set[str] = set()
    with gzip.open(ASTERISK_INDEX, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            name, sep, text = line.partition(":")
            if not sep or line.startswith(";") or " " in name.strip():
                continue
            text = " ".join(_ELLIPSIS.sub(" ", text).split())
            if not text or _NOT_SPEECH.search(text) or text.casefold() in seen:
                continue
            seen.add(text.casefold())
            pairs.append((name.strip(), text))
    return pairs


def _librivox_sources() -> list[SafetySource]:
    transcription = LIBRIVOX / "transcription"
    if not transcription.is_file():
        return []
    sources = []
    for line in transcription.read_text(encoding="utf-8").splitlines():
        match = _LIBRIVOX_LINE.match(line.strip())
        if match and (LIBRIVOX / f"{match.group(2)}.wav").is_file():
            sources.append(SafetySource(f"librivox/{match.group(2)}", LIBRIVOX / f"{match.group(2)}.wav",
                                        match.group(1), "librivox-austen"))
    return sources


def _cache_key(sources: list[SafetySource]) -> str:
    listing = [[s.id, s.text, s.path.stat().st_size, s.path.stat().st_mtime_ns] for s in sources]
    return hashlib.sha256(json.dumps([BUILDER_VERSION, listing]).encode()).hexdigest()[:12]


def half_of(clip_id: str) -> str:
    """`measure` or `replay` for a clip, from a hash of its id: stable, and about half each."""
    return HALVES[hashlib.sha256(clip_id.encode("utf-8")).digest()[0] & 1]


def builtin_safety_manifest(half: str | None = "measure") -> Path:
    """One half of the built-in safety set (None: all of it), built into the user cache on first use."""
    if half is not None and half not in HALVES:
        raise ConfigError(f"safety half: unknown {half!r}, expected one of {', '.join(HALVES)}")
    from lora_training.atomic import atomic_replace_dir, atomic_write_json, staging_dir
    from lora_training.data.audio import SAMPLE_RATE, load_audio, write_wav
    from lora_training.data.manifest import Utterance, save_manifest
    from lora_training.models.embedded import cache_root

    sources = find_sources()
    folder = cache_root() / "safety" / f"builtin-{_cache_key(sources)}"
    manifest = folder / f"{half or 'manifest'}.jsonl"
    if manifest.is_file():
        return manifest
    staging = staging_dir(folder)
    try:
        utterances = []
        for source in sources:
            samples = load_audio(source.path, max_seconds=None)
            wav = write_wav(staging / "audio" / f"{source.id.replace('/', '_')}.wav", samples)
            utterances.append(Utterance(audio=str(wav), text=source.text, id=source.id, source="real",
                                        duration=round(len(samples) / SAMPLE_RATE, 3), speaker=source.speaker))
        save_manifest(staging / "manifest.jsonl", utterances)
        for name in HALVES:
            save_manifest(staging / f"{name}.jsonl", [u for u in utterances if half_of(u.id) == name])
        atomic_write_json(staging / "about.json", {"description": description_of(sources),
                                                   "packages": list(DEBIAN_PACKAGES),
                                                   "utterances": len(utterances), "builder_version": BUILDER_VERSION,
                                                   "halves": {h: sum(half_of(u.id) == h for u in utterances)
                                                              for h in HALVES}})
        atomic_replace_dir(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def replay_source(reference: str | None) -> tuple[str | None, str | None]:
    """(manifest path, note) for `--replay-manifest`: `builtin` is the replay half, never the half
    safety scores read. Where the built-in set is not installed (macOS, a slim container) replay is
    off, with the note saying why, rather than the run failing over a default."""
    from lora_training.defaults import BUILTIN
    from lora_training.errors import LoraTrainingError

    if reference != BUILTIN:
        return reference, None
    try:
        return str(builtin_safety_manifest("replay")), None
    except LoraTrainingError as e:
        return None, f"replay off: the built-in set is not available ({e})"
