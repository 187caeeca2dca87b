"""Augmentation: deterministic by seed, each effect does what it says, never clips."""

import numpy as np
import pytest

from lora_training.data.augment import AugmentConfig, add_noise, add_reverb, augment, change_speed, change_tempo

RATE = 16000
ALL = AugmentConfig(speed_probability=1.0, tempo_probability=1.0, reverb_probability=1.0, noise_probability=1.0)


@pytest.fixture(scope="module")
def speech_like():
    """Two seconds of a vowel-like harmonic tone with a syllable-rate envelope."""
    t = np.arange(2 * RATE) / RATE
    tone = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((150, 300, 450, 900), start=1))
    return (0.3 * tone * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) / 2).astype(np.float32)


def test_same_seed_same_clip_other_seed_other_clip(speech_like):
    a = augment(speech_like, np.random.default_rng(7), config=ALL)
    b = augment(speech_like, np.random.default_rng(7), config=ALL)
    c = augment(speech_like, np.random.default_rng(8), config=ALL)
    assert np.array_equal(a, b)
    assert not np.array_equal(a[: len(c)], c[: len(a)])
    assert a.dtype == np.float32 and np.abs(a).max() <= 0.99


def test_augment_changes_the_signal_and_leaves_the_input_alone(speech_like):
    before = speech_like.copy()
    out = augment(speech_like, np.random.default_rng(0), config=ALL)
    assert np.array_equal(speech_like, before)
    assert len(out) != len(speech_like) or not np.allclose(out, speech_like, atol=1e-3)


def test_nothing_applied_at_probability_zero(speech_like):
    none = AugmentConfig(speed_probability=0, tempo_probability=0, reverb_probability=0, noise_probability=0)
    assert np.array_equal(augment(speech_like, np.random.default_rng(0), config=none), speech_like)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_and_tempo_change_length_by_the_factor(speech_like, factor):
    expected = len(speech_like) / factor
    assert abs(len(change_speed(speech_like, factor)) - expected) < 0.01 * expected
    assert abs(len(change_tempo(speech_like, factor)) - expected) < 0.01 * expected


def test_speed_moves_pitch_and_tempo_keeps_it(speech_like):
    def peak_hz(x):
        spectrum = np.abs(np.fft.rfft(x))
        return np.argmax(spectrum) * RATE / len(x)

    base = peak_hz(speech_like)
    assert peak_hz(change_speed(speech_like, 1.1)) == pytest.approx(base * 1.1, rel=0.03)
    assert peak_hz(change_tempo(speech_like, 1.1)) == pytest.approx(base, rel=0.03)


@pytest.mark.parametrize("snr_db", [10.0, 20.0])
def test_noise_is_added_at_the_requested_snr(speech_like, snr_db):
    noisy = add_noise(speech_like, snr_db, np.random.default_rng(1))
    noise = noisy - speech_like
    measured = 10 * np.log10(np.mean(speech_like.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
    assert measured == pytest.approx(snr_db, abs=0.2)


def test_reverb_smears_the_signal_in_time():
    click = np.zeros(RATE, np.float32)
    click[100] = 0.5
    wet = add_reverb(click, room_size=0.5, wet_level=0.3)
    assert len(wet) == len(click)
    assert np.abs(wet[RATE // 10 :]).max() > 1e-3  # a tail 0.1 s after the click
