"""Record the user's own voice, prompt by prompt, into a manifest that survives Ctrl-C.

Each kept take is written as `recordings/rec-NNNN.wav` beside the manifest and appended to the
manifest at once (atomically), so an interrupted session loses at most the take in hand. A
re-run skips prompts whose text is already in the manifest and numbers on after the highest
existing id or wav, so it never overwrites a clip. Level, clipping and pause problems are shown
right after each take, while redoing it costs five seconds instead of a poisoned dataset.

The microphone is an `AudioSource`; keystrokes come from an injected `ask` function, so tests
replace only the device and script the keys. The studio's Record page records in the browser and
shares the rest: `recorded`, `trim_key_sounds`, `describe_levels` and `save_take`.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np

from lora_training.atomic import atomic_write_text
from lora_training.data.audio import MAX_SECONDS, MIN_SECONDS, SAMPLE_RATE, write_wav
from lora_training.data.manifest import Utterance, field_problems, load_manifest
from lora_training.data.quality import Levels, Thresholds, check_audio, dbfs
from lora_training.errors import ConfigError, LoraTrainingError, ManifestError
from lora_training.options import option

if TYPE_CHECKING:
    from lora_training.synth.sentences import GeneratedSentence

_ID = re.compile(r"^rec-(\d+)$")
RECORDINGS_DIR = "recordings"
# Sound of the key trimmed from each take (Enter here, Space on the studio's Record page): its
# release just after the take starts, and its press just before a key-stopped take ends.
KEY_RELEASE_SECONDS = 0.1
KEY_PRESS_SECONDS = 0.15
TOO_SHORT = "too short to keep, record it again"


class RecordingError(LoraTrainingError):
    """No usable microphone: sounddevice or PortAudio missing, or no input device."""


class AudioSource(Protocol):
    def record(self, stop: Callable[[], object] | None, max_seconds: float) -> np.ndarray:
        """16 kHz mono float32 samples, recorded until `stop()` returns (it blocks, e.g. on
        Enter) or `max_seconds` have passed; with `stop=None`, exactly `max_seconds`."""


def _sounddevice():
    try:
        import sounddevice
    except ImportError as e:
        raise RecordingError(
            "microphone: sounddevice is not installed, expected `pip install -e '.[record]'`, "
            f"got {type(e).__name__}: {e}"
        ) from e
    except OSError as e:  # sounddevice raises OSError when the PortAudio library is absent
        raise RecordingError(
            "microphone: PortAudio library not found, expected it installed "
            f"(`apt install libportaudio2` or `brew install portaudio`), got {type(e).__name__}: {e}"
        ) from e
    return sounddevice


class Microphone:
    """The real AudioSource (sounddevice/PortAudio); falls back to the device's own rate and
    resamples when it cannot record at 16 kHz directly."""

    def __init__(self, device: str | None = None):
        sd = _sounddevice()
        self._sd = sd
        self._device = int(device) if device is not None and device.isdigit() else device
        try:
            info = sd.query_devices(self._device, kind="input")
        except (sd.PortAudioError, ValueError) as e:
            raise RecordingError(
                f"microphone {device or '(default)'}: no input device, expected a working microphone, got {e}"
            ) from e
        self.name = info["name"]
        try:
            sd.check_input_settings(device=self._device, samplerate=SAMPLE_RATE, channels=1, dtype="float32")
            self.rate = SAMPLE_RATE
        except (sd.PortAudioError, ValueError):
            self.rate = int(info["default_samplerate"])

    def record(self, stop: Callable[[], object] | None, max_seconds: float) -> np.ndarray:
        sd = self._sd
        blocks: list[np.ndarray] = []
        limit = round(max_seconds * self.rate)
        finished = threading.Event()
        collected = 0

        def collect(indata, frames, time, status):
            nonlocal collected
            blocks.append(indata[:, 0].copy())
            collected += frames
            if collected >= limit:
                raise sd.CallbackStop

        try:
            stream = sd.InputStream(samplerate=self.rate, channels=1, dtype="float32", device=self._device,
                                    callback=collect, finished_callback=finished.set)
        except sd.PortAudioError as e:
            raise RecordingError(f"microphone {self.name}: cannot open, expected a free input device, got {e}") from e
        with stream:
            if stop is None:
                # Short waits keep Ctrl-C responsive while the stream runs.
                while not finished.wait(0.1):
                    pass
            else:
                stop()
        audio = np.concatenate(blocks)[:limit] if blocks else np.zeros(0, np.float32)
        return to_sample_rate(audio, self.rate)


def to_sample_rate(mono: np.ndarray, rate: int) -> np.ndarray:
    """Mono samples recorded at `rate` as float32 at 16 kHz (soxr HQ, as every clip is loaded)."""
    if rate != SAMPLE_RATE:
        import soxr

        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def load_prompts(vocabulary: str | os.PathLike, count: int, *, seed: int = 0,
                 sentences: str | os.PathLike | None = None) -> list[GeneratedSentence]:
    """The first `count` prompts: generated from the vocabulary, or the lines of `sentences`.

    Generated prompts cover every term at least once (not three times as for TTS): a hundred
    recordings must cover a long vocabulary, and usage stays even across terms anyway.
    """
    from lora_training.data.vocabulary import load_vocabulary
    from lora_training.synth.sentences import generate_sentences, sentences_from_file

    if count < 1:
        raise ConfigError(f"count: no prompts, expected a number of prompts >= 1, got {count}")
    vocab = load_vocabulary(vocabulary)
    if sentences is not None:
        return sentences_from_file(sentences, vocab, seed=seed)[:count]
    return generate_sentences(vocab, count, seed=seed, min_per_term=1, stream="record")


@dataclass
class SessionSummary:
    manifest: str
    prompts: int
    already_recorded: int
    recorded: int
    skipped: int
    quit: bool

    def render(self) -> str:
        left = self.prompts - self.already_recorded - self.recorded
        end = "stopped early" if self.quit else "done"
        return (f"{end}: {self.recorded} recorded, {self.skipped} skipped, {left} of {self.prompts} prompts "
                f"still to record; manifest: {self.manifest}")


def _append(manifest: Path, utt: Utterance) -> None:
    """Rewrite the manifest atomically with one more line, every earlier line kept byte for byte."""
    d = utt.to_dict()
    problems = field_problems(d)
    if problems:
        raise ManifestError([f"{manifest}: utterance {utt.id}: {p}" for p in problems])
    d["audio"] = os.path.relpath(os.path.abspath(utt.audio), os.path.abspath(manifest.parent)).replace(os.sep, "/")
    old = manifest.read_text(encoding="utf-8") if manifest.exists() else ""
    if not old.strip():
        old = ""
    elif not old.endswith("\n"):
        old += "\n"
    atomic_write_text(manifest, old + json.dumps(d, ensure_ascii=False) + "\n")


def _next_number(existing: list[Utterance], recordings: Path) -> int:
    """One past the highest rec-NNNN among ids and wav files, so no clip is ever overwritten."""
    names = [u.id for u in existing]
    if recordings.is_dir():
        names += [p.stem for p in recordings.glob("rec-*.wav")]
    numbers = [int(m.group(1)) for m in map(_ID.match, names) if m]
    return max(numbers, default=0) + 1


def recorded(manifest: str | os.PathLike) -> list[Utterance]:
    """The manifest's rows so far; a missing or blank manifest is a fresh start."""
    manifest = Path(manifest)
    started = manifest.exists() and manifest.read_text(encoding="utf-8-sig").strip()
    return load_manifest(manifest, check_audio=False) if started else []


def trim_key_sounds(audio: np.ndarray, *, stopped_by_key: bool = True) -> np.ndarray:
    """A take without the key that started it (its release) and, when a key stopped it, that
    key's press: loud on laptop microphones, each reads as speech cut at the edge."""
    start = round(KEY_RELEASE_SECONDS * SAMPLE_RATE)
    end = len(audio) - round(KEY_PRESS_SECONDS * SAMPLE_RATE) if stopped_by_key else len(audio)
    return audio[start:max(start, end)]


def describe_levels(levels: Levels) -> str:
    """The one-line measurement shown after each take."""
    pauses = "-" if levels.lead is None else f"{levels.lead:.2f}/{levels.trail:.2f} s"
    return (f"{levels.seconds:.2f} s, peak {dbfs(levels.peak):.1f} dBFS, "
            f"speech {dbfs(levels.speech_rms):.1f} dBFS, pauses {pauses}")


def save_take(manifest: str | os.PathLike, prompt: GeneratedSentence, audio: np.ndarray, *,
              speaker: str) -> Utterance:
    """Keep one take: `recordings/rec-NNNN.wav` beside the manifest, then its row appended.

    The number is one past every id and wav already there, read now, so a take never overwrites a
    clip; the wav is written first, so a crash between the two leaves an orphan wav, never a row
    without audio. Callers that may save concurrently hold one lock around this.
    """
    manifest = Path(manifest)
    recordings = manifest.parent / RECORDINGS_DIR
    utt_id = f"rec-{_next_number(recorded(manifest), recordings):04d}"
    path = write_wav(recordings / f"{utt_id}.wav", audio)
    utt = Utterance(
        audio=str(path),
        text=prompt.text,
        id=utt_id,
        duration=round(len(audio) / SAMPLE_RATE, 3),
        source="real",
        speaker=speaker,
        spoken=prompt.spoken if prompt.spoken != prompt.text else None,
        terms=list(prompt.terms) or None,
    )
    _append(manifest, utt)
    return utt


class _Quit(Exception):
    """q pressed or input ended: leaves the session from any depth of the prompt loop."""


class RecordingSession:
    """One pass over the prompts; `ask` reads a key line (like `input`), `say` prints a line."""

    def __init__(self, manifest: str | os.PathLike, source: AudioSource, *, speaker: str,
                 seconds: float | None = None, thresholds: Thresholds = Thresholds(),
                 ask: Callable[[str], str] = input, say: Callable[[str], None] = print):
        if seconds is not None and not MIN_SECONDS <= seconds <= MAX_SECONDS:
            raise ConfigError(f"seconds: take length out of range, expected {MIN_SECONDS:g}-{MAX_SECONDS:g} s, "
                              f"got {seconds:g}")
        self.manifest = Path(manifest)
        self.source = source
        self.speaker = speaker
        self.seconds = seconds
        self.thresholds = thresholds
        self.ask = ask
        self.say = say

    def run(self, prompts: list[GeneratedSentence]) -> SessionSummary:
        done = {u.text for u in recorded(self.manifest)}
        todo = [p for p in prompts if p.text not in done]
        summary = SessionSummary(str(self.manifest), len(prompts), len(prompts) - len(todo), 0, 0, False)
        stop_how = f"records {self.seconds:g} s" if self.seconds else "starts, Enter again stops"
        self.say(f"{len(todo)} of {len(prompts)} prompts to record into {self.manifest} "
                 f"(Enter {stop_how}; r redo, s skip, q quit)")
        try:
            for index, prompt in enumerate(todo, start=1):
                self.say(f"\n[{index}/{len(todo)}] {prompt.text}")
                if prompt.spoken != prompt.text:
                    self.say(f"    say: {prompt.spoken}")
                audio = self._take_until_kept()
                if audio is None:
                    summary.skipped += 1
                    continue
                utt = save_take(self.manifest, prompt, audio, speaker=self.speaker)
                self.say(f"  saved {utt.id}")
                summary.recorded += 1
        except _Quit:
            summary.quit = True
        except KeyboardInterrupt:
            self.say(f"\ninterrupted: {summary.recorded} recording(s) of this session are in {self.manifest}")
            raise
        return summary

    def _take_until_kept(self) -> np.ndarray | None:
        """The kept take, or None when the prompt is skipped."""
        while True:
            if self._key("  Enter: record | s: skip | q: quit > ", "s") == "s":
                return None
            audio = self._record()
            levels, issues = check_audio(audio, self.thresholds)
            self.say(f"  {describe_levels(levels)}" + ("" if issues else ", OK"))
            for issue in issues:
                self.say(f"  ! {issue.message}")
            if levels.seconds < MIN_SECONDS:
                self.say(f"  {TOO_SHORT}")
                continue
            key = self._key("  Enter: keep | r: redo | s: skip | q: quit > ", "rs")
            if key != "r":
                return audio if key == "" else None

    def _key(self, prompt: str, allowed: str) -> str:
        """'' for Enter or one of `allowed`; q (or end of input) raises _Quit from any depth."""
        while True:
            try:
                key = self.ask(prompt).strip().lower()
            except EOFError:
                key = "q"
            if key == "q":
                raise _Quit
            if key == "" or key in list(allowed):
                return key
            self.say(f"  unknown key, expected Enter or one of {', '.join(allowed + 'q')}, got {key!r}")

    def _record(self) -> np.ndarray:
        """One take from the source, without the sounds of the Enter presses around it."""
        if self.seconds is not None:
            self.say(f"  recording {self.seconds:g} s ...")
            return trim_key_sounds(self.source.record(None, self.seconds), stopped_by_key=False)

        def stop() -> None:
            try:
                self.ask("  recording ... Enter stops > ")
            except EOFError:
                pass

        return trim_key_sounds(self.source.record(stop, MAX_SECONDS))


@dataclass
class RecordOptions:
    vocabulary: str = option("data/vocabulary.txt", "lexicon the prompts are generated from")
    count: int = option(100, "number of prompts (with --sentences: the first COUNT lines)")
    sentences: str | None = option(None, "read prompts from FILE, one per line, instead of generating them; "
                                         "None: generate", metavar="FILE")
    seed: int = option(0, "seed of the prompt generator (same seed, same prompts)")
    manifest: str = option("data/my_voice_all.jsonl", "manifest to append to")
    speaker: str = option("me", "speaker name stored with each utterance")
    seconds: float | None = option(None, "record this many seconds per take; None: Enter stops each take")
    device: str | None = option(None, "input device index or name; None: the system's")


def record(options: RecordOptions) -> SessionSummary:
    """`just record`: prompt by prompt from the microphone into the manifest."""
    prompts = load_prompts(options.vocabulary, options.count, seed=options.seed, sentences=options.sentences)
    session = RecordingSession(options.manifest, Microphone(options.device), speaker=options.speaker,
                               seconds=options.seconds)
    return session.run(prompts)
