"""Synthesis end to end with espeak: manifest rows, resumability, the gate's counts, the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from lora_training.data.manifest import load_manifest, validate_manifests
from lora_training.errors import ConfigError
from lora_training.synth.gate import QualityGate
from lora_training.synth.synthesize import SynthConfig, audio_dir_for, synthesize_dataset

REPO = Path(__file__).resolve().parents[2]
VOCABULARY = "dev@example.com | dev at example dot com\nkubectl | cube control\nnginx | engine x\n"


@pytest.fixture
def vocabulary(tmp_path):
    path = tmp_path / "vocabulary.txt"
    path.write_text(VOCABULARY)
    return str(path)


def _sentences(tmp_path, lines):
    path = tmp_path / "sentences.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


class RecordingGate(QualityGate):
    """The real gate logic over a scripted transcriber; remembers the texts it compared against."""

    def __init__(self, transcripts_for_call, **kwargs):
        self.calls = []
        super().__init__(lambda audios: transcripts_for_call(len(self.calls), audios), **kwargs)

    def check(self, spoken, audios, attempts):
        self.calls.append(list(spoken))
        return super().check(spoken, audios, attempts)


def test_rows_carry_written_text_and_the_clip_speaks_the_spoken_form(tmp_path, vocabulary):
    output = tmp_path / "out" / "synthetic.jsonl"
    sentences = _sentences(tmp_path, ["Email dev@example.com about it."])
    gate = RecordingGate(lambda call, audios: ["Email dev at example dot com about it."] * len(audios))
    summary = synthesize_dataset(SynthConfig(vocabulary=vocabulary, sentences=sentences, output=str(output)),
                                 gate=gate, progress=False)
    assert gate.calls == [["Email dev at example dot com about it."]]
    (row,) = load_manifest(output)
    assert row.text == "Email dev@example.com about it."
    assert row.spoken == "Email dev at example dot com about it."
    assert row.terms == ["dev@example.com"] and row.source == "synthetic" and row.speaker.startswith("espeak:")
    info = sf.info(row.audio)
    assert (info.samplerate, info.channels) == (16000, 1)
    assert Path(row.audio).parent == audio_dir_for(output).absolute()
    assert row.duration == pytest.approx(info.frames / 16000, abs=1e-3)
    assert summary.kept == 1 and summary.clips == 1


def test_gate_regenerates_then_drops_and_counts(tmp_path):
    """Call 1 hears all four clips and refuses the first; its retry (attempt 1) is refused too."""
    sentences = _sentences(tmp_path, ["hello world"] * 4)

    def script(call, audios):
        return ["" if i == 0 else "hello world" for i in range(len(audios))]

    gate = RecordingGate(script, max_cer=0.5, retries=1)
    cfg = SynthConfig(sentences=sentences, output=str(tmp_path / "s.jsonl"), workers=2)
    summary = synthesize_dataset(cfg, gate=gate, progress=False)
    assert [len(c) for c in gate.calls] == [4, 1]
    assert (summary.kept, summary.regenerated, summary.dropped, summary.synthesized) == (3, 1, 1, 5)
    assert summary.clips == 3 and len(load_manifest(tmp_path / "s.jsonl")) == 3
    assert summary.dropped_examples[0]["spoken"] == "hello world" and summary.dropped_examples[0]["cer"] == 1.0
    assert "3 kept, 1 regenerated, 1 dropped" in summary.render()


def test_second_run_regenerates_nothing_and_a_broken_clip_is_redone(tmp_path, vocabulary):
    cfg = SynthConfig(vocabulary=vocabulary, count=6, min_per_term=2, output=str(tmp_path / "s.jsonl"), gate=False)
    first = synthesize_dataset(cfg, progress=False)
    rows = load_manifest(cfg.output)
    stamps = {r.id: os.stat(r.audio).st_mtime_ns for r in rows}
    assert (first.kept, first.resumed, len(rows)) == (6, 0, 6)
    assert first.terms["min_uses"] >= 2 and not first.terms["below_min"]

    second = synthesize_dataset(cfg, progress=False)
    assert (second.synthesized, second.resumed, second.clips) == (0, 6, 6)
    assert {r.id: os.stat(r.audio).st_mtime_ns for r in load_manifest(cfg.output)} == stamps

    Path(rows[2].audio).write_bytes(b"RIFF not really")
    third = synthesize_dataset(cfg, progress=False)
    assert (third.synthesized, third.resumed, third.clips) == (1, 5, 6)
    assert [r.id for r in load_manifest(cfg.output)] == [r.id for r in rows]


def test_a_changed_seed_makes_new_clips(tmp_path, vocabulary):
    cfg = SynthConfig(vocabulary=vocabulary, count=3, min_per_term=1, output=str(tmp_path / "s.jsonl"), gate=False)
    ids = {r.id for r in (synthesize_dataset(cfg, progress=False), load_manifest(cfg.output))[1]}
    old_clips = {r.audio for r in load_manifest(cfg.output)}
    cfg.seed = 1
    with pytest.raises(ConfigError, match=r"s.jsonl: holds 3 clips, 3 of which this run would not make again.*"
                                          r"--overwrite"):
        synthesize_dataset(cfg, progress=False)
    assert {r.id for r in load_manifest(cfg.output)} == ids
    cfg.overwrite = True
    summary = synthesize_dataset(cfg, progress=False)
    assert (summary.resumed, summary.removed) == (0, 3) and "removed (--overwrite): 3 clips" in summary.render()
    assert not ids & {r.id for r in load_manifest(cfg.output)}
    assert not any(os.path.exists(a) for a in old_clips)


def test_refuses_to_overwrite_a_manifest_of_real_recordings(tmp_path, vocabulary):
    from lora_training.testing.factories import make_manifest

    real = make_manifest(tmp_path, 2)
    cfg = SynthConfig(vocabulary=vocabulary, count=3, min_per_term=1, output=str(real), gate=False)
    with pytest.raises(ConfigError, match="holds non-synthetic utterances"):
        synthesize_dataset(cfg, progress=False)
    assert len(load_manifest(real)) == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "vocabulary: missing"),
        ({"vocabulary": "v.txt", "workers": 0}, "workers: expected at least 1"),
        ({"vocabulary": "v.txt", "output": "x.json"}, "output: expected a .jsonl"),
        ({"vocabulary": "v.txt", "backend": "say"}, "backend: unknown 'say'"),
    ],
)
def test_config_problems(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SynthConfig(**kwargs)


def test_cli_synth_end_to_end(tmp_path, vocabulary):
    output = tmp_path / "data" / "synthetic_train.jsonl"
    done = subprocess.run(
        [sys.executable, "main.py", "synth", "--vocabulary", vocabulary, "--count", "6", "--min-per-term", "2",
         "--output", str(output), "--no-gate", "--augment", "--seed", "3", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["clips"], summary["kept"], summary["gate"]) == (6, 6, None)
    assert summary["terms"]["count"] == 3 and summary["terms"]["min_uses"] >= 2 and not summary["terms"]["below_min"]
    (result,) = validate_manifests([output])
    assert result["ok"], result["problems"]
    assert len(list((tmp_path / "data" / "synthetic_train_audio").glob("*.wav"))) == 6


@pytest.mark.real_model
def test_gate_with_the_embedded_model(tmp_path, vocabulary):
    sentences = _sentences(tmp_path, ["Run kubectl apply and paste the output here.",
                                      "Restart nginx before the demo on Friday.",
                                      "Please email dev@example.com about the numbers."])
    cfg = SynthConfig(vocabulary=vocabulary, sentences=sentences, output=str(tmp_path / "s.jsonl"))
    summary = synthesize_dataset(cfg, progress=False)
    assert summary.gate["model"] == "embedded:moonshine-base"
    assert summary.kept + summary.dropped == 3 and summary.clips == summary.kept >= 2
    assert summary.synthesized == summary.kept + summary.regenerated + summary.dropped
    assert summary.gate_cer["max"] <= cfg.gate_max_cer
