"""Live dictation with an adapter (torch) or an exported on-device model (a runtime): speak, read.

The microphone (or `--file`, fed through the very same streaming VAD in microphone-sized
chunks) is cut into utterances by capture/vad.py; each finished utterance is transcribed and
printed at once. With `--keep` every utterance is saved before its text is shown, as
`DICTATION_DIR/clips/<id>.wav` plus one line of `heard.jsonl`, so what the model misheard can be
corrected later into training data; Ctrl-C then loses nothing already said.

`heard.jsonl` is a contract with the corrections review, one JSON object per line:
    {"id": "dict-YYYYMMDD-HHMMSS-NNN", "audio": "clips/<id>.wav", "text": heard, "heard": heard,
     "source": "dictation", "model": export folder | adapter dir | base reference,
     "duration": seconds, "created": ISO-8601 UTC}
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import numpy as np

from lora_training.atomic import atomic_write_text
from lora_training.capture.record import KEY_PRESS_SECONDS, KEY_RELEASE_SECONDS, Microphone, RecordingError
from lora_training.capture.vad import CHUNK_SECONDS, Segment, Segmenter, chunked
from lora_training.data.audio import MAX_SECONDS, SAMPLE_RATE, load_audio, write_wav
from lora_training.defaults import BIAS_BOOST, MODEL_REFERENCE_HELP, default_model
from lora_training.errors import ConfigError, LoraTrainingError
from lora_training.export.runtimes import RUNTIMES
from lora_training.options import option

DICTATION_DIR = "data/dictation"
CLIPS_DIR = "clips"
HEARD_MANIFEST = "heard.jsonl"
SOURCE = "dictation"
# The model dictation uses without --adapter-dir or --base-model: the one adapters are trained
# on (defaults.MODEL_POLICY), since dictating is what they are trained for.
DICTATE_POLICY = "train"
# Clipboard commands tried in order when pyperclip is not installed (macOS, Wayland, X11).
CLIPBOARD_TOOLS = (("pbcopy",), ("wl-copy",), ("xclip", "-selection", "clipboard"))
# JSON leaves these raw inside strings, but editors and str.splitlines end a line there (as in manifest.py).
_LINE_BREAKS = str.maketrans({"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


@dataclass
class DictateOptions:
    model: str | None = option(None, "exported on-device model folder, decoded by --runtime (instead of torch)",
                               metavar="DIR")
    # sherpa-onnx by default: wheels for macOS, Linux and Windows, and flat memory (moonshine-cpp's
    # wheel is Linux x86-64 only and keeps memory per call: export/runtimes.py).
    runtime: str = option("sherpa-onnx", "runtime that decodes --model", choices=RUNTIMES)
    adapter_dir: str | None = option(None, "adapter folder, merged into its base model (torch)", metavar="DIR")
    base_model: str | None = option(None, f"base model of the torch path: {MODEL_REFERENCE_HELP} (default: the "
                                          f"adapter's base model, else {default_model(DICTATE_POLICY)})", metavar="REF")
    bias_vocabulary: str | None = option(None, "keyterm biasing (torch path only) and spoken forms written as terms "
                                               "(any path); off without it", metavar="FILE")
    bias_boost: float = option(BIAS_BOOST, "keyterm biasing: logit bonus for starting a term", metavar="B")
    rewrite_spoken: bool = option(True, "with --bias-vocabulary: spoken forms the text spells out ('word error rate') "
                                        "are written as their terms ('WER')", flag="--no-rewrite-spoken")
    file: str | None = option(None, "dictate from this audio file instead of the microphone", metavar="WAV")
    push_to_talk: bool = option(False, "Enter starts and stops each utterance instead of voice detection")
    keep: bool = option(False, "save each utterance to clips/ and heard.jsonl under --dictation-dir (for corrections)")
    dictation_dir: str = option(DICTATION_DIR, "where --keep saves clips and heard.jsonl", metavar="DIR")
    clipboard: bool = option(False, "copy each text to the clipboard (pyperclip, pbcopy, wl-copy or xclip)")
    verbose: bool = option(False, "show times and latency per utterance (audio seconds, decode ms, RTF)")
    threads: int = option(0, "CPU threads (0: all cores, at most 8; a runtime gets 1 for 0)")
    device: str | None = option(None, "input device index or name; None: the system's")

    def __post_init__(self) -> None:
        problems = []
        if self.model and self.adapter_dir:
            problems.append(f"model: expected one of --model or --adapter-dir (or neither: the base model), "
                            f"got both ({self.model}, {self.adapter_dir})")
        if self.model and self.base_model:
            problems.append(f"base_model: --base-model is for the torch path, expected no --model, "
                            f"got --model {self.model}")
        if self.file and self.push_to_talk:
            problems.append("push_to_talk: needs the microphone, expected no --file, got --file")
        if not 0 <= self.bias_boost < float("inf"):
            problems.append(f"bias_boost: expected a finite logit bonus >= 0, got {self.bias_boost!r}")
        if not (isinstance(self.threads, int) and self.threads >= 0):
            problems.append(f"threads: expected an integer >= 0, got {self.threads!r}")
        if problems:
            raise ConfigError("; ".join(problems))


class Transcriber(Protocol):
    def transcribe(self, audio: np.ndarray) -> str:
        """The text of one utterance (16 kHz mono float32)."""


class TorchTranscriber:
    """A (merged) Moonshine decoded with the evaluation's fast greedy path, optionally keyterm-biased."""

    def __init__(self, model, processor, bias=None, rewrite=None):
        self.model, self.processor, self.bias, self.rewrite = model, processor, bias, rewrite

    def transcribe(self, audio: np.ndarray) -> str:
        from lora_training.evaluation.transcribe import transcribe_clips

        result = transcribe_clips(self.model, self.processor, [audio], bias=self.bias, rewrite=self.rewrite)[0]
        if result.error:
            raise LoraTrainingError(f"utterance of {len(audio) / SAMPLE_RATE:.2f} s: transcription failed, "
                                    f"expected text, got {result.error}")
        return result.text


class Rewritten:
    """An on-device runtime's text with the spoken-form rewrite applied: the runtimes take no decoding
    hook (no keyterm biasing), but the rewrite is text and costs nothing."""

    def __init__(self, runtime: Transcriber, rewrite: Callable[[str], str]):
        self.runtime, self.rewrite = runtime, rewrite

    def transcribe(self, audio: np.ndarray) -> str:
        return self.rewrite(self.runtime.transcribe(audio))


def base_reference(options: DictateOptions) -> str:
    """--base-model, else the base model the adapter's sidecar names, else the dictation default."""
    if options.base_model:
        return options.base_model
    if options.adapter_dir:
        from lora_training.models.adapters import read_sidecar

        base = read_sidecar(options.adapter_dir).get("base_model")
        if base:
            return base
    return default_model(DICTATE_POLICY)


def load_transcriber(options: DictateOptions, vocabulary=None) -> Transcriber:
    """The export through its runtime, or the base model with the adapter merged in (no LoRA cost per token)."""
    from lora_training.evaluation.rewrite import vocabulary_rewriter

    rewrite = vocabulary_rewriter(vocabulary, options.rewrite_spoken)
    if options.model:
        from lora_training.export.runtimes import open_export

        runtime = open_export(options.model, runtime=options.runtime, threads=options.threads or 1)
        return Rewritten(runtime, rewrite) if rewrite else runtime
    from lora_training.evaluation.biasing import keyterm_bias
    from lora_training.models.adapters import load_adapter
    from lora_training.models.registry import resolve_model
    from lora_training.models.runtime import pick_device, set_threads

    set_threads(options.threads)
    reference = base_reference(options)
    model, processor = resolve_model(reference, device=pick_device())
    if options.adapter_dir:
        model = load_adapter(model, options.adapter_dir, base_model=reference).merge_and_unload().eval()
    bias = keyterm_bias(processor.tokenizer, vocabulary.written_forms(), options.bias_boost) if vocabulary else None
    return TorchTranscriber(model, processor, bias, rewrite)


def clipboard_copier() -> Callable[[str], None]:
    """pyperclip's copy when it is installed, else the first clipboard command on PATH."""
    if importlib.util.find_spec("pyperclip") is not None:
        import pyperclip

        return pyperclip.copy
    for tool in CLIPBOARD_TOOLS:
        if shutil.which(tool[0]):
            return lambda text, tool=tool: _copy_with(tool, text)
    raise ConfigError(f"clipboard: no way to copy, expected pyperclip (pip install pyperclip) or one of "
                      f"{', '.join(t[0] for t in CLIPBOARD_TOOLS)} on PATH, got none")


def _copy_with(tool: tuple[str, ...], text: str) -> None:
    done = subprocess.run(tool, input=text, text=True, capture_output=True)
    if done.returncode:
        raise LoraTrainingError(f"clipboard: {' '.join(tool)} failed, expected exit status 0, got "
                                f"{done.returncode}: {done.stderr.strip() or 'no message'}")


class ClipStore:
    """Kept utterances: a wav per utterance, then a line appended to heard.jsonl, each written atomically.

    Ids are `dict-<UTC time>-NNN` with the smallest NNN not taken by a line or a clip already
    there, so a second session (or a clip whose line was removed) is never overwritten. The
    manifest is read again before each append, so edits made meanwhile (corrections) are kept.
    """

    def __init__(self, folder: str | os.PathLike, model: str):
        self.folder = Path(folder)
        self.manifest = self.folder / HEARD_MANIFEST
        self.clips = self.folder / CLIPS_DIR
        self.model = model
        self.taken = {p.stem for p in self.clips.glob("*.wav")} if self.clips.is_dir() else set()
        for number, line in enumerate(self._read().split("\n"), start=1):
            if line.strip():
                try:
                    self.taken.add(json.loads(line)["id"])
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise ConfigError(f"{self.manifest}:{number}: unreadable line, expected a JSON object with "
                                      f"an id, got {type(e).__name__}: {e}") from e

    def _read(self) -> str:
        return self.manifest.read_text(encoding="utf-8") if self.manifest.is_file() else ""

    def keep(self, audio: np.ndarray, text: str) -> tuple[str, Path]:
        now = datetime.now(timezone.utc)
        stamp = now.strftime("%Y%m%d-%H%M%S")
        number = 1
        while f"dict-{stamp}-{number:03d}" in self.taken:
            number += 1
        utt_id = f"dict-{stamp}-{number:03d}"
        self.taken.add(utt_id)
        path = write_wav(self.clips / f"{utt_id}.wav", audio)
        row = {"id": utt_id, "audio": f"{CLIPS_DIR}/{utt_id}.wav", "text": text, "heard": text, "source": SOURCE,
               "model": self.model, "duration": round(len(audio) / SAMPLE_RATE, 3),
               "created": now.isoformat(timespec="seconds")}
        old = self._read()
        if old and not old.endswith("\n"):
            old += "\n"
        atomic_write_text(self.manifest, old + json.dumps(row, ensure_ascii=False).translate(_LINE_BREAKS) + "\n")
        return utt_id, path


class LiveMicrophone(Microphone):
    """The microphone as a stream of CHUNK_SECONDS blocks for voice detection; `record` (one take
    between two Enters) still serves push-to-talk."""

    def chunks(self) -> Iterator[np.ndarray]:
        import soxr

        sd = self._sd
        blocks: queue.Queue[np.ndarray] = queue.Queue()
        resampler = None if self.rate == SAMPLE_RATE else soxr.ResampleStream(self.rate, SAMPLE_RATE, 1)
        try:
            stream = sd.InputStream(samplerate=self.rate, channels=1, dtype="float32", device=self._device,
                                    blocksize=round(CHUNK_SECONDS * self.rate),
                                    callback=lambda indata, frames, t, status: blocks.put(indata[:, 0].copy()))
        except sd.PortAudioError as e:
            raise RecordingError(f"microphone {self.name}: cannot open, expected a free input device, got {e}") from e
        with stream:
            while True:
                try:  # short waits keep Ctrl-C responsive; the queue holds audio while a decode runs
                    block = blocks.get(timeout=0.2)
                except queue.Empty:
                    continue
                yield block if resampler is None else resampler.resample_chunk(block)


@dataclass
class FileSource:
    """An audio file as if it were the microphone: the same blocks, through the same voice detection."""

    audio: np.ndarray

    def chunks(self) -> Iterator[np.ndarray]:
        return chunked(self.audio)


class _Session:
    """One dictation: each finished utterance is transcribed, kept, shown and copied, in that order."""

    def __init__(self, transcriber: Transcriber, options: DictateOptions, out: Callable[[str], object],
                 store: ClipStore | None, copy: Callable[[str], object] | None):
        self.transcriber, self.options, self.out, self.store, self.copy = transcriber, options, out, store, copy
        self.results: list[dict] = []

    def heard(self, segment: Segment) -> None:
        start = time.perf_counter()
        text = self.transcriber.transcribe(segment.audio)
        seconds = time.perf_counter() - start
        audio_seconds = len(segment.audio) / SAMPLE_RATE
        row = {"text": text, "start": round(segment.start_seconds, 3), "end": round(segment.end_seconds, 3),
               "audio_seconds": round(audio_seconds, 3), "decode_seconds": round(seconds, 4), "id": None, "clip": None}
        if self.store is not None:
            utt_id, path = self.store.keep(segment.audio, text)
            row.update(id=utt_id, clip=str(path))
        self.results.append(row)
        if self.options.verbose:
            self.out(f"[{row['start']:7.2f}-{row['end']:7.2f} s] {text or '(nothing heard)'}  ({audio_seconds:.2f} s "
                     f"audio, {1000 * seconds:.0f} ms decode, RTF {seconds / audio_seconds:.3f})")
        elif text:
            self.out(text)
        if self.copy is not None and text:
            self.copy(text)

    def listen(self, source, segmenter: Segmenter) -> None:
        for chunk in source.chunks():
            for segment in segmenter.feed(chunk):
                self.heard(segment)

    def push_to_talk(self, source, ask: Callable[[str], str]) -> None:
        """Enter starts a take, Enter ends it (its key sounds trimmed, as in `record`); q or end of input quits."""
        offset = 0

        def stop() -> None:
            try:
                ask("  listening ... Enter stops > ")
            except EOFError:
                pass  # end of input ends the take like Enter; the loop below then quits

        while True:
            try:
                if ask("Enter: talk | q: quit > ").strip().lower() == "q":
                    return
            except EOFError:
                return
            audio = source.record(stop, MAX_SECONDS)
            audio = audio[round(KEY_RELEASE_SECONDS * SAMPLE_RATE):len(audio) - round(KEY_PRESS_SECONDS * SAMPLE_RATE)]
            if len(audio):
                self.heard(Segment(offset, offset + len(audio), audio))
                offset += len(audio)


def dictate(options: DictateOptions, *, source=None, out: Callable[[str], object] = print,
            ask: Callable[[str], str] = input, copy: Callable[[str], object] | None = None) -> list[dict]:
    """`just dictate`: one dict per utterance (text, start/end s, audio_seconds, decode_seconds, id, clip).

    `source` replaces the microphone (`chunks()` for voice detection, `record(stop, max_seconds)`
    for push-to-talk), `ask` the keyboard, `copy` the clipboard (used with --clipboard). Inputs,
    clipboard, VAD and microphone are checked before the model is loaded.
    """
    audio = load_audio(options.file, max_seconds=None) if options.file else None
    vocabulary = None
    if options.bias_vocabulary:
        from lora_training.data.vocabulary import load_vocabulary

        vocabulary = load_vocabulary(options.bias_vocabulary)
        if options.model:
            print(f"{options.bias_vocabulary}: keyterm biasing needs the torch path (--adapter-dir); with --model "
                  f"only spoken forms are written as terms", file=sys.stderr)
    if options.model and not Path(options.model).is_dir():
        raise ConfigError(f"model: {options.model} not found, expected an exported model folder")
    label = options.model or options.adapter_dir or base_reference(options)
    store = ClipStore(options.dictation_dir, label) if options.keep else None
    copy = (copy or clipboard_copier()) if options.clipboard else None
    segmenter = None if options.push_to_talk else Segmenter()
    if audio is not None:
        source = FileSource(audio)
    elif source is None:
        source = LiveMicrophone(options.device)
    session = _Session(load_transcriber(options, vocabulary), options, out, store, copy)

    live = audio is None
    if live:
        how = "Enter starts and stops each utterance" if options.push_to_talk else "speak; Ctrl-C stops"
        out(f"dictating with {label} ({how})" + (f"; keeping clips in {options.dictation_dir}" if store else ""))
    try:
        if segmenter is None:
            session.push_to_talk(source, ask)
        else:
            session.listen(source, segmenter)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how live dictation ends; kept clips are on disk already
    if segmenter is not None:  # the end of a file, or what was being said when Ctrl-C came
        for segment in segmenter.flush():
            session.heard(segment)
    if live:
        out(f"stopped: {len(session.results)} utterance(s)" + (f", kept in {store.manifest}" if store else ""))
    return session.results
