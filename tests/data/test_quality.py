"""Quality checks on synthetic clips whose levels and pauses are known by construction."""

import numpy as np
import pytest

from lora_training.data.audio import SAMPLE_RATE
from lora_training.data.quality import Thresholds, check_audio, dbfs, measure
from lora_training.testing.signals import speech_like


def _clipped():
    return np.clip(4 * speech_like(amplitude=0.5), -1.0, 1.0)


def _one_stray_peak():
    x = speech_like(amplitude=0.5)
    x[SAMPLE_RATE] = 1.0
    return x


CASES = [
    ("ok", lambda: speech_like(), []),
    ("ok with 1 s pauses", lambda: speech_like(3.0, lead=1.0, trail=1.0), []),
    ("one full-scale sample is not clipping", _one_stray_peak, []),
    ("digital silence", lambda: np.zeros(2 * SAMPLE_RATE, np.float32), ["silent"]),
    ("room noise only", lambda: speech_like(amplitude=0.0, noise=1e-3), ["silent"]),
    ("quiet peak", lambda: speech_like(amplitude=0.03), ["quiet"]),
    ("clipped", _clipped, ["clipped"]),
    ("long leading silence", lambda: speech_like(4.0, lead=2.5), ["long_lead"]),
    ("long trailing silence", lambda: speech_like(4.0, trail=2.0), ["long_trail"]),
    ("started while talking", lambda: speech_like(lead=0.0), ["cut_start"]),
    ("stopped while talking", lambda: speech_like(trail=0.0), ["cut_end"]),
    ("too short", lambda: speech_like(0.25, lead=0.08, trail=0.08), ["short"]),
    ("empty", lambda: np.zeros(0, np.float32), ["short", "silent"]),
    ("quiet and long lead", lambda: speech_like(4.0, lead=2.5, amplitude=0.03), ["quiet", "long_lead"]),
]


@pytest.mark.parametrize("name, make, expected", CASES, ids=[c[0] for c in CASES])
def test_issue_codes(name, make, expected):
    levels, issues = check_audio(make())
    assert [i.code for i in issues] == expected, (levels, issues)


def test_messages_follow_the_error_shape():
    _, issues = check_audio(speech_like(amplitude=0.03))
    assert issues[0].message.startswith("too quiet, expected a peak above -26 dBFS, got -30.")


def test_measured_pauses_match_the_construction():
    levels = measure(speech_like(3.0, lead=0.8, trail=0.5))
    assert levels.lead == pytest.approx(0.8, abs=0.03)
    assert levels.trail == pytest.approx(0.5, abs=0.03)
    assert levels.seconds == pytest.approx(3.0)
    assert dbfs(levels.peak) == pytest.approx(dbfs(0.3), abs=0.1)


def test_thresholds_are_honoured():
    loud_enough = speech_like(amplitude=0.03)
    assert [i.code for i in check_audio(loud_enough, Thresholds(min_peak=0.02))[1]] == []
    assert [i.code for i in check_audio(speech_like(), Thresholds(max_edge_silence=0.2))[1]] == ["long_lead", "long_trail"]
