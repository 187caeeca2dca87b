"""Learning from corrections: reviewing dictated clips with scripted keys (accept, edit, skip,
discard, quit and resume, --all), corrections as real speech in manifests, mix, the epoch and the
report, and the whole loop on the tiny model: dictated clip → correction → training run."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from lora_training.capture.corrections import (DISCARDED, HEARD_MANIFEST, CorrectionsOptions, Player, PlayerError,
                                               review_corrections)
from lora_training.data.audio import write_wav
from lora_training.data.manifest import Utterance, field_problems, is_real, load_manifest, validate_manifests
from lora_training.errors import ManifestError
from lora_training.testing.signals import speech_like

HEARD = ["run cube control apply", "open the plan doc", "push to main", "uh"]


class Keys:
    """Scripted answers to `input` (an exception in the list is raised, as EOF would be); running out
    is a test bug, not a silent quit."""

    def __init__(self, keys):
        self.keys = list(keys)

    def __call__(self, prompt=""):
        if not self.keys:
            raise AssertionError(f"script exhausted at prompt {prompt!r}")
        key = self.keys.pop(0)
        if isinstance(key, BaseException):
            raise key
        return key


def _dictation(root: Path, texts=HEARD, *, wav=None) -> Path:
    """heard.jsonl and clips/ as `dictate --keep` writes them."""
    folder = root / "data" / "dictation"
    lines = []
    for i, text in enumerate(texts, start=1):
        uid = f"dict-20250101-120000-{i:03d}"
        clip = folder / "clips" / f"{uid}.wav"
        clip.parent.mkdir(parents=True, exist_ok=True)
        if wav is None:
            write_wav(clip, speech_like(1.5, seed=i))
        else:
            shutil.copyfile(wav, clip)
        lines.append({"id": uid, "audio": f"clips/{uid}.wav", "text": text, "heard": text, "source": "dictation",
                      "model": "embedded:moonshine-base", "duration": 1.5 if wav is None else 9.96,
                      "created": "2025-01-01T12:00:00+00:00"})
    (folder / HEARD_MANIFEST).write_text("".join(json.dumps(d) + "\n" for d in lines))
    return folder


def _review(root: Path, keys, *, played=None, **options):
    said: list[str] = []
    opts = CorrectionsOptions(dictation_dir=str(root / "data" / "dictation"),
                              out=str(root / "data" / "corrections.jsonl"), **options)
    summary = review_corrections(opts, ask=Keys(keys), play=(played.append if played is not None else None),
                                 out=said.append)
    return summary, said


def _rows(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "data" / "corrections.jsonl").read_text().splitlines()]


def _discarded(root: Path) -> list[str]:
    path = root / "data" / "dictation" / DISCARDED
    return [json.loads(line)["id"] for line in path.read_text().splitlines()] if path.exists() else []


# --- the review -----------------------------------------------------------------------

def test_accept_edit_skip_discard_write_the_right_rows(tmp_path):
    _dictation(tmp_path)
    played: list[str] = []
    summary, said = _review(tmp_path, ["p", "a", "e", "  Open @docs/plan.md with kubectl  ", "s", "d"],
                            played=played)
    assert (summary.accepted, summary.edited, summary.skipped, summary.discarded, summary.quit) == (1, 1, 1, 1, False)
    assert summary.unreviewed == 1 and "1 of 4 clips still to review" in summary.render()
    assert played == [str(tmp_path / "data" / "dictation" / "clips" / "dict-20250101-120000-001.wav")]
    assert any("heard: run cube control apply" in line for line in said)
    accepted, edited = _rows(tmp_path)
    assert accepted["id"] == "dict-20250101-120000-001" and accepted["status"] == "accepted"
    assert accepted["text"] == accepted["heard"] == "run cube control apply"
    assert edited["text"] == "Open @docs/plan.md with kubectl"  # stripped, otherwise verbatim
    assert edited["heard"] == "open the plan doc" and edited["status"] == "edited"
    assert edited["audio"] == "dictation/clips/dict-20250101-120000-002.wav"
    assert edited["source"] == "correction" and edited["duration"] == 1.5 and edited["reviewed"].endswith("+00:00")
    assert _discarded(tmp_path) == ["dict-20250101-120000-004"]
    # A manifest like any other: it loads, and its clips are trainable.
    utts = load_manifest(tmp_path / "data" / "corrections.jsonl")
    assert [u.source for u in utts] == ["correction", "correction"] and Path(utts[1].audio).is_file()
    assert validate_manifests([tmp_path / "data" / "corrections.jsonl"])[0]["ok"]


def test_quit_then_resume_skips_every_reviewed_clip(tmp_path):
    _dictation(tmp_path)
    first, _ = _review(tmp_path, ["", "d", "q"])
    assert (first.accepted, first.discarded, first.quit, first.unreviewed) == (1, 1, True, 2)
    second, said = _review(tmp_path, ["s", "e", "push to main branch"])
    assert second.shown == 2 and said[0].startswith("2 of 4 dictated clips to review")
    assert [r["id"][-3:] for r in _rows(tmp_path)] == ["001", "004"]
    third, _ = _review(tmp_path, ["a"])  # the skipped clip stays unreviewed; nothing else comes back
    assert third.shown == 1 and third.unreviewed == 0
    assert _review(tmp_path, [])[0].shown == 0


def test_empty_edit_goes_back_and_end_of_input_quits(tmp_path):
    _dictation(tmp_path, HEARD[:1])
    summary, said = _review(tmp_path, ["e", "", "e", "   ", "x", EOFError()])
    assert (summary.quit, summary.unreviewed) == (True, 1) and not (tmp_path / "data" / "corrections.jsonl").exists()
    assert any("unknown key" in line and "'x'" in line for line in said)


def test_all_replaces_a_decision_instead_of_duplicating_it(tmp_path):
    _dictation(tmp_path, HEARD[:2])
    _review(tmp_path, ["a", "d"])
    summary, said = _review(tmp_path, ["e", "Run kubectl apply", "a"], review_all=True)
    assert summary.shown == 2 and any("reviewed before: accepted" in line for line in said)
    rows = _rows(tmp_path)
    assert [(r["id"][-3:], r["status"], r["text"]) for r in rows] == [
        ("001", "edited", "Run kubectl apply"), ("002", "accepted", "open the plan doc")]
    assert _discarded(tmp_path) == []  # accepted now: no longer discarded
    _review(tmp_path, ["d", "q"], review_all=True)
    assert [r["id"][-3:] for r in _rows(tmp_path)] == ["002"] and _discarded(tmp_path) == ["dict-20250101-120000-001"]


@pytest.mark.parametrize("line, expected", [
    ('{"id": "a", "audio": "clips/a.wav", "text": "ok"}\n{"id": "b", "audio": ', "heard.jsonl:2: invalid JSON"),
    ('\n{"id": "a", "audio": "clips/a.wav"}', "heard.jsonl:2: missing or invalid 'text'"),
    ('{"id": "", "audio": "clips/a.wav", "text": "x"}', "heard.jsonl:1: missing or empty 'id'"),
    ('["a"]', "heard.jsonl:1: line is not an object"),
    ('{"id": "a", "audio": "a.wav", "text": "x"}\n{"id": "a", "audio": "b.wav", "text": "y"}',
     "heard.jsonl:2: duplicate id 'a'"),
    ('{"id": "a", "audio": "a.wav", "text": "x", "duration": -1}', "heard.jsonl:1: invalid 'duration'"),
])
def test_a_bad_heard_line_is_one_error_naming_file_and_line(tmp_path, line, expected):
    folder = tmp_path / "data" / "dictation"
    folder.mkdir(parents=True)
    (folder / HEARD_MANIFEST).write_text(line)
    with pytest.raises(ManifestError) as e:
        _review(tmp_path, [])
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_missing_heard_file_and_missing_clip(tmp_path):
    with pytest.raises(ManifestError, match="heard.jsonl: not found"):
        _review(tmp_path, [])
    folder = _dictation(tmp_path, HEARD[:1])
    (folder / "clips" / "dict-20250101-120000-001.wav").unlink()
    summary, said = _review(tmp_path, ["a", "d"])
    assert summary.discarded == 1 and not (tmp_path / "data" / "corrections.jsonl").exists()
    assert any("heard.jsonl:1: audio file not found" in line for line in said)
    assert any("cannot be kept" in line for line in said)


def test_play_fails_with_one_line_only_when_pressed(tmp_path, monkeypatch):
    _dictation(tmp_path, HEARD[:1])
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails: not installed
    monkeypatch.setattr(shutil, "which", lambda name: None)
    summary, said = _review(tmp_path, ["p", "a"], player="auto")
    errors = [line for line in said if line.startswith("  ! ")]
    assert len(errors) == 1 and "player auto: cannot play" in errors[0] and "aplay" in errors[0]
    assert summary.accepted == 1  # the review goes on
    with pytest.raises(PlayerError, match="not found on PATH"):
        Player("no-such-player --flag")("x.wav")


def test_a_command_player_gets_the_clip_path(tmp_path):
    script = tmp_path / "player.sh"
    script.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'played.txt'}\n")
    script.chmod(0o755)
    Player(f"{script} --quiet")("clip.wav")
    assert (tmp_path / "played.txt").read_text().split() == ["--quiet", "clip.wav"]


# --- corrections are real speech ---------------------------------------------------------

def test_correction_rows_validate_as_manifest_rows():
    row = {"audio": "a.wav", "text": "kubectl", "heard": "cube control", "source": "correction",
           "status": "edited", "reviewed": "2025-01-01T12:00:00+00:00", "id": "dict-1", "duration": 1.0}
    assert field_problems(row) == []
    assert field_problems({**row, "heard": ""}) == []  # the model may have heard nothing
    assert "invalid 'status'" in field_problems({**row, "status": "maybe"})[0]
    assert is_real("correction") and is_real("real") and is_real(None) and not is_real("synthetic")


def test_corrections_are_real_in_the_epoch_and_upsampled_by_weight():
    from lora_training.config import ExperimentConfig
    from lora_training.training.collate import build_examples
    from lora_training.training.data_order import DataOrder, with_corrections

    class Audio:
        def get(self, path):
            return np.zeros(1600, np.float32)

    class Tokenizer:
        def __call__(self, text, add_special_tokens=False):
            return type("T", (), {"input_ids": [len(w) for w in text.split()]})()

    train = [Utterance(audio=f"r{i}.wav", text=f"real {i}", source="real") for i in range(4)]
    train += [Utterance(audio=f"s{i}.wav", text=f"synthetic {i}", source="synthetic") for i in range(20)]
    dev = [Utterance(audio="d.wav", text="The dev sentence.")]
    fixes = [Utterance(audio="c0.wav", text="kubectl apply", source="correction"),
             Utterance(audio="c1.wav", text="the dev sentence")]  # shares the carved dev set's sentence
    cfg = ExperimentConfig(corrections_weight=3, max_synthetic_share=0.5)
    rows = with_corrections(cfg, train, dev, fixes)
    assert [u.audio for u in rows if u.source == "correction"] == ["c0.wav"] * 3
    order = DataOrder(build_examples(rows, Audio(), Tokenizer(), 2), [], batch_size=2, replay_ratio=0, seed=1,
                      max_synthetic_share=0.5)
    keys = [e.key for batch in order.epoch(0) for e in batch]
    # 4 real + 3 correction rows are the real side; the cap lets as many synthetic rows in.
    assert keys.count("c0.wav") == 3 and sum(k.startswith("r") for k in keys) == 4
    assert sum(k.startswith("s") for k in keys) == 7 == order.synthetic_per_epoch
    assert with_corrections(cfg, train, dev, []) is train


def test_mix_counts_corrections_as_real_in_the_ratio(tmp_path):
    from lora_training.data.manifest import save_manifest
    from lora_training.data.mix import MixOptions, mix_manifests
    from lora_training.testing.factories import write_tone

    def manifest(name, n, source, freq):
        utts = [Utterance(audio=str(write_tone(tmp_path / name / f"{i}.wav", 0.5, freq=freq + 7 * i)),
                          text=f"{name} sentence {i}", source=source) for i in range(n)]
        return str(save_manifest(tmp_path / f"{name}.jsonl", utts))

    inputs = [manifest("real", 2, "real", 200), manifest("fixes", 2, "correction", 400),
              manifest("synth", 10, "synthetic", 600)]
    summary = mix_manifests(MixOptions(inputs=inputs, output=str(tmp_path / "mixed.jsonl"), ratio="real=1,synthetic=1"))
    selected = {s.source: s.selected for s in summary.sources}
    assert selected == {"real": 2, "correction": 2, "synthetic": 4}
    with pytest.raises(Exception, match="correction rows count as real"):
        mix_manifests(MixOptions(inputs=inputs, output=str(tmp_path / "m2.jsonl"), ratio="correction=1,synthetic=1"))


def test_config_round_trip_and_the_corrections_flag():
    import dataclasses

    from lora_training.cli.args import add_options
    from lora_training.config import ExperimentConfig
    from lora_training.errors import ConfigError

    cfg = ExperimentConfig(corrections_manifest="data/corrections.jsonl", corrections_weight=3)
    assert ExperimentConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    old = {k: v for k, v in cfg.to_dict().items() if not k.startswith("corrections")}
    assert ExperimentConfig.from_dict(old).corrections_manifest is None  # a config.json from before
    with pytest.raises(ConfigError, match="corrections_weight"):
        dataclasses.replace(cfg, corrections_weight=0)
    import argparse

    parser = argparse.ArgumentParser()
    add_options(parser, ExperimentConfig)
    args = parser.parse_args(["--corrections", "c.jsonl", "--corrections-weight", "4"])
    assert (args.corrections_manifest, args.corrections_weight) == ("c.jsonl", 4)


def test_corrections_command_prints_a_json_summary(tmp_path, monkeypatch, capsys):
    import argparse

    from lora_training.cli.commands import Commands
    from lora_training.cli.corrections import add_corrections_commands

    _dictation(tmp_path, HEARD[:2])
    parser = argparse.ArgumentParser()
    add_corrections_commands(Commands(parser.add_subparsers(dest="command"), "corrections"))
    args = parser.parse_args(["corrections", "--dictation-dir", str(tmp_path / "data" / "dictation"),
                              "--out", str(tmp_path / "c.jsonl"), "--json"])
    monkeypatch.setattr("builtins.input", Keys(["a", EOFError()]))
    assert args.handler(args) == 0
    out = capsys.readouterr()
    summary = json.loads(out.out)
    assert (summary["accepted"], summary["quit"], summary["unreviewed"]) == (1, True, 1)
    assert "heard: run cube control apply" in out.err


def test_wer_by_source_only_for_mixed_eval_sets():
    from lora_training.reporting.sources import wer_by_source

    def row(source, b, a, words=4):
        return {"id": f"{source}{b}", "ref": "x", "source": source, "baseline": {"errors": b, "words": words},
                "adapter": {"errors": a, "words": words}}

    result = {"utterances": [row("real", 2, 1), row("real", 1, 0), row("correction", 4, 1), row(None, 0, 0)]}
    groups = {g["source"]: g for g in wer_by_source(result)}
    assert set(groups) == {"real", "correction"}
    assert groups["real"]["n_utterances"] == 3 and groups["real"]["n_words"] == 12
    assert groups["real"]["baseline"]["wer"] == 0.25 and groups["correction"]["adapter"]["wer"] == 0.25
    assert groups["correction"]["delta"] == -0.75
    assert wer_by_source({"utterances": [row("real", 1, 0)]}) == []


# --- the loop: dictated clip → correction → training run -----------------------------------

def test_a_dictated_clip_is_corrected_and_trained_on(tmp_path, tiny_model_dir, tiny_manifests):
    """The whole loop: `dictate --file --keep` (VAD-cut utterances of a real clip, heard by the tiny
    model), `corrections` (the first fixed, the rest left for later), a run that trains on the fix."""
    pytest.importorskip("silero_vad")
    from lora_training.capture.dictate import DictateOptions, dictate
    from lora_training.config import ExperimentConfig
    from lora_training.models.embedded import beckett_wav
    from lora_training.reporting.sources import training_by_source
    from lora_training.runners.experiment import start_experiment
    from lora_training.runs import RunDir
    from lora_training.runs.state import read_state

    dictated = dictate(DictateOptions(file=str(beckett_wav()), base_model=str(tiny_model_dir), keep=True,
                                      dictation_dir=str(tmp_path / "data" / "dictation")), out=lambda line: None)
    assert len(dictated) >= 2 and all(Path(d["clip"]).is_file() for d in dictated)
    summary, _ = _review(tmp_path, ["e", "Ever tried.", "q"])
    assert summary.edited == 1
    corrections = tmp_path / "data" / "corrections.jsonl"
    train, evals = tiny_manifests
    cfg = ExperimentConfig(model_id=str(tiny_model_dir), train_manifest=str(train), eval_manifest=str(evals),
                           corrections_manifest=str(corrections), corrections_weight=2, max_steps=2,
                           eval_interval=2, log_interval=1, lr=5e-3, warmup_steps=0, batch_size=4, lora_r=4,
                           lora_alpha=8, num_threads=1, device="cpu", safety_in_loop=0, replay_ratio=0)
    info = start_experiment("fixes", cfg, outputs=tmp_path / "outputs", foreground=True, say=lambda line: None)
    assert info["phase"] == "completed"
    run = RunDir(Path(info["run_dir"]))
    log = run.log.read_text()
    assert f"corrections: 1 row(s) of {corrections}, each heard 2 times per epoch" in log
    assert "each epoch: 8 real rows" in log  # 6 left after the dev carve + the correction twice
    assert read_state(run.path)["overlap"] == {"eval": 0}
    assert run.load_config().corrections_manifest == str(corrections)
    assert training_by_source(run.load_config().to_dict(), None) == {"real": 8, "correction": 1}
