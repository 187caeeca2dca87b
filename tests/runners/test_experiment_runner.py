"""Background experiments on the tiny model: start, poll, status, stop, crash, resume, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lora_training.cli import main as cli_main
from lora_training.runners.experiment import poll, start_experiment, status, stop
from lora_training.runs.metrics_log import read_metrics

REPO = Path(__file__).resolve().parents[2]


def _args(tiny_model_dir, tiny_manifests, steps, extra=()):
    train, evals = tiny_manifests
    return ["--model-id", str(tiny_model_dir), "--train-manifest", str(train), "--eval-manifest", str(evals),
            "--max-steps", str(steps), "--eval-interval", "5", "--log-interval", "1", "--batch-size", "4",
            "--lora-r", "4", "--lora-alpha", "8", "--num-threads", "1", "--device", "cpu", *extra]


def _wait(predicate, timeout=120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def _step(outputs, name):
    row = status(name, outputs=outputs)[0]
    return row.get("step", 0) if row["phase"] == "running" else 0


def test_cli_background_run_poll_status_and_metrics(tmp_path, tiny_model_dir, tiny_manifests, capsys):
    out = str(tmp_path)
    assert cli_main(["run-experiment", "bg", "--outputs", out, *_args(tiny_model_dir, tiny_manifests, 10)]) == 0
    assert "started pid" in capsys.readouterr().out
    lines: list[str] = []
    assert poll("bg", outputs=out, write=lines.append, interval=0.2) == 0
    assert lines[-1] == "[bg] completed"
    assert any("step 10/10" in line for line in lines)
    records = read_metrics(tmp_path / "bg" / "metrics.jsonl")
    assert [r["step"] for r in records if r["type"] == "eval"] == [0, 5, 10]  # the dev set
    assert [r["step"] for r in records if r["type"] == "test"] == [0, 10]  # the eval manifest: twice
    assert sum(" dev eval step " in line for line in lines) == 3  # `poll` streams the log: dev, labelled
    assert sum(" test on the eval manifest " in line for line in lines) == 2
    assert cli_main(["status", "bg", "--outputs", out, "--json"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["phase"] == "completed" and state["adapters"]["adapter"].endswith("adapter")
    assert state["last_eval"]["set"] == "dev" and state["test"]["best"]["adapter"] == "best"
    assert cli_main(["status", "--outputs", out]) == 0
    table = capsys.readouterr().out
    assert "bg" in table and "dev WER" in table
    # A finished name is refused without --resume/--overwrite, with a one-line error.
    assert cli_main(["run-experiment", "bg", "--outputs", out, *_args(tiny_model_dir, tiny_manifests, 10)]) == 1
    assert "--overwrite" in capsys.readouterr().err


def test_kill_9_reports_crashed_and_resume_completes(tmp_path, tiny_model_dir, tiny_manifests):
    cfg_args = _args(tiny_model_dir, tiny_manifests, 400, ["--checkpoint-interval", "2"])
    assert cli_main(["run-experiment", "crashy", "--outputs", str(tmp_path), *cfg_args]) == 0
    _wait(lambda: (tmp_path / "crashy" / "checkpoints").is_dir() and _step(tmp_path, "crashy") >= 4)
    pid = status("crashy", outputs=tmp_path)[0]["pid"]
    os.kill(pid, signal.SIGKILL)
    started = time.time()
    _wait(lambda: status("crashy", outputs=tmp_path)[0]["phase"] == "crashed", timeout=5)
    assert time.time() - started < 1.5
    row = status("crashy", outputs=tmp_path)[0]
    assert row["log_tail"], "crashed status should show the log's last lines"
    # Already-running names are refused; a crashed one resumes from its checkpoint.
    assert cli_main(["run-experiment", "crashy", "--outputs", str(tmp_path), "--resume", "--max-steps", "8"]) == 0
    assert poll("crashy", outputs=tmp_path, write=lambda _: None, interval=0.2) == 0
    log = (tmp_path / "crashy" / "train.log").read_text()
    assert "resumed from step_" in log
    assert status("crashy", outputs=tmp_path)[0]["step"] == 8


def test_stop_checkpoints_and_resume_continues(tmp_path, tiny_model_dir, tiny_manifests):
    from lora_training.config import ExperimentConfig
    from lora_training.errors import LoraTrainingError

    train, evals = tiny_manifests
    cfg = ExperimentConfig(model_id=str(tiny_model_dir), train_manifest=str(train), eval_manifest=str(evals),
                           max_steps=400, eval_interval=200, log_interval=1, batch_size=4, lora_r=4, lora_alpha=8,
                           num_threads=1, device="cpu")
    start_experiment("stoppable", cfg, outputs=tmp_path)
    _wait(lambda: _step(tmp_path, "stoppable") >= 2)
    with pytest.raises(LoraTrainingError, match="already running"):
        start_experiment("stoppable", cfg, outputs=tmp_path, resume=True)
    state = stop("stoppable", outputs=tmp_path, timeout=60)
    assert state["phase"] == "stopped"
    stopped_at = state["last_checkpoint"]
    assert stopped_at >= 2
    assert poll("stoppable", outputs=tmp_path, write=lambda _: None) == 3
    resumed = ExperimentConfig.from_dict({**cfg.to_dict(), "max_steps": stopped_at + 2})
    start_experiment("stoppable", resumed, outputs=tmp_path, resume=True)
    assert poll("stoppable", outputs=tmp_path, write=lambda _: None, interval=0.2) == 0
    assert status("stoppable", outputs=tmp_path)[0]["step"] == stopped_at + 2


def test_bad_manifest_refused_before_spawn(tmp_path, tiny_model_dir, tiny_manifests):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio": "nope.wav", "text": ""}\nnot json\n')
    proc = subprocess.run(
        [sys.executable, "main.py", "run-experiment", "badrun", "--outputs", str(tmp_path),
         *_args(tiny_model_dir, tiny_manifests, 5), "--train-manifest", str(bad)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
    assert "bad.jsonl:1" in proc.stderr and "bad.jsonl:2" in proc.stderr
    assert not (tmp_path / "badrun").exists()
