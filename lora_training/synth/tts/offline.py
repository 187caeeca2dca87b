"""Every offline engine the machine has, pooled: espeak-ng, flite and festival voices.

More kinds of voice teach an adapter the term rather than one engine's sound. The clip's rng picks
one voice from the pool of every installed engine's voices, then that engine speaks with it.
Engines not installed are skipped (check() says which were found), so with espeak-ng alone the
pool is espeak's voices in espeak's order, and every clip (and its id) is `--backend espeak`'s.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from typing import Protocol

from lora_training.errors import ConfigError, LoraTrainingError
from lora_training.synth.tts import espeak, festival, flite
from lora_training.synth.tts.base import BackendOptions, Clip, TtsBackend


class VoiceEngine(TtsBackend, Protocol):
    """A backend with a table of voices, one of which the pool can ask it to speak with."""

    voices: tuple[str, ...]

    def installed(self) -> tuple[str, ...]:
        """Its table's voices this machine has; none when its tool is missing. Cheap, no error."""

    def speak(self, voice: str, spoken: str, rng: random.Random) -> Clip:
        """One clip of `spoken` in `voice`; speed and pitch come from `rng`."""


# Engine → (backend, the names it accepts). The order is the pool's: espeak first, so an
# espeak-only pool picks exactly as `--backend espeak` does.
ENGINES: dict[str, tuple[Callable[[BackendOptions], VoiceEngine], tuple[str, ...]]] = {
    "espeak": (espeak.EspeakBackend, espeak.VOICES + espeak.LANGUAGES),
    "flite": (flite.FliteBackend, flite.VOICES),
    "festival": (festival.FestivalBackend, festival.VOICES),
}


def route(name: str) -> tuple[str, str]:
    """`flite:slt` → (flite, slt); `flite` → (flite, "") for all its voices; a bare name is espeak's."""
    engine, sep, voice = name.partition(":")
    if sep and engine in ENGINES:
        return engine, voice
    if name in ENGINES:
        return name, ""
    return "espeak", name


class OfflineBackend:
    name = "offline"

    def __init__(self, options: BackendOptions):
        self.options = options
        self.engines: dict[str, VoiceEngine] = {}  # filled by check(): the installed ones with voices left
        self.pool: tuple[tuple[str, str], ...] = ()

    def _options(self) -> dict[str, BackendOptions]:
        """Each engine's own options from the qualified names; an engine left out is absent."""
        excluded = [route(n) for n in self.options.exclude_voices]
        wanted = [route(n) for n in self.options.voices]
        per_engine = {}
        for name in ENGINES:
            mine = [voice for engine, voice in wanted if engine == name]
            if (self.options.voices and not mine) or (name, "") in excluded:
                continue
            per_engine[name] = BackendOptions(
                exclude_voices=tuple(voice for engine, voice in excluded if engine == name),
                voices=() if "" in mine else tuple(mine),
            )
        return per_engine

    def check(self) -> None:
        if self.options.reference_manifest is not None:
            raise ConfigError(
                "reference_manifest: the offline engines do not clone voices, expected no --reference-manifest "
                f"with --backend offline, got {self.options.reference_manifest}"
            )
        routed = [(n, *route(n)) for n in (*self.options.exclude_voices, *self.options.voices)]
        unknown = [n for n, engine, voice in routed if voice and voice not in ENGINES[engine][1]]
        if unknown:
            raise ConfigError(
                f"voices: unknown voice(s) {', '.join(unknown)}, expected an espeak voice or language (en-us+m3, "
                f"en-gb), {', '.join(f'flite:{v}' for v in flite.VOICES)}, "
                f"{', '.join(f'festival:{v}' for v in festival.VOICES)} or an engine ({', '.join(ENGINES)})"
            )
        self.engines, missing = {}, []
        for name, options in self._options().items():
            backend = ENGINES[name][0](options)
            if not backend.voices:
                continue  # every voice excluded
            if self.options.voices:
                backend.check()  # asked for by name: a missing tool or voice is an error
            else:
                installed = backend.installed()
                voices = tuple(v for v in backend.voices if v in installed)
                if not voices:
                    missing.append(name)
                    continue
                if voices != backend.voices:
                    backend = ENGINES[name][0](BackendOptions(voices=voices))
            self.engines[name] = backend
        self.pool = tuple((name, voice) for name, backend in self.engines.items() for voice in backend.voices)
        if not self.pool:
            raise LoraTrainingError(
                "offline backend: no voice left, expected espeak-ng, flite or festival installed with a voice not "
                f"excluded (`make system-deps`), got {'none installed' if missing else 'every voice excluded'}"
            )
        found = ", ".join(f"{name} ({len(backend.voices)})" for name, backend in self.engines.items())
        print(f"offline backend: voices from {found}; not installed: {', '.join(missing) or 'none'}", file=sys.stderr)

    def fingerprint(self) -> str:
        return " ".join(backend.fingerprint() for backend in self.engines.values())

    def load(self) -> None:
        for backend in self.engines.values():
            backend.load()

    def synthesize(self, spoken: str, rng: random.Random) -> Clip:
        name, voice = rng.choice(self.pool)
        return self.engines[name].speak(voice, spoken, rng)
