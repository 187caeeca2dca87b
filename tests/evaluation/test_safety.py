"""The built-in safety set: real speech from Debian packages, converted once into the cache."""

from __future__ import annotations

import soundfile as sf

from lora_training.data.manifest import load_manifest
from lora_training.evaluation import safety
from lora_training.evaluation.evaluate import safety_clips


def test_builtin_manifest_is_built_once_from_the_packages(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_TRAINING_CACHE", str(tmp_path))
    path = safety.builtin_safety_manifest(None)
    assert path.parent.parent == tmp_path / "safety"
    utts = load_manifest(path)
    by_speaker = {s: [u for u in utts if u.speaker == s] for s in ("asterisk-allison", "librivox-austen")}
    assert len(by_speaker["librivox-austen"]) == 5 and len(by_speaker["asterisk-allison"]) >= 80
    texts = {u.id: u.text for u in utts}
    assert texts["asterisk/vm-invalidpassword"] == "That is not a valid password. Please try again."
    assert "librivox/sense_and_sensibility_01_austen_64kb-0880" in texts
    for u in utts:
        info = sf.info(u.audio)
        assert info.samplerate == 16000 and info.channels == 1
        assert not any(c in u.text for c in "[]()*#") and ".." not in u.text
        if u.speaker == "asterisk-allison":
            assert 3.0 <= info.frames / info.samplerate <= 20.0
    assert len({u.text.casefold() for u in utts}) == len(utts)  # duplicate prompts kept once

    mtime = path.stat().st_mtime_ns
    assert safety.builtin_safety_manifest(None) == path and path.stat().st_mtime_ns == mtime


def test_measurement_and_replay_halves_split_the_set_once(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_TRAINING_CACHE", str(tmp_path))
    every = {u.id for u in load_manifest(safety.builtin_safety_manifest(None))}
    measure = {u.id for u in load_manifest(safety.builtin_safety_manifest("measure"))}
    replay = {u.id for u in load_manifest(safety.builtin_safety_manifest("replay"))}
    assert measure | replay == every and not measure & replay
    assert 0.35 < len(measure) / len(every) < 0.65
    assert safety.builtin_safety_manifest() == safety.builtin_safety_manifest("measure")


def test_safety_subset_is_evenly_spaced(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_TRAINING_CACHE", str(tmp_path))
    _, description, all_clips = safety_clips("builtin", 0)
    _, _, four = safety_clips("builtin", 4)
    n = len(all_clips)
    assert [c.id for c in four] == [all_clips[i * n // 4].id for i in range(4)]
    assert "telephone" in description and "LibriVox" in description


def test_missing_packages_name_the_fix(monkeypatch, tmp_path):
    import pytest

    from lora_training.errors import ConfigError

    monkeypatch.setattr(safety, "ASTERISK_INDEX", tmp_path / "none.txt.gz")
    monkeypatch.setattr(safety, "LIBRIVOX", tmp_path / "none")
    with pytest.raises(ConfigError, match="apt-get install asterisk-core-sounds-en-wav pocketsphinx-testdata"):
        safety.find_sources()
