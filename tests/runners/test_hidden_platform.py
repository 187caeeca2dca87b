"""The Mac/online path on every change: the embedded extra and the Debian speech packages hidden
(LORA_TRAINING_HIDE=embedded,debian), the hub stood in by a local cache (HF_HOME) that holds a tiny
random Moonshine under the default model's id. Commands run as the user runs them, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lora_training.defaults import TRAINING_MODEL

REPO = Path(__file__).resolve().parents[2]
SNAPSHOT = "0" * 40


@pytest.fixture(scope="module")
def hub_home(tmp_path_factory):
    """An HF_HOME whose hub cache answers for UsefulSensors/moonshine-tiny with the tiny random model."""
    from lora_training.testing.tiny import save_tiny_moonshine

    home = tmp_path_factory.mktemp("hf_home")
    repo = home / "hub" / ("models--" + TRAINING_MODEL.replace("/", "--"))
    save_tiny_moonshine(repo / "snapshots" / SNAPSHOT)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(SNAPSHOT)
    return home


def _run(args, hub_home, cwd):
    env = {**os.environ, "LORA_TRAINING_HIDE": "embedded,debian", "HF_HOME": str(hub_home), "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "LORA_TRAINING_CACHE": str(cwd / "cache")}
    return subprocess.run([sys.executable, str(REPO / "main.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_without_embedded_and_debian_the_defaults_come_from_the_hub(hub_home, tiny_manifests, tmp_path):
    train, evals = tiny_manifests
    done = _run(["transcribe", "--manifest", str(evals), "--no-progress", "--json"], hub_home, tmp_path)
    assert done.returncode == 0, done.stderr[-800:]
    result = json.loads(done.stdout)
    assert result["model"]["model_id"] == TRAINING_MODEL and result["summary"]["baseline"]["n_utterances"] == 3

    refused = _run(["transcribe", "--manifest", str(evals), "--safety", "builtin", "--no-progress"], hub_home, tmp_path)
    assert refused.returncode == 1 and "--safety-manifest" in refused.stderr and refused.stderr.count("\n") == 1

    clip = next(Path(evals).parent.rglob("*.wav"))
    missing = _run(["models", "check", "embedded:moonshine-base", "--audio", str(clip)], hub_home, tmp_path)
    assert missing.returncode == 1 and "is missing" in missing.stderr and missing.stderr.count("\n") == 1
    no_clip = _run(["models", "check"], hub_home, tmp_path)
    assert no_clip.returncode == 1 and TRAINING_MODEL in no_clip.stderr and "--audio FILE" in no_clip.stderr

    run = _run(["run-experiment", "hidden", "--foreground", "--train-manifest", str(train), "--eval-manifest",
                str(evals), "--max-steps", "2", "--eval-interval", "2", "--batch-size", "4", "--lora-r", "4",
                "--lora-alpha", "8", "--safety-in-loop", "0", "--num-threads", "1"], hub_home, tmp_path)
    assert run.returncode == 0, (run.stdout + run.stderr)[-1500:]
    config = json.loads((tmp_path / "outputs" / "hidden" / "config.json").read_text())
    assert config["model_id"] == TRAINING_MODEL
    assert "replay" in (tmp_path / "outputs" / "hidden" / "train.log").read_text()  # said why replay is off
