"""Run-folder safety matrix (issue cases 2, 7, 8, 10, 12, 13, 16, 17, 19), on the tiny model.

Each table row breaks one thing a user or the machine can break: a hand-edited config.json, a
damaged state.json, damaged checkpoints, a full disk, two starts at once, a stale lock, bad inputs,
a vanished folder, a crash. Each asserts the exit code, an error that names the culprit, no
traceback, and the files on disk unchanged (refusals) or complete (runs). One uninterrupted
reference run (module scope) is the yardstick: resumed and fallen-back runs must match it bit
for bit.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lora_training.config import ExperimentConfig
from lora_training.errors import LoraTrainingError
from lora_training.runs import RunDir
from lora_training.runs.state import read_state
from lora_training.testing.factories import make_manifest, write_tone
from tests.reliability.conftest import Outcome, assert_clean_error, assert_unchanged, snapshot

STEPS = 40  # checkpoints every 2 steps (step_000038 and step_000040 are kept), evals every 10
RUN = dict(max_steps=STEPS, eval_interval=10, checkpoint_interval=2, log_interval=1, lr=5e-3, warmup_steps=0,
           batch_size=4, lora_r=4, lora_alpha=8, lora_dropout=0.1, num_threads=1, device="cpu")


def _cfg(tiny_model_dir, tiny_manifests, **kw) -> ExperimentConfig:
    train, evals = tiny_manifests
    return ExperimentConfig(model_id=str(tiny_model_dir), train_manifest=str(train), eval_manifest=str(evals),
                            **{**RUN, **kw})


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tiny_manifests, tmp_path_factory) -> RunDir:
    """One uninterrupted run, trained in this process."""
    from lora_training.training.trainer import Trainer

    run = RunDir(tmp_path_factory.mktemp("reference") / "ref")
    run.path.mkdir()
    cfg = _cfg(tiny_model_dir, tiny_manifests)
    cfg.save(run.config)
    assert Trainer(cfg, run.path).run() == "completed"
    return run


@pytest.fixture(autouse=True)
def _restore_logging():
    """Foreground runs point the root logger at this test's stdout and log file; undo it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:], root.level = handlers, level


def _copy(reference: RunDir, tmp_path: Path, name: str, phase: str | None = None) -> RunDir:
    run = RunDir(tmp_path / name)
    shutil.copytree(reference.path, run.path)
    if phase:
        _write_state(run, {**read_state(run.path), "phase": phase})
    return run


def _write_state(run: RunDir, state) -> None:
    run.state_file.write_text(state if isinstance(state, str) else json.dumps(state), encoding="utf-8")


def _adapter(run: RunDir) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run.adapter / "adapter_model.safetensors"))


def _assert_same_adapter(a: RunDir, b: RunDir) -> None:
    import torch

    x, y = _adapter(a), _adapter(b)
    assert x.keys() == y.keys()
    assert all(torch.equal(x[k], y[k]) for k in x), "adapters differ"


def _rows(run: RunDir) -> list[tuple[str, int]]:
    return [(r["type"], r["step"]) for r in run.read_metrics()]


def _assert_failed_run(outcome: Outcome, run: RunDir, *needles: str) -> None:
    """A run that started and failed: exit 1, its state names the culprit, no traceback anywhere."""
    assert outcome.code == 1, (outcome.out[-2000:], outcome.err[-2000:])
    state = read_state(run.path)
    assert state["phase"] == "failed", state
    for needle in needles:
        assert needle in state["error"], (needle, state["error"])
    assert ".tmp" not in state["error"], state["error"]
    text = outcome.out + outcome.err + run.log.read_text(encoding="utf-8")
    assert "Traceback" not in text, text[-3000:]


# --- 13: a hand-edited config.json ------------------------------------------------------

CONFIG_CASES = [
    ("dropout_string", {"lora_dropout": "0.1"}, ["lora_dropout", "'0.1'"]),
    ("weight_decay_null", {"weight_decay": None}, ["weight_decay", "got None"]),
    ("max_steps_bool", {"max_steps": True}, ["max_steps", "an integer, got True"]),
    ("target_modules_string", {"target_modules": "q_proj"}, ["target_modules", "a list of strings"]),
    ("target_modules_mixed", {"target_modules": ["q_proj", 3]}, ["target_modules", "a list of strings"]),
    ("model_id_number", {"model_id": 123}, ["model_id", "a string, got 123"]),
    ("lr_string", {"lr": "3e-4"}, ["lr", "'3e-4'"]),
    ("batch_size_float", {"batch_size": 4.0}, ["batch_size", "an integer, got 4.0"]),
    ("use_dora_string", {"use_dora": "yes"}, ["use_dora", "true or false"]),
    ("replay_manifest_number", {"replay_manifest": 5}, ["replay_manifest", "a string or null"]),
    ("seed_null", {"seed": None}, ["seed", "an integer, got None"]),
    ("eval_interval_negative", {"eval_interval": -1}, ["eval_interval", "a positive integer"]),
    ("two_fields_together", {"lora_dropout": "0.1", "max_steps": True}, ["lora_dropout", "max_steps"]),
    ("unknown_key", {"learning_rate": 0.1}, ["unknown key", "learning_rate"]),
    ("truncated_json", '{"max_steps": 5, "lr"', ["config.json:1", "invalid JSON"]),
    ("json_list", "[]", ["expected a JSON object, got list"]),
]


@pytest.mark.parametrize("case, change, needles", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_json_is_refused_naming_file_and_field(cli, tmp_path, tiny_model_dir, tiny_manifests,
                                                          case, change, needles):
    run = RunDir(tmp_path / "edited")
    run.path.mkdir()
    text = change if isinstance(change, str) else json.dumps({**_cfg(tiny_model_dir, tiny_manifests).to_dict(), **change})
    run.config.write_text(text, encoding="utf-8")
    _write_state(run, {"phase": "stopped", "step": 4})
    before = snapshot(run.path)
    outcome = cli("run-experiment", "edited", "--outputs", tmp_path, "--resume")
    assert_clean_error(outcome, str(run.config), *needles)
    assert_unchanged(run.path, before)


# --- 7, 16: a damaged state.json --------------------------------------------------------

STATES = [
    ("empty", "", ["empty run state"]),
    ("truncated", '{"phase": "runn', ["state.json:1", "invalid JSON"]),
    ("list", "[]", ["a JSON list"]),
    ("unknown_phase", '{"phase": "paused", "step": 3}', ["phase", "'paused'"]),
    ("pid_text", '{"phase": "running", "pid": "abc"}', ["pid", "'abc'"]),
]
COMMANDS = ["status_one", "status_all", "poll", "stop"]
STATE_CASES = [(s, c) for s in STATES for c in COMMANDS]


@pytest.mark.parametrize("bad, command", STATE_CASES, ids=[f"{s[0]}-{c}" for s, c in STATE_CASES])
def test_damaged_state_names_the_file_and_spares_other_runs(cli, tmp_path, bad, command):
    _, text, needles = bad
    good, broken = RunDir(tmp_path / "good"), RunDir(tmp_path / "broken")
    good.path.mkdir()
    broken.path.mkdir()
    _write_state(good, {"phase": "completed", "step": 6, "max_steps": 6})
    _write_state(broken, text)
    before = snapshot(tmp_path)
    if command == "status_all":
        outcome = cli("status", "--outputs", tmp_path)
        assert outcome.code == 0, outcome.err
        lines = outcome.out.splitlines()
        assert any(line.startswith("good") and "completed" in line for line in lines), outcome.out
        row = next(i for i, line in enumerate(lines) if line.startswith("broken"))
        assert "unreadable" in lines[row] and str(broken.state_file) in lines[row + 1], outcome.out
        assert all(n in lines[row + 1] for n in needles), outcome.out
    else:
        args = {"status_one": ["status", "broken"], "poll": ["poll", "broken"], "stop": ["stop", "broken"]}[command]
        assert_clean_error(cli(*args, "--outputs", tmp_path), str(broken.state_file), *needles)
    assert_unchanged(tmp_path, before)


@pytest.mark.parametrize("text", ['{"phase": "runn', "[]"], ids=["truncated", "list"])
def test_overwrite_replaces_a_run_with_damaged_state_and_says_what_it_removed(cli, tmp_path, tiny_model_dir,
                                                                             tiny_manifests, text):
    train, evals = tiny_manifests
    run = RunDir(tmp_path / "again")
    run.path.mkdir()
    _write_state(run, text)
    (run.path / "notes.txt").write_text("old")
    outcome = cli("run-experiment", "again", "--outputs", tmp_path, "--overwrite", "--foreground",
                  "--model-id", tiny_model_dir, "--train-manifest", train, "--eval-manifest", evals,
                  "--max-steps", "1", "--eval-interval", "1", "--batch-size", "4", "--lora-r", "4",
                  "--num-threads", "1", "--device", "cpu")
    assert outcome.code == 0, outcome.err[-2000:]
    assert f"removed {run.path} (phase unreadable; 2 file(s): notes.txt, state.json)" in outcome.out
    assert read_state(run.path)["phase"] == "completed" and not (run.path / "notes.txt").exists()


def test_poll_ends_with_an_error_when_the_run_folder_vanishes(cli, tmp_path, monkeypatch):
    import psutil

    run = RunDir(tmp_path / "vanishing")
    run.path.mkdir()
    me = psutil.Process()
    _write_state(run, {"phase": "running", "pid": me.pid, "pid_started": me.create_time(), "step": 1})
    real_sleep = time.sleep

    def delete_then_sleep(seconds):
        shutil.rmtree(run.path, ignore_errors=True)
        real_sleep(0)

    monkeypatch.setattr(time, "sleep", delete_then_sleep)
    assert_clean_error(cli("poll", "vanishing", "--outputs", tmp_path), str(run.path), "state.json")


def test_stop_of_a_queued_run_without_pid_says_so(cli, tmp_path):
    run = RunDir(tmp_path / "queued")
    run.path.mkdir()
    _write_state(run, {"phase": "queued", "pid": None, "updated_at": time.time()})
    before = snapshot(run.path)
    assert_clean_error(cli("stop", "queued", "--outputs", tmp_path), str(run.state_file), "pid")
    assert_unchanged(run.path, before)


# --- 8: damaged checkpoints on resume ---------------------------------------------------

def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


CHECKPOINT_CASES = [
    ("truncated_adapter", lambda c: _truncate(c / "step_000040" / "adapter.safetensors"), "step_000040/adapter.safetensors"),
    ("missing_optimizer_json", lambda c: (c / "step_000040" / "optimizer.json").unlink(), "step_000040/optimizer.json"),
    ("missing_trainer_state", lambda c: (c / "step_000040" / "trainer_state.json").unlink(),
     "step_000040/trainer_state.json"),
    ("empty_rng", lambda c: (c / "step_000040" / "rng.safetensors").write_bytes(b""), "step_000040/rng.safetensors"),
]


@pytest.mark.parametrize("case, damage, culprit", CHECKPOINT_CASES, ids=[c[0] for c in CHECKPOINT_CASES])
def test_damaged_newest_checkpoint_is_named_and_the_previous_one_used(cli, tmp_path, reference, case, damage, culprit):
    run = _copy(reference, tmp_path, "fallback", phase="crashed")
    damage(run.checkpoints)
    outcome = cli("run-experiment", "fallback", "--outputs", tmp_path, "--resume", "--foreground")
    assert outcome.code == 0, outcome.out[-3000:]
    log = run.log.read_text(encoding="utf-8")
    assert culprit in log and "resumed from step_000038" in log and "Traceback" not in log, log[-3000:]
    _assert_same_adapter(run, reference)
    assert _rows(run) == _rows(reference)


def test_no_loadable_checkpoint_fails_naming_the_files(cli, tmp_path, reference):
    run = _copy(reference, tmp_path, "hopeless", phase="crashed")
    for step in ("step_000038", "step_000040"):
        _truncate(run.checkpoints / step / "adapter.safetensors")
    before = snapshot(run.checkpoints)
    outcome = cli("run-experiment", "hopeless", "--outputs", tmp_path, "--resume", "--foreground")
    _assert_failed_run(outcome, run, "step_000038/adapter.safetensors", "step_000040/adapter.safetensors")
    assert read_state(run.path)["step"] == STEPS  # the checkpoint it tried, not 0
    assert_unchanged(run.checkpoints, before)


# --- 12: a full disk while checkpointing ------------------------------------------------

def _enospc(*args, **kwargs):
    target = next(a for a in args if isinstance(a, (str, Path)))  # the file being written, in staging
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))


@pytest.mark.parametrize("target", ["save_file", "atomic_write_json"])
def test_full_disk_during_checkpoint_names_it_and_leaves_no_staging(cli, tmp_path, reference, monkeypatch, target):
    import lora_training.training.checkpoints as checkpoints

    run = _copy(reference, tmp_path, "full", phase="crashed")
    shutil.rmtree(run.checkpoints / "step_000040")
    monkeypatch.setattr(checkpoints, target, _enospc)
    outcome = cli("run-experiment", "full", "--outputs", tmp_path, "--resume", "--foreground")
    _assert_failed_run(outcome, run, str(run.checkpoints / "step_000040"), "No space left on device")
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["step_000038"]  # no hidden staging left


# --- 2: two starts at once, and the lock --------------------------------------------------

def test_simultaneous_starts_launch_exactly_one_trainer(tmp_path, tiny_model_dir, tiny_manifests):
    from lora_training.runners.experiment import poll, start_experiment

    cfg = _cfg(tiny_model_dir, tiny_manifests, max_steps=2, eval_interval=2)
    gate = threading.Barrier(6)
    started, refused = [], []

    def start():
        gate.wait()
        try:
            started.append(start_experiment("race", cfg, outputs=tmp_path))
        except LoraTrainingError as e:
            refused.append(str(e))

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(started) == 1 and len(refused) == 5, (started, refused)
    assert all("\n" not in e and "race: already running" in e and ".race.lock" in e for e in refused), refused
    assert poll("race", outputs=tmp_path, write=lambda _: None, interval=0.1) == 0
    run = RunDir(tmp_path / "race")
    assert read_state(run.path)["pid"] == started[0]["pid"]
    rows = _rows(run)
    assert rows == [("eval", 0), ("test", 0), ("train", 1), ("train", 2), ("eval", 2), ("test", 2)], rows


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


LOCK_CASES = [
    ("dead_pid", lambda: _dead_pid(), lambda pid: None),
    ("recycled_pid", lambda: os.getpid(), lambda pid: 1.0),  # alive, but started long after "1.0"
]


@pytest.mark.parametrize("case, holder, started", LOCK_CASES, ids=[c[0] for c in LOCK_CASES])
def test_stale_lock_of_a_crashed_run_is_taken_over(cli, tmp_path, reference, case, holder, started):
    run = _copy(reference, tmp_path, "stale")
    pid = holder()
    run.lock.write_text(f"{pid}\n")
    _write_state(run, {**read_state(run.path), "phase": "running", "pid": pid, "pid_started": started(pid)})
    outcome = cli("run-experiment", "stale", "--outputs", tmp_path, "--resume", "--foreground")
    assert outcome.code == 0, outcome.out[-2000:] + outcome.err[-2000:]
    assert read_state(run.path)["phase"] == "completed"


def test_held_lock_refuses_a_start_and_touches_nothing(cli, tmp_path, reference):
    from lora_training.runs.lock import RunLock

    run = _copy(reference, tmp_path, "held")
    _write_state(run, {**read_state(run.path), "pid": _dead_pid()})  # finished by another process
    before = snapshot(run.path)
    with RunLock.acquire(run):  # another process's start in progress
        outcome = cli("run-experiment", "held", "--outputs", tmp_path, "--overwrite")
    assert_clean_error(outcome, "held: already running", str(run.lock), str(os.getpid()))
    assert_unchanged(run.path, before)


# --- 10, 17: bad inputs are all found before anything is spawned ----------------------

def _break_clip(manifest: Path, index: int, how: str) -> str:
    clip = manifest.parent / "audio" / f"utt_{index:04d}.wav"
    if how == "corrupt":
        clip.write_bytes(b"RIFF\x00\x01garbage" * 8)
    elif how == "empty":
        clip.write_bytes(b"")
    else:
        write_tone(clip, seconds=45.0)
    return clip.name


PREFLIGHT_CASES = [
    ("corrupt_wav", ["corrupt"], False, False, 4),
    ("empty_wav", ["empty"], False, False, 4),
    ("long_wav", ["long"], False, False, 4),
    ("missing_vocabulary", [], True, False, 4),
    ("missing_model_folder", [], False, True, 4),
    ("batch_larger_than_data", [], False, False, 64),
    ("all_at_once", ["corrupt", "empty", "long"], True, True, 4),
]


@pytest.mark.parametrize("case, clips, no_vocabulary, no_model, batch", PREFLIGHT_CASES,
                         ids=[c[0] for c in PREFLIGHT_CASES])
def test_inputs_are_checked_before_spawning_and_reported_together(cli, tmp_path, tiny_model_dir, tiny_manifests,
                                                                  case, clips, no_vocabulary, no_model, batch):
    train = make_manifest(tmp_path / "data", 8, name="train.jsonl", seconds=0.6)
    needles = [_break_clip(train, i, how) for i, how in enumerate(clips)]
    if clips:
        needles.append(str(train))
    if "long" in clips:
        needles.append("45.00 s")
    vocabulary = tmp_path / "vocabulary.txt"
    if no_vocabulary:
        needles.append(str(vocabulary))
    else:
        vocabulary.write_text("kubectl | cube control\n")
    model = tmp_path / "no_model" if no_model else tiny_model_dir
    if no_model:
        needles += [str(model), "folder not found"]
    if batch > 8:
        needles += ["batch_size", "at most the 8 utterances", "got 64"]
    outcome = cli("run-experiment", "checked", "--outputs", tmp_path / "out", "--model-id", model,
                  "--train-manifest", train, "--eval-manifest", tiny_manifests[1], "--vocabulary", vocabulary,
                  "--batch-size", batch, "--device", "cpu", "--max-steps", "2")
    assert_clean_error(outcome, *needles)
    assert not (tmp_path / "out" / "checked").exists()
    if case == "all_at_once":
        assert outcome.err.startswith("error: checked: 5 problems")


# --- 19: a crash between checkpoints -------------------------------------------------

def test_resume_after_crash_logs_each_row_once(cli, tmp_path, reference):
    run = _copy(reference, tmp_path, "crashed", phase="crashed")
    shutil.rmtree(run.checkpoints / "step_000040")  # the crash came just before the last checkpoint
    with run.metrics.open("a", encoding="utf-8") as f:
        f.write('{"type": "train", "step": 41, "lo')  # and tore the line it was writing
    outcome = cli("run-experiment", "crashed", "--outputs", tmp_path, "--resume", "--foreground")
    assert outcome.code == 0, outcome.out[-2000:]
    assert _rows(run) == _rows(reference)
    _assert_same_adapter(run, reference)


def test_failed_resume_keeps_the_checkpoint_step(cli, tmp_path, reference, monkeypatch):
    import lora_training.models.registry as registry

    def unavailable(*args, **kwargs):
        raise LoraTrainingError("model: simulated load failure, expected a model, got none")

    run = _copy(reference, tmp_path, "unlucky", phase="crashed")
    monkeypatch.setattr(registry, "resolve_model", unavailable)
    outcome = cli("run-experiment", "unlucky", "--outputs", tmp_path, "--resume", "--foreground")
    _assert_failed_run(outcome, run, "simulated load failure")
    assert read_state(run.path)["step"] == STEPS


# --- kill -9 after the first checkpoint, then --resume: bit-identical ---------------------

def test_kill_9_then_resume_matches_the_uninterrupted_run(tmp_path, reference, tiny_model_dir, tiny_manifests):
    from lora_training.runners.experiment import effective_state, poll, start_experiment

    kill_at = random.Random(20240607).randint(3, STEPS // 2)  # after the first checkpoint (step 2)
    cfg = _cfg(tiny_model_dir, tiny_manifests)
    start_experiment("killed", cfg, outputs=tmp_path)
    run = RunDir(tmp_path / "killed")
    deadline = time.time() + 120
    while (read_state(run.path) or {}).get("step", 0) < kill_at:
        assert time.time() < deadline, "the run never reached the kill step"
        time.sleep(0.005)
    os.kill(read_state(run.path)["pid"], 9)
    while effective_state(run.path)["phase"] != "crashed":
        assert time.time() < deadline, "the killed run is not reported crashed"
        time.sleep(0.01)
    killed_at = read_state(run.path)["step"]
    assert kill_at <= killed_at < STEPS, (kill_at, killed_at)
    start_experiment("killed", None, outputs=tmp_path, resume=True)
    assert poll("killed", outputs=tmp_path, write=lambda _: None, interval=0.1) == 0
    assert "resumed from step_" in run.log.read_text(encoding="utf-8")
    _assert_same_adapter(run, reference)
    assert _rows(run) == _rows(reference)

