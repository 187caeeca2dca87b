"""Voice-activity segmentation: audio in, finished utterances out, live or from a file.

The speech probability of each 32 ms frame comes from Silero VAD (MIT, github.com/snakers4/silero-vad),
a small network trained on thousands of hours in 100+ languages, run through onnxruntime with
the model file that the `silero-vad` wheel ships. The package itself is never imported: it
imports torch and sets torch's global thread count to 1 on import, which would slow every
decoder in the process; only its data file is read.

Frame probabilities become utterances with Silero's own hysteresis (speech starts at
`threshold`, ends only below `threshold - 0.15`), then our dictation timing: an utterance ends
after `min_silence_seconds` of silence, bursts shorter than `min_speech_seconds` (a cough, a
key click) are dropped, and each kept utterance is padded so no word loses its first or last
phoneme. `Segmenter.feed` takes any chunk size and returns the utterances it finished, so the
microphone and a file (`segment_audio`, fed in microphone-sized chunks) take the same path.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from lora_training.data.audio import MAX_SECONDS, SAMPLE_RATE
from lora_training.errors import ConfigError, ModelError

# Silero's frame at 16 kHz, and the samples of the previous frame it sees as context.
FRAME_SAMPLES = 512
CONTEXT_SAMPLES = 64
SILERO_PACKAGE = "silero-vad"
SILERO_MODEL = "silero_vad.onnx"
# A microphone block: 0.1 s keeps the end of an utterance within 0.1 s of the VAD deciding it.
CHUNK_SECONDS = 0.1


class FrameScorer(Protocol):
    def __call__(self, frame: np.ndarray) -> float:
        """Speech probability of one FRAME_SAMPLES-long 16 kHz frame, given the frames before it."""

    def reset(self) -> None:
        """Forget the frames before (a new stream starts)."""


def silero_model_path() -> Path:
    """silero_vad.onnx inside the installed wheel, found without importing the package (see above)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"VAD: {SILERO_PACKAGE} is not installed, expected `pip install -e '.[record]'`, "
                         "got no silero_vad package")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / SILERO_MODEL
    if not path.is_file():
        raise ModelError(f"VAD: {path} missing, expected the model file of the {SILERO_PACKAGE} wheel "
                         f"(reinstall it: pip install --force-reinstall {SILERO_PACKAGE})")
    return path


class SileroVad:
    """Silero VAD v5+ through onnxruntime: a recurrent state and 64 samples of context carry across frames."""

    def __init__(self, path: str | Path | None = None):
        try:
            import onnxruntime
        except ImportError as e:
            raise ModelError(f"VAD: onnxruntime is not installed, expected `pip install -e '.[record]'`, "
                             f"got {type(e).__name__}: {e}") from e
        options = onnxruntime.SessionOptions()
        # One thread: a 32 ms frame takes ~0.1 ms, and more threads only cost the decoder cores.
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(str(path or silero_model_path()), sess_options=options,
                                                     providers=["CPUExecutionProvider"])
        self._rate = np.array(SAMPLE_RATE, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, np.float32)

    def __call__(self, frame: np.ndarray) -> float:
        x = np.concatenate([self._context, frame.astype(np.float32, copy=False)])[None]
        prob, self._state = self._session.run(None, {"input": x, "state": self._state, "sr": self._rate})
        self._context = x[0, -CONTEXT_SAMPLES:]
        return float(prob[0, 0])


@dataclass(frozen=True)
class VadSettings:
    threshold: float = 0.5
    # Silero's defaults (0.1 s silence, 30 ms padding) cut timestamps tightly; dictation waits
    # longer so a breath inside a sentence does not end it, and pads more so a soft onset
    # ("f", "h") is not clipped before the recogniser hears it.
    min_silence_seconds: float = 0.6
    min_speech_seconds: float = 0.25
    pad_seconds: float = 0.2
    # Longer speech is cut (at its last pause, if any) so an utterance always fits one decode.
    max_seconds: float = MAX_SECONDS

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.threshold < 1:
            problems.append(f"threshold: expected a probability in (0, 1), got {self.threshold!r}")
        for name in ("min_silence_seconds", "min_speech_seconds", "pad_seconds"):
            if not 0 <= getattr(self, name) < float("inf"):
                problems.append(f"{name}: expected seconds >= 0, got {getattr(self, name)!r}")
        if not 2 * FRAME_SAMPLES / SAMPLE_RATE <= self.max_seconds < float("inf"):
            problems.append(f"max_seconds: expected at least {2 * FRAME_SAMPLES / SAMPLE_RATE:g} s, "
                            f"got {self.max_seconds!r}")
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def end_threshold(self) -> float:
        """Below this a frame is silence; between it and `threshold` speech goes on (Silero's hysteresis)."""
        return max(self.threshold - 0.15, 0.01)


@dataclass
class Segment:
    """One utterance: samples [start, end) of the stream (padding included) and their audio."""

    start: int
    end: int
    audio: np.ndarray

    @property
    def start_seconds(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def end_seconds(self) -> float:
        return self.end / SAMPLE_RATE


class Segmenter:
    """Streaming utterance detection: `feed` chunks (16 kHz mono float32), get finished Segments;
    `flush` at the end of the stream returns the utterance still open. Only the audio an
    utterance may still need is kept, so a session of any length holds at most one utterance."""

    def __init__(self, settings: VadSettings = VadSettings(), scorer: FrameScorer | None = None):
        self.settings = settings
        self.scorer = scorer if scorer is not None else SileroVad()
        s = SAMPLE_RATE
        self._min_silence = round(settings.min_silence_seconds * s)
        self._min_speech = round(settings.min_speech_seconds * s)
        self._pad = round(settings.pad_seconds * s)
        self._max = round(settings.max_seconds * s)
        self.reset()

    def reset(self) -> None:
        self.scorer.reset()
        self._buffer = np.zeros(0, np.float32)
        self._buffer_start = 0  # stream sample of _buffer[0]
        self._received = 0      # samples fed so far
        self._scored = 0        # samples already scored, a multiple of FRAME_SAMPLES
        self._start: int | None = None   # speech start of the open utterance
        self._lead = self._pad           # padding before it: none after a cut at max_seconds
        self._silence: int | None = None  # where the current run of silence frames began
        self._pause: int | None = None    # latest frame below `threshold` inside the utterance

    def feed(self, chunk: np.ndarray) -> list[Segment]:
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        self._buffer = np.concatenate([self._buffer, chunk])
        self._received += len(chunk)
        done = []
        while self._received - self._scored >= FRAME_SAMPLES:
            done += self._score(self._frame(self._scored))
        self._trim()
        return done

    def flush(self) -> list[Segment]:
        """The open utterance (its last partial frame scored zero-padded, as Silero does), then a fresh stream."""
        done = []
        if self._received > self._scored:
            tail = self._frame(self._scored)
            done += self._score(np.pad(tail, (0, FRAME_SAMPLES - len(tail))))
        if self._start is not None:
            end = self._silence if self._silence is not None else self._received
            done += self._close(end)
        self.reset()
        return done

    def _frame(self, at: int) -> np.ndarray:
        return self._buffer[at - self._buffer_start:at - self._buffer_start + FRAME_SAMPLES]

    def _score(self, frame: np.ndarray) -> list[Segment]:
        s = self.settings
        at, prob = self._scored, self.scorer(frame)
        self._scored += FRAME_SAMPLES
        if self._start is None:
            if prob >= s.threshold:
                self._start = at
            return []
        if prob >= s.threshold:
            self._silence = None
        else:
            self._pause = at
            if prob < s.end_threshold:
                self._silence = at if self._silence is None else self._silence
                if self._scored - self._silence >= self._min_silence:
                    return self._close(self._silence)
        if self._scored - self._start >= self._max:
            if self._silence is not None:  # already in silence: end where it began, as a long one would
                return self._close(self._silence)
            # Cut at the last pause in the second half, else here; the speech goes on in a new utterance.
            cut = self._pause if self._pause is not None and self._pause > self._start + self._max // 2 \
                else self._scored
            done = self._close(cut, pad_end=False)
            self._start, self._lead = cut, 0
            return done
        return []

    def _close(self, end: int, *, pad_end: bool = True) -> list[Segment]:
        """The utterance [start, end) with padding, unless it is too short to be speech."""
        start, lead = self._start, self._lead
        self._start, self._lead, self._silence, self._pause = None, self._pad, None, None
        if end - start < self._min_speech:
            return []
        lo = max(start - lead, 0)
        hi = min(end + self._pad, self._received) if pad_end else end
        audio = self._buffer[lo - self._buffer_start:hi - self._buffer_start].copy()
        return [Segment(lo, hi, audio)]

    def _trim(self) -> None:
        """Drop audio no utterance can need: before the open one's padding, or before the pad before now."""
        keep_from = (self._start if self._start is not None else self._scored) - self._pad
        drop = min(max(keep_from - self._buffer_start, 0), len(self._buffer))
        if drop:
            self._buffer = self._buffer[drop:]
            self._buffer_start += drop


def chunked(audio: np.ndarray, chunk_seconds: float = CHUNK_SECONDS) -> Iterator[np.ndarray]:
    """`audio` in microphone-sized blocks, so a file takes the live path."""
    step = max(1, round(chunk_seconds * SAMPLE_RATE))
    for i in range(0, len(audio), step):
        yield audio[i:i + step]


def segment_audio(audio: np.ndarray, settings: VadSettings = VadSettings(), *, scorer: FrameScorer | None = None,
                  chunk_seconds: float = CHUNK_SECONDS) -> list[Segment]:
    """Every utterance in `audio` (16 kHz mono), found exactly as live audio would be: fed in chunks."""
    segmenter = Segmenter(settings, scorer)
    done = []
    for chunk in chunked(audio, chunk_seconds):
        done += segmenter.feed(chunk)
    return done + segmenter.flush()
