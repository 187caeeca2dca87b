"""Recording sessions driven by a fake microphone and scripted keys: keep, redo, skip, quit,
Ctrl-C and resume; and the one-line error where no microphone can be used."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lora_training.capture.record import RecordingSession, load_prompts
from lora_training.data.audio import SAMPLE_RATE, load_audio
from lora_training.data.manifest import load_manifest, validate_manifests
from lora_training.errors import ConfigError
from lora_training.synth.sentences import GeneratedSentence
from lora_training.testing.signals import speech_like

REPO = Path(__file__).resolve().parents[2]

PROMPTS = [
    GeneratedSentence("Run kubectl now.", "Run cube control now.", ["kubectl"], "t1"),
    GeneratedSentence("push to main", "push to main", [], "t2"),
    GeneratedSentence("email dev@example.com", "email dev at example dot com", ["dev@example.com"], "t3"),
]
START = STOP = KEEP = ""


class FakeMicrophone:
    """Hands out prepared takes; an exception in the list is raised instead, like Ctrl-C would be."""

    def __init__(self, takes):
        self.takes = list(takes)
        self.calls = []

    def record(self, stop, max_seconds):
        self.calls.append((stop is None, max_seconds))
        take = self.takes.pop(0)
        if isinstance(take, BaseException):
            raise take
        if stop is not None:
            stop()
        return take


class Keys:
    """Scripted answers to `input`; running out is a test bug, not a silent quit."""

    def __init__(self, keys):
        self.keys = list(keys)

    def __call__(self, prompt):
        if not self.keys:
            raise AssertionError(f"script exhausted at prompt {prompt!r}")
        return self.keys.pop(0)


def _take(amplitude=0.3, seconds=1.5):
    return speech_like(seconds, amplitude=amplitude)


def _session(tmp_path, takes, keys, out=None, **kwargs):
    mic = FakeMicrophone(takes)
    lines = out if out is not None else []
    session = RecordingSession(tmp_path / "data" / "my_voice_all.jsonl", mic, speaker="me", ask=Keys(keys),
                               say=lines.append, **kwargs)
    return session, mic, lines


def _lines(tmp_path):
    return [json.loads(line) for line in (tmp_path / "data" / "my_voice_all.jsonl").read_text().splitlines()]


def test_keeping_every_take_writes_wavs_and_a_valid_manifest(tmp_path):
    session, _, _ = _session(tmp_path, [_take(), _take(), _take()], [START, STOP, KEEP] * 3)
    summary = session.run(PROMPTS)
    assert (summary.recorded, summary.skipped, summary.quit) == (3, 0, False)
    rows = _lines(tmp_path)
    assert [r["id"] for r in rows] == ["rec-0001", "rec-0002", "rec-0003"]
    assert rows[0] == {"audio": "recordings/rec-0001.wav", "text": "Run kubectl now.", "id": "rec-0001",
                       "duration": 1.25, "source": "real", "speaker": "me", "spoken": "Run cube control now.",
                       "terms": ["kubectl"]}
    assert "spoken" not in rows[1] and "terms" not in rows[1]
    manifest = tmp_path / "data" / "my_voice_all.jsonl"
    assert validate_manifests([manifest])[0]["ok"]
    # 0.1 s (Enter released) and 0.15 s (Enter pressed) are trimmed from the 1.5 s take.
    assert load_audio(tmp_path / "data" / "recordings" / "rec-0003.wav").shape == (int(1.25 * SAMPLE_RATE),)


def test_redo_keeps_the_second_take_and_warnings_are_shown(tmp_path):
    quiet, good = _take(amplitude=0.02), _take(amplitude=0.4)
    session, _, out = _session(tmp_path, [quiet, good], [START, STOP, "r", START, STOP, KEEP, "q"])
    summary = session.run(PROMPTS)
    assert summary.recorded == 1 and summary.quit
    assert any(line.startswith("  ! too quiet") for line in out)
    kept = load_audio(tmp_path / "data" / "recordings" / "rec-0001.wav")
    assert np.abs(kept).max() == pytest.approx(0.4, abs=0.01)


def test_skip_before_and_after_a_take(tmp_path):
    session, _, _ = _session(tmp_path, [_take(), _take()], ["s", START, STOP, "s", START, STOP, KEEP])
    summary = session.run(PROMPTS)
    assert (summary.recorded, summary.skipped) == (1, 2)
    assert [(r["id"], r["text"]) for r in _lines(tmp_path)] == [("rec-0001", PROMPTS[2].text)]


def test_quit_discards_the_take_in_hand(tmp_path):
    session, _, _ = _session(tmp_path, [_take(), _take()], [START, STOP, KEEP, START, STOP, "q"])
    summary = session.run(PROMPTS)
    assert summary.quit and summary.recorded == 1
    assert len(_lines(tmp_path)) == 1
    assert sorted(p.name for p in (tmp_path / "data" / "recordings").iterdir()) == ["rec-0001.wav"]


def test_end_of_input_quits_and_unknown_keys_are_asked_again(tmp_path):
    def ask(prompt, keys=iter(["x", START, STOP, KEEP])):
        try:
            return next(keys)
        except StopIteration:
            raise EOFError from None

    out = []
    session = RecordingSession(tmp_path / "m.jsonl", FakeMicrophone([_take()]), speaker="me", ask=ask,
                               say=out.append)
    summary = session.run(PROMPTS)
    assert summary.quit and summary.recorded == 1
    assert "  unknown key, expected Enter or one of s, q, got 'x'" in out


def test_a_take_too_short_to_keep_is_recorded_again(tmp_path):
    blip = speech_like(0.2, lead=0.05, trail=0.05)
    session, mic, out = _session(tmp_path, [blip, _take()], [START, STOP, START, STOP, KEEP, "q"])
    session.run(PROMPTS)
    assert len(mic.calls) == 2 and "  too short to keep, record it again" in out
    assert _lines(tmp_path)[0]["duration"] == 1.25


def test_enter_key_clicks_are_trimmed_not_reported_as_cut_speech(tmp_path):
    take = _take()
    click = 0.5 * np.sin(np.arange(480) * 1.3).astype(np.float32)  # 30 ms of clack at each edge
    take[:480], take[-480:] = click, click
    session, _, out = _session(tmp_path, [take], [START, STOP, KEEP, "q"])
    session.run(PROMPTS)
    assert not [line for line in out if line.startswith("  !")], out


def test_fixed_length_takes_need_no_stop_key(tmp_path):
    session, mic, _ = _session(tmp_path, [_take()], [START, KEEP, "q"], seconds=4.0)
    session.run(PROMPTS)
    assert mic.calls == [(True, 4.0)]
    assert _lines(tmp_path)[0]["duration"] == 1.4


def test_ctrl_c_keeps_what_was_accepted_and_a_rerun_resumes(tmp_path):
    session, _, out = _session(tmp_path, [_take(), _take(), KeyboardInterrupt()], [START, STOP, KEEP] * 2 + [START])
    with pytest.raises(KeyboardInterrupt):
        session.run(PROMPTS)
    manifest = tmp_path / "data" / "my_voice_all.jsonl"
    assert [u.id for u in load_manifest(manifest)] == ["rec-0001", "rec-0002"]
    assert validate_manifests([manifest])[0]["ok"]
    assert out[-1].startswith("\ninterrupted: 2 recording(s)")

    session, _, out = _session(tmp_path, [_take()], [START, STOP, KEEP])
    summary = session.run(PROMPTS)
    assert (summary.already_recorded, summary.recorded) == (2, 1)
    assert out[0].startswith("1 of 3 prompts to record")
    assert [(u.id, u.text) for u in load_manifest(manifest)][-1] == ("rec-0003", PROMPTS[2].text)


def test_numbering_skips_orphan_wavs_and_earlier_lines_stay_byte_for_byte(tmp_path):
    data = tmp_path / "data"
    (data / "recordings").mkdir(parents=True)
    (data / "recordings" / "rec-0007.wav").write_bytes(b"left by a crash between wav and manifest")
    (data / "old.wav").write_bytes(b"")
    handwritten = '{"text": "an older clip", "audio": "old.wav", "source": "real"}'
    (data / "my_voice_all.jsonl").write_text(handwritten)
    session, _, _ = _session(tmp_path, [_take()], [START, STOP, KEEP, "q"])
    session.run(PROMPTS)
    lines = (data / "my_voice_all.jsonl").read_text().splitlines()
    assert lines[0] == handwritten
    assert json.loads(lines[1])["id"] == "rec-0008"


def test_prompts_cover_the_vocabulary_or_come_from_a_file(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("kubectl | cube control\npytest\nnginx | engine x\nWER | word error rate\n")
    prompts = load_prompts(vocab, 2)
    assert len(prompts) == 2
    assert {t for p in prompts for t in p.terms} == {"kubectl", "pytest", "nginx", "WER"}

    sentences = tmp_path / "sentences.txt"
    sentences.write_text("restart nginx\n\nrun pytest twice\nfix the WER script\n")
    prompts = load_prompts(vocab, 2, sentences=sentences)
    assert [(p.text, p.spoken) for p in prompts] == [("restart nginx", "restart engine x"),
                                                     ("run pytest twice", "run pytest twice")]
    with pytest.raises(ConfigError, match="count: no prompts"):
        load_prompts(vocab, 0, sentences=sentences)


# What `import sounddevice` does on machines without a usable microphone.
NO_MICROPHONE = {
    "sounddevice missing": "raise ModuleNotFoundError(\"No module named 'sounddevice'\", name='sounddevice')",
    "PortAudio missing": "raise OSError('PortAudio library not found')",
    "no input device": """
        class PortAudioError(Exception):
            pass

        def query_devices(device=None, kind=None):
            raise PortAudioError('Error querying device -1')
    """,
}


@pytest.mark.parametrize("stub", NO_MICROPHONE.values(), ids=NO_MICROPHONE.keys())
def test_no_microphone_is_one_line_and_exit_1(tmp_path, stub):
    (tmp_path / "stub").mkdir()
    (tmp_path / "stub" / "sounddevice.py").write_text(textwrap.dedent(stub))
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("kubectl | cube control\n")
    proc = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "record", "--vocabulary", str(vocab), "--count", "2",
         "--manifest", str(tmp_path / "my_voice_all.jsonl")],
        capture_output=True, text=True, cwd=tmp_path, timeout=60, stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "stub")},
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: microphone"), proc.stderr
    assert not (tmp_path / "my_voice_all.jsonl").exists()


class FakeSounddevice:
    """Stands in for the sounddevice module: an input device at `rate` that streams 1 s blocks of 0.1."""

    class PortAudioError(Exception):
        pass

    class CallbackStop(Exception):
        pass

    def __init__(self, rate):
        self.rate = rate

    def query_devices(self, device=None, kind=None):
        return {"name": "fake mic", "default_samplerate": float(self.rate)}

    def check_input_settings(self, device=None, samplerate=None, channels=None, dtype=None):
        if samplerate != self.rate:
            raise self.PortAudioError("Invalid sample rate")

    def InputStream(self, samplerate, channels, dtype, device, callback, finished_callback):
        sd = self

        class Stream:
            def __enter__(self):
                try:
                    for _ in range(100):
                        callback(np.full((samplerate, 1), 0.1, np.float32), samplerate, None, None)
                except sd.CallbackStop:
                    finished_callback()
                return self

            def __exit__(self, *exc):
                return False

        return Stream()


@pytest.mark.parametrize("rate", [16000, 48000])
def test_microphone_stops_at_max_seconds_and_delivers_16_khz(monkeypatch, rate):
    from lora_training.capture.record import Microphone

    monkeypatch.setitem(sys.modules, "sounddevice", FakeSounddevice(rate))
    mic = Microphone()
    audio = mic.record(None, 2.5)
    assert (mic.rate, audio.dtype, len(audio)) == (rate, np.float32, int(2.5 * SAMPLE_RATE))
    assert np.median(audio) == pytest.approx(0.1, abs=1e-3)


def test_an_empty_manifest_file_is_a_fresh_start_and_bad_seconds_are_refused(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "my_voice_all.jsonl").write_text("\n")
    session, _, _ = _session(tmp_path, [_take()], [START, STOP, KEEP, "q"])
    assert session.run(PROMPTS).recorded == 1
    assert _lines(tmp_path)[0]["id"] == "rec-0001"
    with pytest.raises(ConfigError, match="seconds: take length out of range, expected 0.3-30 s, got 0"):
        _session(tmp_path, [], [], seconds=0)
