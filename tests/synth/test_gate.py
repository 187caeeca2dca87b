"""Quality gate decisions from texts alone, and the gate over a fake transcriber."""

import numpy as np
import pytest

from lora_training.synth.gate import DEFAULT_MAX_CER, OpenGate, QualityGate, decide, spoken_cer


@pytest.mark.parametrize(
    "spoken, transcript, expected",
    [
        ("run cube control now", "Run cube control now.", 0.0),
        ("ask N P M about git hub", "Ask NPM about GitHub.", 0.0),  # spacing of spoken forms is no error
        ("wait 42 seconds", "wait forty-two seconds", 0.0),
        ("anything at all", "", 1.0),
        ("", "", 0.0),
        ("", "hello", 1.0),
    ],
)
def test_spoken_cer(spoken, transcript, expected):
    assert spoken_cer(spoken, transcript) == pytest.approx(expected)


SPOKEN = "I'm blocked on cube control until Lena sorts out redis."


@pytest.mark.parametrize(
    "transcript, attempt, retries, decision",
    [
        ("I'm blocked on cube control until Lena sorts out redis.", 0, 2, "keep"),
        ("I'm blocked on cue control until Lena sorts out Redis.", 0, 2, "keep"),  # jargon slip passes
        ("I'm blocked on coca-cola until they assault Southeast.", 0, 2, "keep"),  # misheard, not broken
        ("", 0, 2, "regenerate"),  # empty
        ("", 1, 2, "regenerate"),
        ("", 2, 2, "drop"),  # attempts 0, 1, 2 used up
        ("", 0, 0, "drop"),
        ("Quebec, Western and Leipzig, Los and Namorina.", 0, 2, "regenerate"),  # garbled
        ("I'm blocked on cube control until", 0, 2, "regenerate"),  # cut short
    ],
)
def test_decide(transcript, attempt, retries, decision):
    verdict = decide(SPOKEN, transcript, attempt, max_cer=DEFAULT_MAX_CER, retries=retries)
    assert verdict.decision == decision
    assert verdict.transcript == transcript


def test_quality_gate_counts_with_a_fake_transcriber():
    transcripts = ["hello world", "", "hello there world", "goodbye", "Hello, world!"]
    heard = []

    def fake(audios):
        heard.append(len(audios))
        return transcripts

    gate = QualityGate(fake, max_cer=0.5, retries=1)
    audios = [np.zeros(1600, np.float32)] * 5
    verdicts = gate.check(["hello world"] * 5, audios, [0, 0, 1, 1, 1])
    assert heard == [5]
    assert [v.decision for v in verdicts] == ["keep", "regenerate", "keep", "drop", "keep"]
    counts = {d: sum(v.decision == d for v in verdicts) for d in ("keep", "regenerate", "drop")}
    assert counts == {"keep": 3, "regenerate": 1, "drop": 1}


def test_open_gate_keeps_everything_unheard():
    verdicts = OpenGate().check(["a", "b"], [np.zeros(10, np.float32)] * 2, [0, 5])
    assert [(v.decision, v.cer) for v in verdicts] == [("keep", None), ("keep", None)]
