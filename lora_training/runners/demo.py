"""`make demo`: the whole story, offline, on the embedded model, in minutes on 2 CPU cores.

The demo "user" is one espeak-ng voice that the synthetic stage never uses, reading ~100 sentences
built from the example vocabulary (~40 developer terms): those are "their recordings". Then a
scaled-down version of the vocabulary-expansion pipeline runs through the same runner as
`just pipeline`: split → synth (other voices) → mix → a short LoRA run on
embedded:moonshine-base → evaluation (baseline vs adapter on the held-out split, plus the builtin
safety set) → report.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from lora_training.defaults import default_model
from lora_training.options import option
from lora_training.runners.pipeline import Pipeline, Stage, run_pipeline
from lora_training.runs import DEFAULT_OUTPUTS

MODEL = default_model("demo")
# The demo user's voice; held out of the synthetic stage so the adapter must generalise across voices.
USER_VOICE = "en-us+m3"
USER_SENTENCES = 100
SYNTHETIC_SENTENCES = 160
EXPERIMENT = "demo_tune"


def build_demo_user(data: Path, *, progress: bool = True) -> Path:
    """Write data/vocabulary.txt and data/my_voice_all.jsonl (the user's "recordings")."""
    from lora_training.data.manifest import load_manifest, save_manifest
    from lora_training.data.vocabulary import example_vocabulary_path
    from lora_training.synth.synthesize import SynthConfig, synthesize_dataset

    data.mkdir(parents=True, exist_ok=True)
    vocabulary = data / "vocabulary.txt"
    shutil.copyfile(example_vocabulary_path(), vocabulary)
    spoken = data / "recordings.jsonl"
    synthesize_dataset(SynthConfig(vocabulary=str(vocabulary), count=USER_SENTENCES, min_per_term=2,
                                   output=str(spoken), voices=(USER_VOICE,), gate=False, seed=2024),
                       progress=progress)
    rows = load_manifest(spoken)
    for row in rows:
        row.source, row.speaker = "real", f"demo user (espeak-ng {USER_VOICE})"
    return save_manifest(data / "my_voice_all.jsonl", rows)


def demo_pipeline(work: Path) -> Pipeline:
    data = work / "data"
    d = {name: str(data / name) for name in ("my_voice_all.jsonl", "my_voice_train.jsonl", "my_voice_eval.jsonl",
                                             "synthetic_train.jsonl", "mixed_train.jsonl", "vocabulary.txt")}
    stages = [
        Stage("split", "split", {"input": d["my_voice_all.jsonl"], "train_out": d["my_voice_train.jsonl"],
                                 "eval_out": d["my_voice_eval.jsonl"], "eval_fraction": 0.2, "seed": 42}),
        Stage("synth", "synth", {"vocabulary": d["vocabulary.txt"], "count": SYNTHETIC_SENTENCES, "min_per_term": 3,
                                 "output": d["synthetic_train.jsonl"], "exclude_voices": [USER_VOICE],
                                 "gate_model": MODEL, "seed": 7}),
        Stage("mix", "mix", {"inputs": [d["my_voice_train.jsonl"], d["synthetic_train.jsonl"]],
                             "output": d["mixed_train.jsonl"]}),
        Stage("train", "run-experiment", {
            "experiment": EXPERIMENT, "model_id": MODEL, "train_manifest": d["mixed_train.jsonl"],
            "eval_manifest": d["my_voice_eval.jsonl"], "vocabulary": d["vocabulary.txt"],
            "max_steps": 80, "eval_interval": 20, "lr": 5e-4, "warmup_steps": 10, "batch_size": 8,
            "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "adapter_sites": "decoder", "num_threads": 2,
        }),
        Stage("wait", "wait", {"experiment": EXPERIMENT, "interval": 2.0}),
        # The demo shows the numbers whatever they are: a failed safety gate is printed, not a halt.
        Stage("evaluate", "evaluate", {"experiment": EXPERIMENT, "safety": "builtin", "halt_on_failure": False}),
        Stage("report", "report", {"experiment": EXPERIMENT}),
    ]
    return Pipeline(name="demo", path="lora_training.runners.demo", outputs=str(work), stages=stages)


@dataclass
class DemoOptions:
    workdir: str = option(f"{DEFAULT_OUTPUTS}/demo", "where the demo writes its data and runs")


def run_demo(workdir: str | Path = DemoOptions.workdir) -> int:
    """Build the demo user, run the pipeline from scratch, print the final table; returns the exit code."""
    from lora_training.reporting.console import print_results

    work = Path(workdir)
    started = time.perf_counter()
    if work.exists():
        shutil.rmtree(work)
    print(f"demo: building the demo user ({USER_SENTENCES} sentences in espeak-ng voice {USER_VOICE}) in {work}/data")
    build_demo_user(work / "data")
    state = run_pipeline(demo_pipeline(work))
    result = next(s["result"] for s in state["stages"] if s["name"] == "evaluate")
    print()
    print_results(json.loads(Path(result["output"]).read_text(encoding="utf-8")), show=5)
    report = next(s["result"]["report"] for s in state["stages"] if s["name"] == "report")
    print(f"\ndemo finished in {(time.perf_counter() - started) / 60:.1f} min; report: {report}")
    return 0
