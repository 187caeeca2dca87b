"""Audio loading: resampling and mono mixdown, formats, errors naming the path, the content-keyed cache."""

import os

import numpy as np
import pytest

from lora_training.data.audio import SAMPLE_RATE, AudioCache, audio_duration, load_audio, write_wav
from lora_training.errors import AudioError
from lora_training.testing.factories import write_tone


def test_stereo_44k_becomes_16k_mono_with_the_right_length(tmp_path):
    path = write_tone(tmp_path / "stereo.wav", seconds=1.5, sample_rate=44100, channels=2)
    samples = load_audio(path)
    assert samples.dtype == np.float32
    assert samples.ndim == 1
    assert samples.shape[0] == round(1.5 * SAMPLE_RATE)
    # 0.3-amplitude tone survives mixdown and resampling at the same level.
    assert 0.25 < np.abs(samples).max() < 0.35


def test_channels_are_averaged(tmp_path):
    import soundfile as sf

    left = np.full(16000, 0.5, dtype=np.float32)
    sf.write(tmp_path / "lr.wav", np.stack([left, -left * 0.2], axis=1), 16000, subtype="FLOAT")
    assert np.allclose(load_audio(tmp_path / "lr.wav"), 0.2)


@pytest.mark.parametrize("suffix", ["flac", "ogg"])
def test_compressed_formats_are_read(tmp_path, suffix):
    path = write_tone(tmp_path / f"tone.{suffix}", seconds=1.0, sample_rate=22050)
    samples = load_audio(path)
    assert abs(samples.shape[0] - SAMPLE_RATE) <= 2
    assert audio_duration(path) == pytest.approx(1.0, abs=0.01)


def test_corrupt_file_error_names_the_path_and_chains_the_cause(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(b"RIFF\x00\x00garbage that is not audio")
    with pytest.raises(AudioError, match="corrupt.wav: unreadable audio") as info:
        load_audio(path)
    assert info.value.__cause__ is not None
    with pytest.raises(AudioError, match="corrupt.wav"):
        audio_duration(path)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(AudioError, match="nowhere.wav: audio file not found"):
        load_audio(tmp_path / "nowhere.wav")


def test_empty_file_is_rejected(tmp_path):
    path = tmp_path / "empty.wav"
    write_wav(path, np.zeros(0, dtype=np.float32))
    with pytest.raises(AudioError, match="empty.wav: empty audio"):
        load_audio(path)


def test_too_short_and_too_long_say_duration_and_limit(tmp_path):
    short = write_tone(tmp_path / "short.wav", seconds=0.1)
    with pytest.raises(AudioError, match=r"short.wav: clip too short, expected at least 0.3 s, got 0.10 s"):
        load_audio(short)
    long = write_tone(tmp_path / "long.wav", seconds=3.0)
    with pytest.raises(AudioError, match=r"long.wav: clip too long, expected at most 2 s, got 3.00 s"):
        load_audio(long, max_seconds=2.0)
    assert load_audio(long, max_seconds=None).shape[0] == 3 * SAMPLE_RATE


def test_write_wav_round_trips_as_16_bit_pcm(tmp_path):
    import soundfile as sf

    samples = (0.5 * np.sin(np.linspace(0, 100, 8000))).astype(np.float32)
    path = write_wav(tmp_path / "sub" / "out.wav", samples)
    assert sf.info(str(path)).subtype == "PCM_16"
    assert np.allclose(load_audio(path), samples, atol=1e-4)
    assert [p.name for p in path.parent.iterdir()] == ["out.wav"]  # no temp file left behind


def test_cache_decodes_once_and_redecodes_after_the_file_changes(tmp_path):
    path = write_tone(tmp_path / "clip.wav", seconds=1.0, freq=300.0)
    cache = AudioCache()
    first = cache.get(path)
    assert cache.get(path) is first
    assert cache.get(tmp_path / "." / "clip.wav") is first  # same file, other spelling
    assert not first.flags.writeable

    write_tone(path, seconds=2.0, freq=300.0)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    second = cache.get(path)
    assert second is not first
    assert second.shape[0] == 2 * SAMPLE_RATE
    assert len(cache) == 1


def test_cache_evicts_least_recently_used(tmp_path):
    paths = [write_tone(tmp_path / f"c{i}.wav", freq=200.0 + 50 * i) for i in range(3)]
    cache = AudioCache(max_items=2)
    a = cache.get(paths[0])
    cache.get(paths[1])
    assert cache.get(paths[0]) is a  # refresh paths[0]; paths[1] is now the oldest
    cache.get(paths[2])
    assert len(cache) == 2
    assert cache.get(paths[0]) is a


def test_cache_missing_file_names_the_path(tmp_path):
    with pytest.raises(AudioError, match="gone.wav: audio file not found"):
        AudioCache().get(tmp_path / "gone.wav")
