"""flite, festival and the pooled `offline` backend: real clips, seeds, voice names, missing tools.

A test that needs flite or festival skips where it is not installed, except under CI (CI=true),
where it fails: CI must hear every engine (scripts/system-deps.sh installs them).
"""

import os
import random
import shutil

import numpy as np
import pytest

from lora_training.errors import ConfigError, LoraTrainingError
from lora_training.synth.tts import BackendOptions, festival, flite
from lora_training.synth.tts.espeak import EspeakBackend
from lora_training.synth.tts.festival import FestivalBackend
from lora_training.synth.tts.flite import FliteBackend
from lora_training.synth.tts.offline import OfflineBackend

SENTENCE = "deploy the cube control config to staging"
# engine → (backend, the tool it runs, its voices)
ENGINES = {"flite": (FliteBackend, "flite", flite.VOICES), "festival": (FestivalBackend, "text2wave", festival.VOICES)}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _require(tool: str) -> None:
    if shutil.which(tool) is None:
        message = f"{tool} not installed (scripts/system-deps.sh installs it)"
        if _in_ci():
            pytest.fail(f"{message}; CI must test every offline engine")
        pytest.skip(message)


def _built(engine: str, **options):
    backend, tool, _ = ENGINES[engine]
    _require(tool)
    built = backend(BackendOptions(**options))
    built.check()
    return built


@pytest.mark.parametrize("engine, voice", [(e, v) for e, (_, _, voices) in ENGINES.items() for v in voices])
def test_every_voice_speaks_a_16khz_float_clip(engine, voice):
    clip = _built(engine).speak(voice, SENTENCE, random.Random(1))
    assert clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert 1.0 < len(clip.samples) / 16000 < 6.0
    assert 0.05 < np.abs(clip.samples).max() <= 1.0
    assert clip.speaker == f"{engine}:{voice}"


@pytest.mark.parametrize("engine", ENGINES)
def test_same_seed_same_clip_other_seed_other_speed(engine):
    voice = f"{engine}:{ENGINES[engine][2][0]}"
    backend = _built(engine, voices=(voice,))
    first, again = (backend.synthesize(SENTENCE, random.Random(3)) for _ in range(2))
    assert first.speaker == again.speaker == voice
    assert np.array_equal(first.samples, again.samples)
    lengths = {len(backend.synthesize(SENTENCE, random.Random(seed)).samples) for seed in range(4)}
    assert len(lengths) > 1  # the rng's speed reaches the engine


@pytest.mark.parametrize("engine", ENGINES)
def test_excluded_voices_are_never_used_bare_or_qualified(engine):
    all_voices = ENGINES[engine][2]
    backend = _built(engine, exclude_voices=(all_voices[0], f"{engine}:{all_voices[1]}"))
    assert backend.voices == all_voices[2:]
    assert {backend.synthesize("ok", random.Random(seed)).speaker for seed in range(12)} <= {
        f"{engine}:{v}" for v in all_voices[2:]}


@pytest.mark.parametrize(
    "backend, options, message",
    [
        (FliteBackend, BackendOptions(voices=("flite:nope",)), r"unknown flite voice\(s\) flite:nope, expected one"),
        (FestivalBackend, BackendOptions(exclude_voices=("slt",)), r"unknown festival voice\(s\) slt"),
        (FliteBackend, BackendOptions(exclude_voices=("kal", "kal16", "awb", "rms", "slt")), "every voice excluded"),
        (FestivalBackend, BackendOptions(reference_manifest="me.jsonl"), "festival does not clone voices"),
        (OfflineBackend, BackendOptions(voices=("flite:nope",)), r"unknown voice\(s\) flite:nope, expected an"),
        (OfflineBackend, BackendOptions(exclude_voices=("festival:slt", "en-zz")), r"festival:slt, en-zz"),
    ],
)
def test_unknown_voices_fail_in_one_line(backend, options, message):
    with pytest.raises(ConfigError, match=message):
        backend(options).check()


@pytest.mark.parametrize("backend, tool, install", [
    (FliteBackend, "flite", "apt-get install flite or brew install flite"),
    (FestivalBackend, "text2wave", "apt-get install festival"),
])
def test_a_missing_tool_names_itself_and_its_install(backend, tool, install, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LoraTrainingError, match=rf"{tool} not found on PATH, expected it installed.*{install}"):
        backend(BackendOptions()).check()


def test_offline_pools_every_engine_and_honours_qualified_names(capsys):
    _require("flite")
    _require("text2wave")
    excluded = ("flite", "festival:kal_diphone", "en-029", "espeak:en-us+m1")
    backend = OfflineBackend(BackendOptions(exclude_voices=excluded))
    backend.check()
    assert "voices from espeak (64), festival (2); not installed: none" in capsys.readouterr().err
    speakers = {f"{e}:{v}" for e, v in backend.pool}
    assert not any(s.startswith(("flite:", "espeak:en-029")) for s in speakers)
    assert {"festival:kal_diphone", "espeak:en-us+m1"}.isdisjoint(speakers) and "espeak:en-us+m2" in speakers
    assert {backend.synthesize("ok", random.Random(seed)).speaker for seed in range(20)} <= speakers

    chosen = OfflineBackend(BackendOptions(voices=("flite:slt", "festival", "en-gb+m4")))
    chosen.check()
    assert chosen.pool == (("espeak", "en-gb+m4"), ("flite", "slt"), ("festival", "kal_diphone"),
                           ("festival", "ked_diphone"), ("festival", "cmu_us_slt_arctic_hts"))
    used = {chosen.synthesize("ok", random.Random(seed)).speaker for seed in range(20)}
    assert {s.split(":")[0] for s in used} == {"espeak", "flite", "festival"}


def test_offline_without_flite_and_festival_is_espeak_clip_for_clip(monkeypatch, capsys):
    """The graceful fallback: same voices, same fingerprint (so the same clip ids), same samples."""
    monkeypatch.setattr(FliteBackend, "installed", lambda self: ())
    monkeypatch.setattr(FestivalBackend, "installed", lambda self: ())
    options = BackendOptions(exclude_voices=("en-us+m3",))
    offline, plain = OfflineBackend(options), EspeakBackend(options)
    offline.check()
    plain.check()
    assert "voices from espeak (77); not installed: flite, festival" in capsys.readouterr().err
    assert offline.fingerprint() == plain.fingerprint()
    for seed in range(3):
        ours, theirs = (b.synthesize(SENTENCE, random.Random(seed)) for b in (offline, plain))
        assert ours.speaker == theirs.speaker and np.array_equal(ours.samples, theirs.samples)


def test_offline_fails_in_one_line_without_any_engine_or_a_named_one(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LoraTrainingError, match=r"offline backend: no voice left, .* got none installed"):
        OfflineBackend(BackendOptions()).check()
    with pytest.raises(LoraTrainingError, match=r"flite backend: flite not found on PATH"):
        OfflineBackend(BackendOptions(voices=("flite:slt",))).check()
