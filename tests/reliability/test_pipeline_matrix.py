"""The fault matrix for pipelines and evaluation outputs (docs/reliability.md).

Three tables: pipeline files with a problem (every one found before stage 1 runs, naming the file,
the stage and the key), pipelines over existing experiment folders (never deleted without
--overwrite, which names what it removed), and result paths that cannot be written (refused before
a model loads or a clip decodes). Each case checks the exit code, the one error line, and the
files on disk byte for byte.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from string import Template

import pytest

from lora_training.config import ExperimentConfig
from lora_training.testing.factories import make_manifest
from tests.reliability.conftest import assert_clean_error, assert_unchanged, snapshot

SPLIT = """
[[stages]]
name = "split"
kind = "split"
input = "$all"
train_out = "$train"
eval_out = "$eval"
"""
TRAIN = """
[[stages]]
name = "train"
kind = "run-experiment"
experiment = "tiny_run"
model_id = "$model"
train_manifest = "$train"
eval_manifest = "$eval"
max_steps = 2
eval_interval = 1
batch_size = 4
lora_r = 4
lora_alpha = 8
num_threads = 1
device = "cpu"
"""
WAIT = """
[[stages]]
name = "wait"
kind = "wait"
experiment = "tiny_run"
interval = 0.2
"""
# The same stage on the session's tiny manifests, for pipelines without a split stage.
TINY_TRAIN = TRAIN.replace("$train", "$tiny_train").replace("$eval", "$tiny_eval")
EVALUATE = """
[[stages]]
name = "evaluate"
kind = "evaluate"
experiment = "tiny_run"
"""


@pytest.fixture
def env(tmp_path, tiny_model_dir, tiny_manifests):
    """A data folder with a splittable manifest; `paths` fills the TOML templates."""
    make_manifest(tmp_path / "data", 6, name="all.jsonl", seconds=0.6)
    train, evals = tiny_manifests
    paths = {"all": tmp_path / "data" / "all.jsonl", "train": tmp_path / "data" / "train.jsonl",
             "eval": tmp_path / "data" / "eval.jsonl", "model": tiny_model_dir,
             "tiny_train": train, "tiny_eval": evals}
    return tmp_path, {k: str(v) for k, v in paths.items()}


def _pipeline(env, body: str) -> Path:
    root, paths = env
    path = root / "p.toml"
    path.write_text(Template(body).substitute(paths))
    return path


def _fake_run(run: Path, tiny_manifests, **state) -> Path:
    """A finished run folder (config, state, metrics, best adapter) without training one."""
    train, evals = tiny_manifests
    ExperimentConfig(model_id="nowhere/model", train_manifest=str(train), eval_manifest=str(evals),
                     max_steps=1000).save(run / "config.json")
    (run / "state.json").write_text(json.dumps({"name": run.name, "phase": "completed", "step": 1000,
                                                "max_steps": 1000, **state}))
    (run / "metrics.jsonl").write_text(
        json.dumps({"type": "train", "step": 10, "loss": 1.5, "lr": 1e-4}) + "\n"
        + json.dumps({"type": "eval", "step": 1000, "wer": 0.25, "samples": []}) + "\n")
    (run / "best_adapter").mkdir()
    (run / "best_adapter" / "adapter_config.json").write_text("{}")
    return run


# --- 1. pipeline files: every problem found before stage 1 runs -------------------------------

TOML_CASES = [
    ("typo-in-stage-2", SPLIT + TRAIN + "lr_rate = 1e-4\n", ["stage 2 (train)", "unknown key(s) lr_rate"]),
    ("name-escapes-outputs", 'name = "../../x"\n' + SPLIT, ["p.toml: name", "'../../x'"]),
    ("experiment-name-with-slash", SPLIT + TRAIN.replace('"tiny_run"', '"runs/tiny"'),
     ["stage 2 (train)", "experiment name", "'runs/tiny'"]),
    ("skip_if_exists-a-string", SPLIT + 'skip_if_exists = "file"\n', ["stage 1 (split)", "skip_if_exists", "'file'"]),
    ("stages-a-string", 'stages = "abc"\n', ["p.toml: stages", "got str 'abc'"]),
    ("stages-not-tables", "stages = [1, 2]\n", ["p.toml: stages", "[[stages]] tables"]),
    ("stages-missing", 'name = "p"\n', ["p.toml: stages", "at least one [[stages]] table"]),
    ("name-not-a-string", "name = 5\n" + SPLIT, ["p.toml: name", "expected a string, got int 5"]),
    ("unknown-kind", SPLIT + '[[stages]]\nname = "jump"\nkind = "teleport"\n',
     ["stage 2 (jump)", "kind", "'teleport'"]),
    ("duplicate-stage-names", SPLIT + SPLIT, ["stage 2 (split)", "duplicate stage name 'split'"]),
    ("missing-required-key", SPLIT + '[[stages]]\nname = "wait"\nkind = "wait"\n',
     ["stage 2 (wait)", "missing key(s) experiment"]),
    ("string-for-int", SPLIT + TRAIN.replace("max_steps = 2", 'max_steps = "1000"'),
     ["stage 2 (train)", "max_steps: expected int, got str '1000'"]),
    ("string-for-list", SPLIT + '[[stages]]\nname = "mix"\nkind = "mix"\ninputs = "$train"\n',
     ["stage 2 (mix)", "inputs: expected list[str], got str"]),
    ("bool-for-number", SPLIT + WAIT.replace("interval = 0.2", "interval = true"),
     ["stage 2 (wait)", "interval: expected float, got bool True"]),
    ("out-of-range-value", SPLIT + TRAIN + "lr = 5.0\n", ["stage 2 (train)", "lr: expected a number in (0, 1)"]),
    ("evaluate-bad-override", SPLIT + EVALUATE + "batch_size = 0\n", ["stage 2 (evaluate)", "batch_size"]),
    ("evaluate-key-the-run-decides", SPLIT + EVALUATE + 'manifest = "x.jsonl"\n',
     ["stage 2 (evaluate)", "unknown key(s) manifest"]),
    ("every-problem-at-once", SPLIT + TRAIN + "lr_rate = 1e-4\n" + '[[stages]]\nname = "wait"\nkind = "wait"\n',
     ["stage 2 (train)", "lr_rate", "stage 3 (wait)", "missing key(s) experiment"]),
]


@pytest.mark.parametrize("body, needles", [c[1:] for c in TOML_CASES], ids=[c[0] for c in TOML_CASES])
def test_pipeline_file_problem_is_found_before_anything_runs(cli, env, body, needles):
    root, paths = env
    config = _pipeline(env, body)
    before = snapshot(root)
    outcome = cli("pipeline", "--config", config, "--outputs", root / "out")
    assert_clean_error(outcome, str(config), *needles)
    assert_unchanged(root, before)  # stage 1 (split) wrote nothing, no state, nothing outside --outputs
    assert not Path(paths["train"]).exists()


# --- 2. existing experiment folders: never deleted without --overwrite -------------------------

def test_rerun_without_resume_keeps_a_finished_run(cli, env, tiny_manifests):
    root, _ = env
    run = _fake_run(root / "out" / "tiny_run", tiny_manifests)
    config = _pipeline(env, SPLIT + TRAIN)
    before = snapshot(root)
    outcome = cli("pipeline", "--config", config, "--outputs", root / "out")
    assert_clean_error(outcome, str(run), "phase completed", "--resume", "--overwrite")
    assert_unchanged(root, before)  # the run byte for byte, and stage 1 never ran


@pytest.mark.parametrize("flags, state, code, needles", [
    (["--resume", "--overwrite"], {}, 1, ["--resume, --overwrite", "at most one"]),
    (["--overwrite"], {"phase": "running", "pid": os.getpid()}, 1, ["halted at stage train", "already running"]),
    (["--resume"], {}, 0, []),
], ids=["resume-and-overwrite", "overwrite-refuses-a-live-run", "resume-keeps-a-finished-run"])
def test_existing_run_is_kept(cli, env, tiny_manifests, flags, state, code, needles):
    root, _ = env
    run = _fake_run(root / "out" / "tiny_run", tiny_manifests, **state)
    before = snapshot(run)
    outcome = cli("pipeline", "--config", _pipeline(env, TINY_TRAIN), "--outputs", root / "out", *flags)
    if code:
        assert_clean_error(outcome, *needles, code=code)
    else:
        assert outcome.code == 0, outcome.err
    assert_unchanged(run, before)


def test_overwrite_says_what_it_removed(cli, env, tiny_manifests):
    root, paths = env
    run = _fake_run(root / "out" / "tiny_run", tiny_manifests)
    outcome = cli("pipeline", "--config", _pipeline(env, TINY_TRAIN + WAIT), "--outputs", root / "out", "--overwrite")
    assert outcome.code == 0, outcome.err
    assert any("removed" in line and str(run) in line and "phase completed" in line
               for line in outcome.out.splitlines()), outcome.out
    state = json.loads((run / "state.json").read_text())
    assert state["phase"] == "completed" and state["step"] == 2 and state["max_steps"] == 2


# --- 3. result paths: refused before a model loads or a clip decodes --------------------------

@pytest.fixture
def no_work(monkeypatch):
    """Loading a model or decoding a clip fails the test: an output problem must be found first."""
    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the output path was checked")

    monkeypatch.setattr("lora_training.models.registry.resolve_model", forbidden)
    monkeypatch.setattr("lora_training.data.audio.load_audio", forbidden)


def _unwritable(monkeypatch, folder: Path) -> None:
    """`folder` behaves as read-only (chmod does not bind root): creating a file in it fails."""
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve() == folder.resolve():
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


OUTPUT_CASES = [
    # (id, command, fault, phrase of the error)
    ("transcribe-into-a-folder", "transcribe", "folder", "got a folder"),
    ("transcribe-under-a-file", "transcribe", "under-file", "got a file"),
    ("transcribe-unwritable-folder", "transcribe", "unwritable", "Permission denied"),
    ("transcribe-over-its-manifest", "transcribe", "input", "same file as manifest"),
    ("evaluate-results-a-folder", "evaluate", "folder", "got a folder"),
    ("evaluate-run-folder-unwritable", "evaluate", "unwritable", "Permission denied"),
    ("report-into-a-folder", "report", "folder", "got a folder"),
    ("report-run-folder-unwritable", "report", "unwritable", "Permission denied"),
]


@pytest.mark.parametrize("command, fault, phrase", [c[1:] for c in OUTPUT_CASES], ids=[c[0] for c in OUTPUT_CASES])
def test_unwritable_output_fails_before_any_work(cli, tmp_path, tiny_manifests, monkeypatch, no_work,
                                                 command, fault, phrase):
    manifest = make_manifest(tmp_path / "data", 2, seconds=0.6)
    run = _fake_run(tmp_path / "out" / "tiny_run", tiny_manifests)
    output = {"transcribe": tmp_path / "results" / "r.json", "evaluate": run / "eval_results.json",
              "report": run / "report.md"}[command]
    if fault in ("folder", "unwritable"):
        (output if fault == "folder" else output.parent).mkdir(parents=True, exist_ok=True)
    elif fault == "under-file":
        (tmp_path / "results").write_text("a file where a folder belongs\n")
    elif fault == "input":
        output = manifest
    argv = {"transcribe": ["transcribe", "--model-id", "nowhere/model", "--manifest", manifest, "--output", output,
                           "--no-progress"],
            "evaluate": ["evaluate", "tiny_run", "--outputs", tmp_path / "out", "--no-progress"],
            "report": ["report", "tiny_run", "--outputs", tmp_path / "out"]}[command]
    before = snapshot(tmp_path)
    if fault == "unwritable":
        _unwritable(monkeypatch, output.parent)
    outcome = cli(*argv)
    assert_clean_error(outcome, str(output), phrase)
    assert len(outcome.err.strip().splitlines()) == 1
    assert_unchanged(tmp_path, before)  # no result, no report.md, no loss.png
