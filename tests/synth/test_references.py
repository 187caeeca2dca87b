"""Reference clips for voice cloning: only clean real clips of the right length, resampled once to
the model's rate, spread over the recording set; one-line errors saying what was refused."""

import numpy as np
import pytest
import soundfile as sf

from lora_training.data.audio import write_wav
from lora_training.data.manifest import Utterance, save_manifest
from lora_training.errors import ConfigError
from lora_training.synth.references import choose_references
from lora_training.testing.signals import speech_like

# name -> (samples, source): speech_like has 0.4 s pauses at both ends and a 0.3 peak.
CLIPS = {
    "good_a": (speech_like(6.0, seed=1), "real"),
    "short": (speech_like(2.0, seed=2), "real"),
    "good_b": (speech_like(7.0, seed=3), "real"),
    "clipped": (speech_like(6.0, amplitude=2.0, seed=4), "real"),  # written as a square-ish wave at full scale
    "silent": (np.zeros(6 * 16000, np.float32), "real"),
    "long": (speech_like(12.0, seed=5), "real"),
    "synthetic": (speech_like(6.0, seed=6), "synthetic"),
    "cut": (speech_like(6.0, lead=0.0, seed=7), "real"),
    "good_c": (speech_like(8.0, seed=8), None),  # no source: the user's own recording
}


def write_manifest(folder, names, *, spoken=None):
    rows = []
    for name in names:
        samples, source = CLIPS[name]
        wav = write_wav(folder / "audio" / f"{name}.wav", samples)
        rows.append(Utterance(audio=str(wav), text=f"Text of {name}.", id=name, source=source,
                              spoken=(spoken or {}).get(name)))
    return save_manifest(folder / "voice.jsonl", rows)


def test_only_clean_real_clips_of_the_right_length_resampled_to_24k(tmp_path):
    manifest = write_manifest(tmp_path, CLIPS, spoken={"good_b": "spoken form of good b"})
    refs = choose_references(manifest, cache_dir=tmp_path / "cache")
    assert [r.id for r in refs] == ["good_a", "good_b", "good_c"]
    assert [r.transcript for r in refs] == ["Text of good_a.", "spoken form of good b", "Text of good_c."]
    for ref, seconds in zip(refs, (6.0, 7.0, 8.0)):
        info = sf.info(ref.audio)
        assert ref.audio.startswith(str(tmp_path / "cache"))
        assert (info.samplerate, info.channels) == (24000, 1)
        assert info.frames == pytest.approx(seconds * 24000, abs=2)


def test_deterministic_and_written_once(tmp_path):
    manifest = write_manifest(tmp_path, ["good_a", "good_b"])
    first = choose_references(manifest, cache_dir=tmp_path / "cache")
    mtimes = [(tmp_path / "cache" / p).stat().st_mtime_ns for p in sorted(p.name for p in (tmp_path / "cache").iterdir())]
    again = choose_references(manifest, cache_dir=tmp_path / "cache")
    assert again == first
    assert [(tmp_path / "cache" / p).stat().st_mtime_ns for p in sorted(p.name for p in (tmp_path / "cache").iterdir())] == mtimes
    assert len(list((tmp_path / "cache").iterdir())) == 2
    # Another rate is another cache entry, never the 24 kHz file served again.
    at_16k = choose_references(manifest, cache_dir=tmp_path / "cache", sample_rate=16000)
    assert {sf.info(r.audio).samplerate for r in at_16k} == {16000}


def test_spread_over_the_recording_set(tmp_path):
    rows = [Utterance(audio=str(write_wav(tmp_path / f"{i}.wav", speech_like(5.5, seed=i))), text=f"clip {i}",
                      id=f"clip{i}", source="real") for i in range(10)]
    manifest = save_manifest(tmp_path / "voice.jsonl", rows)
    refs = choose_references(manifest, count=4, cache_dir=tmp_path / "cache")
    assert [r.id for r in refs] == ["clip1", "clip3", "clip6", "clip8"]


def test_no_clip_qualifies_says_why_in_one_line(tmp_path):
    manifest = write_manifest(tmp_path, ["short", "clipped", "silent", "long", "synthetic", "cut"])
    with pytest.raises(ConfigError) as e:
        choose_references(manifest, cache_dir=tmp_path / "cache")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"{manifest}: no reference clip")
    assert "expected a clean real recording of 5-10 s, got 6 clip(s)" in message
    for reason in ("1 too short", "1 too long", "1 synthetic", "1 clipped", "1 silent", "1 cut_start"):
        assert reason in message
    assert not (tmp_path / "cache").exists()
