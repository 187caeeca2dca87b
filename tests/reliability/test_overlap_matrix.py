"""Leak matrix: a held-out sentence or clip that would train is refused by `mix --exclude` and by
`run-experiment` before anything is written or spawned; `--allow-overlap` goes on and counts it.

Each LEAKS row plants one leak in an otherwise disjoint eval manifest: the same sentence written
differently, the same wav under another name, the same samples re-encoded. Every refusal is one
`error:` line naming the training row's file:line, why, the held-out row and the way out.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import soundfile as sf

from lora_training.config import ExperimentConfig
from lora_training.data.manifest import load_manifest, save_manifest
from lora_training.runs.state import read_state
from lora_training.testing.factories import make_manifest
from tests.reliability.conftest import assert_clean_error, assert_unchanged, snapshot

TRAIN_TEXTS = ["run kubectl apply", "restart nginx now", "email dev@example.com", "open the logs"]
EVAL_TEXTS = ["apply it with kubectl", "our WER went up"]


def _same_text(train: Path, held: Path, rows) -> None:
    rows[1] = replace(rows[1], text="Restart NGINX now!")  # train line 2, as the metrics normalise it


def _renamed_wav(train: Path, held: Path, rows) -> None:
    copy = held.parent / "audio" / "renamed.wav"
    shutil.copyfile(load_manifest(train)[2].audio, copy)  # train line 3
    rows[0] = replace(rows[0], audio=str(copy))


def _re_encoded(train: Path, held: Path, rows) -> None:
    samples, rate = sf.read(load_manifest(train)[3].audio, dtype="float32")  # train line 4
    flac = held.parent / "audio" / "re-encoded.flac"
    sf.write(str(flac), samples, rate)
    rows[1] = replace(rows[1], audio=str(flac))


# id, planter, training line, why, held-out line
LEAKS = [
    ("same_text", _same_text, 2, "same text", 2),
    ("same_wav_renamed", _renamed_wav, 3, "same audio", 1),
    ("same_samples_flac", _re_encoded, 4, "same audio", 2),
]


def _leaky(tmp_path: Path, plant=None) -> tuple[Path, Path]:
    """train.jsonl and eval.jsonl sharing nothing, then `plant`'s one leak in eval.jsonl."""
    train = make_manifest(tmp_path / "data" / "train", 4, texts=TRAIN_TEXTS, name="train.jsonl", seconds=0.6)
    held = make_manifest(tmp_path / "data" / "eval", 2, texts=EVAL_TEXTS, name="eval.jsonl", seconds=0.6,
                         base_freq=700.0)
    if plant is not None:
        rows = load_manifest(held)
        plant(train, held, rows)
        save_manifest(held, rows)
    return train, held


def _one_line(outcome) -> None:
    assert len([line for line in outcome.err.splitlines() if line.strip()]) == 1, outcome.err


@pytest.fixture
def no_spawn(monkeypatch):
    """run-experiment must refuse before it starts a process: starting one fails the test."""
    def spawn(*args, **kwargs):
        raise AssertionError(f"spawned {args[0]!r} despite the leak")
    monkeypatch.setattr(subprocess, "Popen", spawn)


# --- mix --exclude -----------------------------------------------------------------------

@pytest.mark.parametrize("case, plant, line, why, held_line", LEAKS, ids=[c[0] for c in LEAKS])
def test_mix_refuses_a_leak_and_writes_nothing(cli, tmp_path, case, plant, line, why, held_line):
    train, held = _leaky(tmp_path, plant)
    before = snapshot(tmp_path)
    outcome = cli("mix", train, "--exclude", held, "--output", tmp_path / "mixed.jsonl")
    assert_clean_error(outcome, "inputs: 1 training row(s)", f"{train}:{line} {why} as {held}:{held_line}",
                       "--allow-overlap")
    _one_line(outcome)
    assert_unchanged(tmp_path, before)


@pytest.mark.parametrize("case, plant, line, why, held_line", LEAKS, ids=[c[0] for c in LEAKS])
def test_mix_with_allow_overlap_goes_on_and_counts(cli, tmp_path, case, plant, line, why, held_line):
    train, held = _leaky(tmp_path, plant)
    outcome = cli("mix", train, "--exclude", held, "--output", tmp_path / "mixed.jsonl", "--allow-overlap", "--json")
    assert outcome.code == 0, outcome.err
    summary = json.loads(outcome.out)
    assert summary["overlap"] == 1 and summary["exclude"] == [str(held)]
    assert summary["overlap_examples"] == f"{train}:{line} {why} as {held}:{held_line}"
    assert len(load_manifest(tmp_path / "mixed.jsonl")) == 4


def test_mix_without_a_leak_says_so(cli, tmp_path):
    train, held = _leaky(tmp_path)
    outcome = cli("mix", train, "--exclude", held, "--output", tmp_path / "mixed.jsonl")
    assert outcome.code == 0, outcome.err
    assert f"overlap with {held}: none" in outcome.out


def test_mix_refuses_an_output_over_an_excluded_manifest(cli, tmp_path):
    train, held = _leaky(tmp_path)
    before = snapshot(tmp_path)
    outcome = cli("mix", train, "--exclude", held, "--output", held)
    assert_clean_error(outcome, "output:", "same file as exclude[0]")
    assert_unchanged(tmp_path, before)


# --- run-experiment ----------------------------------------------------------------------

def _run_args(tmp_path, model, train, held, *extra):
    return ("run-experiment", "leaky", "--outputs", tmp_path / "out", "--model-id", model, "--train-manifest", train,
            "--eval-manifest", held, "--batch-size", "2", "--device", "cpu", *extra)


@pytest.mark.parametrize("case, plant, line, why, held_line", LEAKS, ids=[c[0] for c in LEAKS])
def test_run_experiment_refuses_a_leak_before_spawning(cli, tmp_path, tiny_model_dir, no_spawn,
                                                       case, plant, line, why, held_line):
    train, held = _leaky(tmp_path, plant)
    before = snapshot(tmp_path / "data")
    outcome = cli(*_run_args(tmp_path, tiny_model_dir, train, held))
    assert_clean_error(outcome, "train/eval overlap: 1 training row(s)", str(held),
                       f"{train}:{line} {why} as {held}:{held_line}", "--allow-overlap")
    _one_line(outcome)
    assert_unchanged(tmp_path / "data", before)
    assert not (tmp_path / "out" / "leaky").exists()


def test_run_experiment_checks_the_replay_manifest_too(cli, tmp_path, tiny_model_dir, no_spawn):
    train, held = _leaky(tmp_path)
    replay = make_manifest(tmp_path / "replay", 2, texts=["a general sentence", "Our WER went up."],
                           name="replay.jsonl", seconds=0.6, base_freq=1500.0)
    outcome = cli(*_run_args(tmp_path, tiny_model_dir, train, held, "--replay-manifest", replay,
                             "--replay-ratio", "0.5"))
    assert_clean_error(outcome, "train/eval overlap", f"{replay}:2 same text as {held}:2")
    assert not (tmp_path / "out" / "leaky").exists()


@pytest.mark.skipif("dev_manifest" not in ExperimentConfig.__dataclass_fields__, reason="no dev set in this config")
def test_run_experiment_checks_the_dev_manifest(cli, tmp_path, tiny_model_dir, no_spawn):
    train, held = _leaky(tmp_path)
    dev = make_manifest(tmp_path / "dev", 2, texts=["open the logs", "a dev sentence"], name="dev.jsonl",
                        seconds=0.6, base_freq=1500.0)
    outcome = cli(*_run_args(tmp_path, tiny_model_dir, train, held, "--dev-manifest", dev))
    assert_clean_error(outcome, "train/dev overlap", f"{train}:4 same text as {dev}:1")
    assert not (tmp_path / "out" / "leaky").exists()


def test_allow_overlap_runs_and_the_run_records_the_count(cli, tmp_path, tiny_model_dir):
    from lora_training.reporting.report import write_report

    train, held = _leaky(tmp_path, _same_text)
    outcome = cli(*_run_args(tmp_path, tiny_model_dir, train, held, "--allow-overlap", "--foreground",
                             "--max-steps", "1", "--eval-interval", "1", "--lora-r", "4", "--lora-alpha", "8",
                             "--num-threads", "1"))
    assert outcome.code == 0, outcome.err[-2000:]
    run = tmp_path / "out" / "leaky"
    assert read_state(run)["overlap"] == {"eval": 1}
    assert json.loads((run / "config.json").read_text())["allow_overlap"] is True
    assert "train/eval overlap: 1 rows" in write_report(run).read_text()


def test_a_clean_run_records_zero_overlap(cli, tmp_path, tiny_model_dir, no_spawn):
    train, held = _leaky(tmp_path)
    outcome = cli(*_run_args(tmp_path, tiny_model_dir, train, held))
    assert "AssertionError: spawned" in outcome.err  # past every check: the spawn is the first work
    assert read_state(tmp_path / "out" / "leaky")["overlap"] == {"eval": 0}
