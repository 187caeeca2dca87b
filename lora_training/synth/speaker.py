"""Speaker similarity: does a cloned clip sound like the user, or like a robot that read the words?

A voice-cloning backend can drift to another voice (a bad seed, a reference it copied poorly);
the transcript-based gate cannot hear that, since the words are right. This module embeds each
clip with Resemblyzer's GE2E voice encoder (a 3-layer LSTM over 40 mel bands, 256-d unit vectors,
trained on ~1.8k speakers) and compares it with the mean embedding of the user's references.

The weights (17 MB) ship inside the `resemblyzer` wheel, so this works offline. Only its weights
are used: the package's own front end imports librosa (and numba) and webrtcvad for a mel
spectrogram and a silence trim that take a few lines of torch and numpy here.
`tests/synth/test_speaker.py` compares these embeddings with the package's own.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np

from lora_training.data.audio import SAMPLE_RATE
from lora_training.errors import LoraTrainingError

# Calibrated by benchmarks/speaker_threshold.py (profiles of 4 clips, as the gate's of 4 references):
# a real clip against its own speaker's profile (of 4 other clips) scored min 0.846, median 0.950
# (n=110: asterisk-allison 105, min 0.898; librivox-austen 5, min 0.846); against the other real
# speaker's profile min 0.539, median 0.607, max 0.660 (n=110); offline TTS clips against either
# real profile: espeak-ng median 0.564, p99 0.702, max 0.711 (n=240), flite max 0.749 (n=100),
# festival max 0.761 (n=60). 0.80 sits mid-gap: every same-speaker clip passes, every other
# speaker and TTS clip is refused, with ~0.04 of margin each side. Not yet measured on F5 clones
# (no weights offline), which score below the real speaker: recheck there before raising it.
DEFAULT_MIN_SIMILARITY = 0.80

# Resemblyzer's hyper-parameters (resemblyzer/hparams.py): 25 ms windows every 10 ms, 40 mel
# bands, embeddings of 1.6 s partials taken 1.3 times a second, a last partial kept when it is
# 75% full, and speech levelled up to -30 dBFS before anything else.
_WINDOW, _HOP, _MELS = 400, 160, 40
_PARTIAL_FRAMES, _PARTIALS_PER_SECOND, _MIN_COVERAGE = 160, 1.3, 0.75
_TARGET_DBFS = -30.0
# Silence trim on 30 ms windows: a window is speech within 30 dB of the loudest one; an 8-window
# moving average and 7 windows of dilation keep short pauses and word edges, as Resemblyzer's
# webrtcvad trim does, while pauses over ~200 ms go (they would dilute the voice in the mean).
_VAD_WINDOW, _VAD_RELATIVE, _VAD_SMOOTH, _VAD_DILATE = 480, 10 ** (-30 / 20), 8, 7


def resemblyzer_weights() -> Path:
    """The `pretrained.pt` inside the installed `resemblyzer` package, found without importing it."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or spec.origin is None:
        raise LoraTrainingError(
            "speaker check: Python package 'resemblyzer' not installed, expected "
            "`pip install resemblyzer` (its wheel ships the voice encoder weights), got none"
        )
    weights = Path(spec.origin).parent / "pretrained.pt"
    if not weights.is_file():
        raise LoraTrainingError(f"speaker check: voice encoder weights missing, expected {weights}, got no file")
    return weights


def _mel_filters() -> np.ndarray:
    """Slaney-style mel filter bank (librosa's default, which Resemblyzer was trained with), (mels, bins)."""
    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        return np.where(f < 1000, f * 3 / 200, 15 + np.log(np.maximum(f, 1e-10) / 1000) / (np.log(6.4) / 27))

    def mel_to_hz(m):
        return np.where(m < 15, m * 200 / 3, 1000 * np.exp((np.log(6.4) / 27) * (m - 15)))

    bins = np.linspace(0, SAMPLE_RATE / 2, 1 + _WINDOW // 2)
    edges = mel_to_hz(np.linspace(hz_to_mel(0), hz_to_mel(SAMPLE_RATE / 2), _MELS + 2))
    ramps = edges[:, None] - bins[None, :]
    widths = np.diff(edges)
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    return (weights * (2 / (edges[2:] - edges[:-2]))[:, None]).astype(np.float32)


def preprocess(audio: np.ndarray) -> np.ndarray:
    """Level quiet speech up to -30 dBFS and cut long pauses, as the encoder saw in training."""
    x = np.asarray(audio, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
    if 0 < rms < 10 ** (_TARGET_DBFS / 20):
        x = x * np.float32(10 ** (_TARGET_DBFS / 20) / rms)
    n = len(x) // _VAD_WINDOW
    if n == 0:
        return x
    windows = np.sqrt(np.mean(np.square(x[: n * _VAD_WINDOW].reshape(n, _VAD_WINDOW), dtype=np.float64), axis=1))
    voiced = (windows >= _VAD_RELATIVE * windows.max()).astype(np.float64)
    smooth = np.convolve(voiced, np.ones(_VAD_SMOOTH) / _VAD_SMOOTH, mode="same") >= 0.5
    keep = np.convolve(smooth, np.ones(_VAD_DILATE), mode="same") > 0
    return x[: n * _VAD_WINDOW][np.repeat(keep, _VAD_WINDOW)] if keep.any() else x


def partial_starts(frames: int) -> list[int]:
    """First frame of each 1.6 s partial; the last one is dropped when under 75% covered (unless alone)."""
    step = round(SAMPLE_RATE / _PARTIALS_PER_SECOND / _HOP)
    starts = list(range(0, max(1, frames - _PARTIAL_FRAMES + step + 1), step))
    if len(starts) > 1 and (frames - starts[-1]) / _PARTIAL_FRAMES < _MIN_COVERAGE:
        starts.pop()
    return starts


class SpeakerModel:
    """Resemblyzer's voice encoder on CPU; `embed` takes 16 kHz float32 speech (~20 ms a second of it)."""

    def __init__(self, weights: str | Path | None = None):
        import torch

        state = torch.load(weights or resemblyzer_weights(), map_location="cpu", weights_only=True)["model_state"]
        self.lstm = torch.nn.LSTM(_MELS, 256, 3, batch_first=True)
        self.linear = torch.nn.Linear(256, 256)
        self.lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
        self.linear.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("linear.")})
        self.lstm.eval()
        self.filters = torch.from_numpy(_mel_filters())
        self.window = torch.hann_window(_WINDOW)

    def embed_preprocessed(self, wav: np.ndarray) -> np.ndarray:
        """The utterance embedding of speech already levelled and trimmed: the unit mean of its partials'."""
        import torch

        frames = len(wav) // _HOP + 1
        starts = partial_starts(frames)
        need = (starts[-1] + _PARTIAL_FRAMES) * _HOP
        wav = np.pad(wav, (0, max(0, need - len(wav))))
        with torch.no_grad():
            spec = torch.stft(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)), _WINDOW, _HOP,
                              window=self.window, center=True, pad_mode="constant", return_complex=True)
            mel = (self.filters @ spec.abs().square()).T  # (frames, mels): power, not log, as trained
            mels = torch.stack([mel[s : s + _PARTIAL_FRAMES] for s in starts])
            _, (hidden, _) = self.lstm(mels)
            partials = torch.relu(self.linear(hidden[-1]))
            partials = partials / partials.norm(dim=1, keepdim=True)
        mean = partials.mean(dim=0).numpy()
        return mean / np.linalg.norm(mean)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """Unit 256-d embedding of one 16 kHz clip."""
        return self.embed_preprocessed(preprocess(audio))

    def voice_profile(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        """The user's voice: the unit mean of their references' embeddings (several smooth out one clip's mood)."""
        if not audios:
            raise ValueError("voice_profile: reference audios, expected at least one, got none")
        mean = np.mean([self.embed(a) for a in audios], axis=0)
        return mean / np.linalg.norm(mean)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings (1.0: same direction)."""
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
