"""Scale-out: the same recipe under `accelerate launch` with 2 CPU processes (gloo)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lora_training.config import ExperimentConfig
from lora_training.runs.metrics_log import read_metrics
from lora_training.runs.state import read_state


# `both`: encoder states are computed outside DDP's forward (each clip alone, as decoding sees it);
# unsynced encoder gradients would give the two ranks different adapters.
@pytest.mark.parametrize("sites", ["decoder", "both"])
def test_two_cpu_processes_agree_on_the_adapter(tmp_path, tiny_model_dir, tiny_manifests, sites):
    train, evals = tiny_manifests
    run_dir = tmp_path / "ddp"
    run_dir.mkdir()
    ExperimentConfig(model_id=str(tiny_model_dir), train_manifest=str(train), eval_manifest=str(evals), max_steps=3,
                     eval_interval=3, log_interval=1, batch_size=2, lora_r=4, lora_alpha=8, num_threads=1,
                     device="cpu", warmup_steps=0, lr=1e-2, adapter_sites=sites).save(run_dir / "config.json")
    accelerate = str(Path(sys.executable).parent / "accelerate")
    proc = subprocess.run(
        [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", "-m", "lora_training.runners.experiment", str(run_dir)],
        capture_output=True, text=True, timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    checksums = dict(re.findall(r"rank (\d) adapter checksum (\w+)", output))
    assert set(checksums) == {"0", "1"}, output[-3000:]
    assert checksums["0"] == checksums["1"]
    state = read_state(run_dir)
    assert state["phase"] == "completed" and state["step"] == 3
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    # 2 processes × batch 2 = 4 utterances per optimizer step
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows if r["type"] == "train"] == [1, 2, 3]
    # Only rank 0 evaluates: one dev eval per interval, the eval manifest tested twice, not twice per rank.
    assert [r["step"] for r in rows if r["type"] == "eval"] == [0, 3]
    assert [(r["step"], r["adapter"]) for r in rows if r["type"] == "test"] == [(0, "baseline"), (3, "best")]
