"""The Mac/online path on every change: the embedded extra and the Debian speech packages hidden
(LORA_TRAINING_HIDE=embedded,debian), the hub stood in by a local cache (HF_HOME) that holds a tiny
random Moonshine under the default model's id. Commands run as the user runs them, in a subprocess."""

from __future__ import annotations

import json
import os
import re
import shutil
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


def test_the_seed_002_pipeline_runs_without_embedded_and_debian(hub_home, tmp_path):
    """split → synth → mix → train (the seed-002 recipe, 2 steps) → wait → evaluate → report, on the
    default model from the hub stand-in, with the online safety set (a stand-in parquet of real clips)
    as safety and replay source."""
    from lora_training.data.audio import load_audio
    from lora_training.data.manifest import load_manifest
    from lora_training.evaluation.safety import builtin_safety_manifest
    from lora_training.testing.factories import make_manifest
    from tests.evaluation.test_safety_online import _stand_in_hub

    try:
        real = load_manifest(builtin_safety_manifest("measure"))[:10]
    except Exception as e:
        pytest.skip(f"no real speech to build the online stand-in from: {e}")
    home = tmp_path / "hf"  # the shared stand-in plus the online set, which the other test must not see
    shutil.copytree(hub_home, home)
    _stand_in_hub(home, [(load_audio(r.audio), r.text) for r in real])
    data = tmp_path / "data"
    texts = [f"run kubectl apply number {i}" if i % 2 else f"the WER dropped by {i}" for i in range(12)]
    make_manifest(data, 12, texts=texts, terms=[["kubectl"] if i % 2 else ["WER"] for i in range(12)],
                  name="my_voice_all.jsonl", seconds=0.6)
    (data / "vocabulary.txt").write_text("kubectl | cube control\nWER | W E R\n")
    (tmp_path / "plan.toml").write_text(f"""
name = "plan"
[[stages]]
name = "split"
kind = "split"
input = "{data / 'my_voice_all.jsonl'}"
train_out = "{data / 'train.jsonl'}"
eval_out = "{data / 'eval.jsonl'}"
[[stages]]
name = "synth"
kind = "synth"
vocabulary = "{data / 'vocabulary.txt'}"
count = 4
min_per_term = 1
output = "{data / 'synthetic.jsonl'}"
exclude = ["{data / 'eval.jsonl'}"]
gate = false
workers = 1
[[stages]]
name = "mix"
kind = "mix"
inputs = ["{data / 'train.jsonl'}", "{data / 'synthetic.jsonl'}"]
output = "{data / 'mixed.jsonl'}"
exclude = ["{data / 'eval.jsonl'}"]
[[stages]]
name = "train"
kind = "run-experiment"
experiment = "seed002"
train_manifest = "{data / 'mixed.jsonl'}"
eval_manifest = "{data / 'eval.jsonl'}"
max_steps = 2
eval_interval = 2
batch_size = 4
lr = 1e-4
lora_r = 32
lora_alpha = 64
lora_dropout = 0.1
use_dora = true
safety_in_loop = 2
num_threads = 1
[[stages]]
name = "wait"
kind = "wait"
experiment = "seed002"
[[stages]]
name = "evaluate"
kind = "evaluate"
experiment = "seed002"
[[stages]]
name = "report"
kind = "report"
experiment = "seed002"
""")
    done = _run(["pipeline", "--config", str(tmp_path / "plan.toml")], home, tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    run = tmp_path / "outputs" / "seed002"
    config = json.loads((run / "config.json").read_text())
    assert config["model_id"] == TRAINING_MODEL and config["use_dora"]
    results = json.loads((run / "eval_results.json").read_text())
    assert "LibriSpeech" in results["safety"]["description"] and results["safety"]["n_utterances"] > 0
    log = (run / "train.log").read_text()
    # replay and the in-loop safety clips came from the online set (the only real speech there is)
    assert "safety in the loop: 2 clips" in log and re.search(r"decoded .* [1-9]\d* replay", log)
    assert (run / "report.md").is_file()
