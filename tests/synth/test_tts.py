"""TTS backends: the table, a real espeak clip, and one-line failures where a backend cannot run."""

import os
import platform
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lora_training.errors import ConfigError, LoraTrainingError
from lora_training.synth.tts import BACKENDS, BackendOptions
from lora_training.synth.tts.espeak import VOICES, EspeakBackend
from lora_training.testing.factories import make_manifest

REPO = Path(__file__).resolve().parents[2]


def test_backend_table_names_match_the_backends():
    assert set(BACKENDS) == {"espeak", "flite", "festival", "offline", "f5-tts", "f5-tts-mlx", "pocket-tts"}
    for name, build in BACKENDS.items():
        assert build(BackendOptions()).name == name


def test_espeak_speaks_a_16khz_clip_and_is_seeded():
    backend = EspeakBackend(BackendOptions())
    backend.check()
    clip = backend.synthesize("email dev at example dot com", random.Random(3))
    again = backend.synthesize("email dev at example dot com", random.Random(3))
    assert clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert 1.0 < len(clip.samples) / 16000 < 5.0
    assert 0.05 < np.abs(clip.samples).max() <= 1.0
    assert clip.speaker.startswith("espeak:") and clip.speaker[len("espeak:"):] in VOICES
    assert clip.speaker == again.speaker and np.array_equal(clip.samples, again.samples)


def test_espeak_varies_voices_and_never_uses_an_excluded_one():
    backend = EspeakBackend(BackendOptions(exclude_voices=("en-us+m3", "en-029")))
    voices = {backend.synthesize("ok", random.Random(seed)).speaker for seed in range(40)}
    assert len(voices) > 20
    assert "espeak:en-us+m3" not in voices
    assert not any(v.startswith("espeak:en-029") for v in voices)


@pytest.mark.parametrize(
    "options, message",
    [
        (BackendOptions(exclude_voices=("en-zz",)), r"unknown espeak voice\(s\) en-zz"),
        (BackendOptions(exclude_voices=tuple(v for v in VOICES if "+" not in v)), "every voice excluded"),
        (BackendOptions(reference_manifest="me.jsonl"), "espeak does not clone voices"),
    ],
)
def test_espeak_rejects_bad_options(options, message):
    with pytest.raises(ConfigError, match=message):
        EspeakBackend(options).check()


@pytest.mark.skipif(sys.platform == "darwin" and platform.machine() == "arm64", reason="Apple Silicon can run it")
def test_f5_mlx_says_in_one_line_it_needs_apple_silicon():
    with pytest.raises(LoraTrainingError, match=r"f5-tts-mlx backend: needs Apple Silicon, expected darwin/arm64"):
        BACKENDS["f5-tts-mlx"](BackendOptions(reference_manifest="me.jsonl")).check()


def test_f5_offline_fails_in_one_line_without_a_traceback(tmp_path):
    """No f5-tts package, or no cached weights with the hub unreachable: one `error:` line, exit 1."""
    reference = make_manifest(tmp_path / "me", 2, seconds=3.0)
    vocabulary = tmp_path / "vocabulary.txt"
    vocabulary.write_text("kubectl | cube control\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "main.py", "synth", "--vocabulary", str(vocabulary), "--count", "3",
         "--output", str(tmp_path / "out.jsonl"), "--backend", "f5-tts", "--reference-manifest", str(reference)],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: f5-tts backend: ")
    assert "not installed" in lines[0] or "hub is unreachable" in lines[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_espeak_voices_restricts_to_the_named_voices():
    from lora_training.synth.tts.espeak import EspeakBackend

    backend = EspeakBackend(BackendOptions(voices=("en-us+m3", "en-gb-x-rp")))
    backend.check()
    assert "en-us+m3" in backend.voices and "en-gb-x-rp+f2" in backend.voices
    assert all(v == "en-us+m3" or v.startswith("en-gb-x-rp") for v in backend.voices)
