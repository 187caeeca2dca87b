"""`make demo`: the whole story, offline, on the embedded model, in minutes on 2 CPU cores.

The demo "user" is one espeak-ng voice that the synthetic stage never uses, reading ~100 sentences
built from the example vocabulary (~40 developer terms): those are "their recordings". Then a
scaled-down version of the vocabulary-expansion pipeline runs through the same runner as
`just pipeline`: split → eval set → synth (other voices) → mix → a short LoRA run on
embedded:moonshine-base → evaluation (baseline vs adapter on the eval set, plus the builtin
safety set) → report.

Nothing held out trains: synth and mix exclude the eval set (same sentence, same clip), and a few
terms (`HOLDOUT_TERMS`, the synth stage's seeded `holdout_terms` choice) are in no training
sentence at all. The user says those only in a few extra recordings that join the eval set, so
the table's "unseen" row measures recall on terms the adapter never heard.
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
from lora_training.runs import DEFAULT_OUTPUTS, PIPELINES_DIR, STATE_FILE

MODEL = default_model("demo")
# The demo user's voice; held out of the synthetic stage so the adapter must generalise across voices.
USER_VOICE = "en-us+m3"
USER_SENTENCES = 100
SYNTH_SEED = 7
# Terms no training sentence holds (chosen by SYNTH_SEED); the user reads UNSEEN_SENTENCES with them, for eval only.
HOLDOUT_TERMS = 4
UNSEEN_SENTENCES = 8
# What the demo trains: its own short recipe, or the seed-002 recipe of pipelines/vocab_expansion.toml
# verbatim (500 synthetic clips, 1000 steps, DoRA r32) inside the toolkit's defaults around it.
RECIPES = {
    "default": {"synthetic": 160, "train": {"max_steps": 80, "eval_interval": 20, "lr": 5e-4, "warmup_steps": 10,
                                            "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05}},
    "seed-002": {"synthetic": 500, "train": {"max_steps": 1000, "eval_interval": 100, "lr": 1e-4, "lora_r": 32,
                                             "lora_alpha": 64, "lora_dropout": 0.1, "use_dora": True}},
}
EXPERIMENT = "demo_tune"
WORKDIR = f"{DEFAULT_OUTPUTS}/demo"


def build_demo_user(data: Path, *, progress: bool = True) -> list[str]:
    """Write data/vocabulary.txt, data/my_voice_all.jsonl (the user's "recordings", free of the
    held-out terms) and data/my_voice_unseen.jsonl (the user saying them); returns those terms."""
    from lora_training.data.vocabulary import example_vocabulary_path, load_vocabulary
    from lora_training.synth.plan import choose_holdout

    data.mkdir(parents=True, exist_ok=True)
    vocabulary = data / "vocabulary.txt"
    shutil.copyfile(example_vocabulary_path(), vocabulary)
    terms = load_vocabulary(vocabulary)
    unseen = choose_holdout(terms, HOLDOUT_TERMS, SYNTH_SEED)  # the synth stage's own choice
    holdout = data / "holdout_terms.txt"
    holdout.write_text("".join(f"{term}\n" for term in unseen), encoding="utf-8")
    lines = vocabulary.read_text(encoding="utf-8").split("\n")
    unseen_vocabulary = data / "unseen_vocabulary.txt"
    unseen_vocabulary.write_text("".join(f"{lines[t.line - 1]}\n" for t in terms.terms if t.written in unseen),
                                 encoding="utf-8")
    _record(data / "recordings.jsonl", data / "my_voice_all.jsonl", progress=progress, vocabulary=str(vocabulary),
            count=USER_SENTENCES, exclude_terms=str(holdout))
    _record(data / "unseen_recordings.jsonl", data / "my_voice_unseen.jsonl", progress=progress,
            vocabulary=str(unseen_vocabulary), count=UNSEEN_SENTENCES)
    return unseen


def _record(spoken: Path, output: Path, *, progress: bool, **synth) -> None:
    """The demo user "records" sentences: synthesis in their voice, rows marked as real recordings."""
    from lora_training.data.manifest import load_manifest, save_manifest
    from lora_training.synth.synthesize import SynthConfig, synthesize_dataset

    synthesize_dataset(SynthConfig(min_per_term=2, output=str(spoken), voices=(USER_VOICE,), gate=False, seed=2024,
                                   **synth), progress=progress)
    rows = load_manifest(spoken)
    for row in rows:
        row.source, row.speaker = "real", f"demo user (espeak-ng {USER_VOICE})"
    save_manifest(output, rows)


def demo_pipeline(work: Path, recipe: str = "default") -> Pipeline:
    data = work / "data"
    d = {name: str(data / name) for name in ("my_voice_all.jsonl", "my_voice_train.jsonl", "my_voice_split_eval.jsonl",
                                             "my_voice_unseen.jsonl", "my_voice_eval.jsonl", "synthetic_train.jsonl",
                                             "mixed_train.jsonl", "vocabulary.txt")}
    held_out = [d["my_voice_eval.jsonl"]]
    stages = [
        Stage("split", "split", {"input": d["my_voice_all.jsonl"], "train_out": d["my_voice_train.jsonl"],
                                 "eval_out": d["my_voice_split_eval.jsonl"], "eval_fraction": 0.2, "seed": 42,
                                 "vocabulary": d["vocabulary.txt"]}),
        # The eval set: the split's held-out side plus the recordings of terms no training row holds.
        Stage("eval-set", "mix", {"inputs": [d["my_voice_split_eval.jsonl"], d["my_voice_unseen.jsonl"]],
                                  "output": d["my_voice_eval.jsonl"]}),
        Stage("synth", "synth", {"vocabulary": d["vocabulary.txt"], "count": RECIPES[recipe]["synthetic"], "min_per_term": 3,
                                 "output": d["synthetic_train.jsonl"], "exclude_voices": [USER_VOICE],
                                 "gate_model": MODEL, "seed": SYNTH_SEED, "holdout_terms": HOLDOUT_TERMS,
                                 "exclude": held_out}),
        Stage("mix", "mix", {"inputs": [d["my_voice_train.jsonl"], d["synthetic_train.jsonl"]],
                             "output": d["mixed_train.jsonl"], "exclude": held_out}),
        Stage("train", "run-experiment", {
            "experiment": EXPERIMENT, "model_id": MODEL, "train_manifest": d["mixed_train.jsonl"],
            "eval_manifest": d["my_voice_eval.jsonl"], "vocabulary": d["vocabulary.txt"], "batch_size": 8,
            "bias_vocabulary": d["vocabulary.txt"],
            "num_threads": 2, **RECIPES[recipe]["train"],
        }),
        Stage("wait", "wait", {"experiment": EXPERIMENT, "interval": 2.0}),
        # The demo shows the numbers whatever they are: a failed safety gate is printed, not a halt.
        # Both systems decode with keyterm biasing (the user has a vocabulary): the held-out terms'
        # only help, as no training sentence holds them.
        Stage("evaluate", "evaluate", {"experiment": EXPERIMENT, "safety": "builtin", "halt_on_failure": False,
                                       "bias_vocabulary": d["vocabulary.txt"]}),
        Stage("report", "report", {"experiment": EXPERIMENT}),
    ]
    return Pipeline(name="demo", path="lora_training.runners.demo", outputs=str(work), stages=stages)


@dataclass
class DemoOptions:
    recipe: str = option("default", "what the demo trains: its short recipe (~3 min), or seed-002, the recipe of "
                                    "pipelines/vocab_expansion.toml at full size (~25 min on 2 cores)",
                         choices=tuple(RECIPES))
    workdir: str | None = option(None, f"where the demo writes its data and runs (default {DEFAULT_OUTPUTS}/demo, "
                                       f"{DEFAULT_OUTPUTS}/demo-seed-002 for that recipe)")


# Written into the demo's folder, so a re-run removes only a folder the demo made itself.
MARKER = ".lora-training-demo"


def _clear(work: Path) -> None:
    """Remove the previous demo; refuse a folder that is not one (a mistyped --workdir is user data)."""
    from lora_training.atomic import atomic_write_text
    from lora_training.errors import ConfigError

    if work.exists() and any(work.iterdir()):
        # A demo from before the marker existed is known by its own pipeline state.
        if not (work / MARKER).is_file() and not (work / PIPELINES_DIR / "demo" / STATE_FILE).is_file():
            raise ConfigError(f"--workdir {work}: not a demo folder (no {MARKER}), expected an empty or new folder; "
                              f"the demo removes its folder on every run, so it will not touch this one")
        print(f"demo: removing the previous demo in {work}")
        shutil.rmtree(work)
    atomic_write_text(work / MARKER, "made by `lora-training demo`; removed and rebuilt on every demo run\n")


def run_demo(workdir: str | Path | None = None, recipe: str = "default") -> int:
    """Build the demo user, run the pipeline from scratch, print the final table; returns the exit code."""
    from lora_training.reporting.console import print_results

    work = Path(workdir or WORKDIR + ("" if recipe == "default" else f"-{recipe}"))
    started = time.perf_counter()
    _clear(work)
    print(f"demo: building the demo user ({USER_SENTENCES} sentences in espeak-ng voice {USER_VOICE}) in {work}/data")
    unseen = build_demo_user(work / "data")
    print(f"demo: terms in no training sentence, said in {UNSEEN_SENTENCES} eval recordings: {', '.join(unseen)}")
    state = run_pipeline(demo_pipeline(work, recipe))
    result = next(s["result"] for s in state["stages"] if s["name"] == "evaluate")
    print()
    print_results(json.loads(Path(result["output"]).read_text(encoding="utf-8")), show=5)
    report = next(s["result"]["report"] for s in state["stages"] if s["name"] == "report")
    print(f"\ndemo finished in {(time.perf_counter() - started) / 60:.1f} min; report: {report}")
    print(f"see it in the browser: just studio --demo" + ("" if work == Path(WORKDIR) else f" --outputs {work} "
          f"--data {work}/data --vocabulary {work}/data/vocabulary.txt"))
    return 0
