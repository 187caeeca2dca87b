"""Speaker similarity: the voice encoder tells the same real speaker from espeak, matches
Resemblyzer's own encoder, and the gate regenerates a clip whose voice is not the user's."""

import importlib.util
import random
import sys
import types

import numpy as np
import pytest

from lora_training.synth.gate import QualityGate, SpeakerCheck

needs_weights = pytest.mark.skipif(importlib.util.find_spec("resemblyzer") is None,
                                   reason="resemblyzer (the voice encoder's weights) not installed")


class ScriptedEmbedder:
    """Embeds a clip as the unit vector (cos t, sin t) for t = its first sample: scripted similarities."""

    def embed(self, audio):
        return np.array([np.cos(audio[0]), np.sin(audio[0])])


def clip_at(similarity):
    return np.full(1600, np.arccos(similarity), np.float32)


def test_gate_regenerates_then_drops_a_clip_in_another_voice():
    speaker = SpeakerCheck(ScriptedEmbedder(), profile=np.array([2.0, 0.0]), threshold=0.8)
    gate = QualityGate(lambda audios: ["hello world"] * len(audios), retries=1, speaker=speaker)
    verdicts = gate.check(["hello world"] * 4, [clip_at(s) for s in (0.95, 0.5, 0.5, 0.8)], [0, 0, 1, 1])
    assert [v.decision for v in verdicts] == ["keep", "regenerate", "drop", "keep"]
    assert [v.similarity for v in verdicts] == pytest.approx([0.95, 0.5, 0.5, 0.8], abs=1e-6)
    assert [v.cer for v in verdicts] == [0.0] * 4
    assert gate.describe()["min_similarity"] == 0.8


def test_gate_without_a_profile_does_not_check_the_voice():
    gate = QualityGate(lambda audios: ["hello world"] * len(audios))
    verdicts = gate.check(["hello world"], [clip_at(0.1)], [0])
    assert (verdicts[0].decision, verdicts[0].similarity) == ("keep", None)
    assert "min_similarity" not in gate.describe()


@pytest.fixture(scope="module")
def model():
    from lora_training.synth.speaker import SpeakerModel

    return SpeakerModel()


@pytest.fixture(scope="module")
def allison():
    """Six telephone prompts of one real speaker (asterisk-allison), 16 kHz."""
    from lora_training.data.audio import load_audio
    from lora_training.data.manifest import load_manifest
    from lora_training.evaluation.safety import builtin_safety_manifest

    rows = [u for u in load_manifest(builtin_safety_manifest("measure")) if u.speaker == "asterisk-allison"][:6]
    return [(u.text, load_audio(u.audio, max_seconds=None)) for u in rows]


def espeak(text):
    from lora_training.synth.tts.base import BackendOptions
    from lora_training.synth.tts.espeak import EspeakBackend

    return EspeakBackend(BackendOptions()).speak("en-us+f2", text, random.Random(0)).samples


@needs_weights
def test_same_real_speaker_is_more_similar_than_espeak(model, allison):
    from lora_training.synth.speaker import DEFAULT_MIN_SIMILARITY, similarity

    profile = model.voice_profile([audio for _, audio in allison[:4]])
    assert np.linalg.norm(profile) == pytest.approx(1.0)
    for text, audio in allison[4:]:
        same, robot = similarity(model.embed(audio), profile), similarity(model.embed(espeak(text)), profile)
        assert same >= DEFAULT_MIN_SIMILARITY > robot, (same, robot)


@needs_weights
def test_gate_with_the_real_model_regenerates_espeak(model, allison):
    from lora_training.synth.speaker import DEFAULT_MIN_SIMILARITY

    text, audio = allison[5]
    speaker = SpeakerCheck(model, model.voice_profile([a for _, a in allison[:4]]), DEFAULT_MIN_SIMILARITY)
    gate = QualityGate(lambda audios: [text] * len(audios), speaker=speaker)
    verdicts = gate.check([text, text], [audio, espeak(text)], [0, 0])
    assert [v.decision for v in verdicts] == ["keep", "regenerate"]


@needs_weights
@pytest.mark.filterwarnings("ignore:Please import `binary_dilation`:DeprecationWarning")
def test_embeddings_match_resemblyzers_own_encoder(model, allison, monkeypatch):
    """Only the weights come from the package; the front end is ours. Its audio module imports
    webrtcvad (for the silence trim we replace), so a stub stands in for it."""
    monkeypatch.setitem(sys.modules, "webrtcvad", types.ModuleType("webrtcvad"))
    pytest.importorskip("librosa")
    from resemblyzer import VoiceEncoder

    from lora_training.synth.speaker import preprocess

    theirs = VoiceEncoder("cpu", verbose=False)
    for _, audio in allison[:2]:
        wav = preprocess(audio)
        np.testing.assert_allclose(model.embed_preprocessed(wav), theirs.embed_utterance(wav), atol=1e-5)
