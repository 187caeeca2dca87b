"""Audio in and out: every clip the toolkit trains or evaluates on becomes float32 mono at 16 kHz here.

Moonshine's feature extractor expects 16 kHz mono; resampling once at load time (soxr HQ)
means nothing downstream has to know what rate or channel layout the user recorded in.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
from collections import OrderedDict
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from lora_training.atomic import atomic_write_bytes
from lora_training.errors import AudioError

SAMPLE_RATE = 16000
# Below ~0.3 s there is hardly a word to learn from; above 30 s Moonshine's decoder runs
# past its trained context, so longer clips must be chunked (max_seconds=None) instead.
MIN_SECONDS = 0.3
MAX_SECONDS = 30.0
# Energy is measured on 25 ms frames every 10 ms, the usual speech-analysis grid.
FRAME = SAMPLE_RATE * 25 // 1000
HOP = SAMPLE_RATE // 100


def audio_path_problem(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be opened as a clip (`what, expected X`; the caller adds `got`), or None.

    A folder, a symlink loop and a dangling link each get their own words: "not found" for a
    file that is plainly there sends the user looking in the wrong place.
    """
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "audio path is a symlink loop, expected a link that ends at a file"
        if os.path.islink(path):
            return f"audio path is a broken symlink to {os.readlink(path)}, expected a link to an existing file"
        return "audio file not found, expected an existing file"
    if stat.S_ISDIR(st.st_mode):
        return "audio path is a folder, expected an audio file"
    if not stat.S_ISREG(st.st_mode):
        return "audio path is not a regular file, expected an audio file"
    return None


def _require_file(path: Path) -> None:
    if (problem := audio_path_problem(path)) is not None:
        raise AudioError(f"{path}: {problem}")
    if path.stat().st_size == 0:  # libsndfile would say "Format not recognised"
        raise AudioError(f"{path}: empty audio file, expected wav/flac/ogg/mp3 data, got 0 bytes")


def _read(path: Path) -> tuple[np.ndarray, int]:
    """(frames x channels float32, rate) as stored; an AudioError naming the file when it cannot be read."""
    _require_file(path)
    try:
        return sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as e:
        raise AudioError(f"{path}: unreadable audio, expected wav/flac/ogg/mp3, got error: {e}") from e


def load_audio(
    path: str | os.PathLike,
    *,
    min_seconds: float = MIN_SECONDS,
    max_seconds: float | None = MAX_SECONDS,
) -> np.ndarray:
    """Decode wav/flac/ogg/mp3 to float32 mono at SAMPLE_RATE; `max_seconds=None` allows any length."""
    path = Path(path)
    data, rate = _read(path)
    if data.shape[0] == 0:
        raise AudioError(f"{path}: empty audio, expected at least {min_seconds:g} s, got 0 samples")
    seconds = data.shape[0] / rate
    if seconds < min_seconds:
        raise AudioError(f"{path}: clip too short, expected at least {min_seconds:g} s, got {seconds:.2f} s")
    if max_seconds is not None and seconds > max_seconds:
        raise AudioError(
            f"{path}: clip too long, expected at most {max_seconds:g} s, got {seconds:.2f} s "
            "(split it into shorter utterances)"
        )
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def audio_duration(path: str | os.PathLike) -> float:
    """Length in seconds from the file header, without decoding the samples."""
    rate, _, frames = audio_header(path)
    return float(frames) / float(rate)


def audio_header(path: str | os.PathLike) -> tuple[int, int, int]:
    """(sample rate, channels, frames) from the file header, without decoding the samples."""
    path = Path(path)
    _require_file(path)
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError) as e:
        raise AudioError(f"{path}: unreadable audio, expected wav/flac/ogg/mp3, got error: {e}") from e
    return info.samplerate, info.channels, info.frames


def samples_hash(path: str | os.PathLike) -> str:
    """sha256 of the decoded samples (float32, the file's own rate and channels) and their layout.

    The samples, not the file bytes: a copy under another name, in another container (wav ->
    flac) or sample format (16 -> 24-bit PCM) has other bytes and the same samples, and the
    samples are what a model trains on. Not resampled, so the hash does not depend on soxr.
    """
    data, rate = _read(Path(path))
    digest = hashlib.sha256(f"{rate}/{data.shape[1]}/".encode())
    digest.update(np.ascontiguousarray(data).tobytes())
    return digest.hexdigest()


class AudioCache:
    """Decodes each clip once per training run, so epochs after the first skip decoding and resampling.

    An entry is only served while the file's (mtime_ns, size) are unchanged, so an edited or
    re-recorded clip is decoded afresh. Arrays are returned read-only because they are shared:
    a caller that modified one in place would silently corrupt every later epoch.
    """

    def __init__(
        self,
        *,
        max_items: int | None = None,
        min_seconds: float = MIN_SECONDS,
        max_seconds: float | None = MAX_SECONDS,
    ):
        if max_items is not None and max_items < 1:
            raise ValueError(f"AudioCache.max_items: expected None or a positive integer, got {max_items}")
        self.max_items = max_items
        self.min_seconds = min_seconds
        self.max_seconds = max_seconds
        self._entries: OrderedDict[str, tuple[tuple[int, int], np.ndarray]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, path: str | os.PathLike) -> np.ndarray:
        resolved = Path(path).resolve()
        _require_file(resolved)
        st = resolved.stat()
        identity = (st.st_mtime_ns, st.st_size)
        key = str(resolved)
        entry = self._entries.get(key)
        if entry is not None and entry[0] == identity:
            self._entries.move_to_end(key)
            return entry[1]
        samples = load_audio(resolved, min_seconds=self.min_seconds, max_seconds=self.max_seconds)
        samples.flags.writeable = False
        self._entries[key] = (identity, samples)
        self._entries.move_to_end(key)
        if self.max_items is not None:
            while len(self._entries) > self.max_items:
                self._entries.popitem(last=False)
        return samples


def frame_energy(samples: np.ndarray, *, smooth_frames: int = 1) -> np.ndarray:
    """Mean square of each FRAME-sample frame every HOP samples (one frame for clips shorter than a frame).

    `smooth_frames` > 1 averages each value with its neighbours (a centred moving average), so
    one quiet sample inside a word is not a pause. Float64 prefix sums: one pass, no frame copies.
    """
    x = np.asarray(samples, dtype=np.float64)
    n = max(1, 1 + (len(x) - FRAME) // HOP)
    squares = np.concatenate([[0.0], np.cumsum(x**2)])
    starts = np.arange(n) * HOP
    ends = np.minimum(starts + FRAME, len(x))
    energy = (squares[ends] - squares[starts]) / np.maximum(ends - starts, 1)
    if smooth_frames > 1:
        energy = np.convolve(energy, np.ones(smooth_frames) / smooth_frames, mode="same")
    return energy


def normalize_audio(audio: np.ndarray) -> np.ndarray:
    """Zero mean and unit variance, as Wav2Vec2-style feature extractors do under `do_normalize`
    (off for Moonshine); the 1e-7 is theirs too, so results match the extractor's."""
    return (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write 16-bit PCM wav atomically (a crash never leaves a truncated clip in a dataset).

    Samples are float in [-1, 1], shape (n,) or (n, channels); libsndfile clips overshoots.
    """
    buf = io.BytesIO()
    sf.write(buf, np.asarray(samples, dtype=np.float32), sample_rate, format="WAV", subtype="PCM_16")
    return atomic_write_bytes(path, buf.getvalue())
