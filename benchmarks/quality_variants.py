"""The quality benchmark's variants, each trained and scored through the library's own entry points.

    baseline  the untouched model: `evaluate` without an adapter
    plain     what a first script does (`PlainRecipe`, below): PEFT LoRA r16 α32 dropout 0.05 on
              q_proj/v_proj in encoder and decoder, the user's recordings only, AdamW 1e-4, batch
              8, 500 steps, the final adapter; saved with `models.adapters.save_adapter`, scored by
              `evaluate` like the others
    ours      the toolkit's defaults: synth + mix (quality_data.py), `run-experiment` with
              ExperimentConfig's defaults except model, manifests, vocabulary and threads, scored
              by `evaluate` with keyterm biasing (`--bias-vocabulary`, default boost)
    seed002   the same data, pipelines/vocab_expansion.toml's recipe: 1000 steps, eval every 100,
              lr 1e-4, r 32, α 64, dropout 0.1, DoRA; evaluated as that pipeline does (no biasing)
    seed002-bare  seed002 without the defaults that guard against forgetting (no replay, no cap on
              the synthetic share): what replay and the cap are worth, measured
    ours-both, ours-encoder  ours with adapters in encoder (every layer) and decoder / the encoder only
    ours-both-top2  ours-both with encoder adapters in the top 2 layers only (the layers below cached)
    ours-decoder  ours with adapters in the decoder only
    ours-safety24  ours with 24 in-loop safety clips instead of 8 (a finer forgetting signal for selection)
    ours-qv, ours-attention  ours with LoRA on q/v only / on q, k, v, o (the default adds fc1, fc2)

Training steps are multiplied by --steps-scale (at least 1 step). Each variant writes
`results/<variant>.json` (its settings, result JSON path, wall time); a variant whose record
exists with the same settings is skipped, and one with other settings is refused unless
--overwrite.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lora_training.errors import ConfigError

# Variants of ours that change one choice, to set the defaults by measurement (issue: sites and targets).
OURS_VARIANTS = {
    "ours-both": {"adapter_sites": "both", "encoder_layers": 0},
    "ours-both-top2": {"adapter_sites": "both", "encoder_layers": 2},
    "ours-decoder": {"adapter_sites": "decoder"},
    "ours-safety24": {"safety_in_loop": 24},
    "ours-encoder": {"adapter_sites": "encoder"},
    "ours-qv": {"target_modules": ["q_proj", "v_proj"]},
    "ours-attention": {"target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
}
VARIANTS = ("baseline", "plain", "ours", "seed002", "seed002-bare", *OURS_VARIANTS)
# pipelines/vocab_expansion.toml's full run (the recipe of the seed-002 experiment).
SEED002 = {"max_steps": 1000, "eval_interval": 100, "lr": 1e-4, "lora_r": 32, "lora_alpha": 64, "lora_dropout": 0.1,
           "use_dora": True}
BARE = {"replay_manifest": None, "replay_ratio": 0.0, "max_synthetic_share": 1.0}
DEFAULT_STEPS = 500  # ExperimentConfig's max_steps default, and the plain script's


@dataclass(frozen=True)
class PlainConfig:
    """The plain recipe, as a first script writes it (benchmarks/train_throughput.py `build_plain`)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")  # PEFT matches them in encoder and decoder alike
    lr: float = 1e-4
    batch_size: int = 8
    steps: int = DEFAULT_STEPS
    seed: int = 0
    log_every: int = 10


@dataclass
class Context:
    """What every variant needs: the data, the model, and how to run."""

    work: Path
    data: object  # quality_data.Data
    model_id: str
    threads: int
    steps_scale: float
    safety_clips: int  # 0: the whole measurement half
    overwrite: bool
    say: Callable[[str], None]

    def steps(self, n: int) -> int:
        return max(1, round(n * self.steps_scale))

    def eval_options(self, output: Path, **more):
        from lora_training.evaluation.evaluate import EvalOptions

        return EvalOptions(model_id=self.model_id, manifest=self.data.path("user_test.jsonl"),
                           vocabulary=self.data.path("vocabulary.txt"), safety_manifest="builtin",
                           safety_max_utterances=self.safety_clips, num_threads=self.threads, output=str(output),
                           **more)


def settings(name: str, ctx: Context) -> dict:
    """What shapes a variant's numbers besides the data (whose spec is checked once per workdir)."""
    common = {"model_id": ctx.model_id, "safety_clips": ctx.safety_clips}
    if name == "baseline":
        return common
    if name == "plain":
        return {**common, **dataclasses.asdict(PlainConfig(steps=ctx.steps(DEFAULT_STEPS)))}
    if name == "ours" or name in OURS_VARIANTS:
        return {**common, **recipe_defaults(), "max_steps": ctx.steps(DEFAULT_STEPS), "bias": True,
                **OURS_VARIANTS.get(name, {})}
    bare = BARE if name == "seed002-bare" else {}
    return {**common, **recipe_defaults(), **SEED002, **bare, "max_steps": ctx.steps(SEED002["max_steps"]),
            "bias": False}


# ExperimentConfig fields that say where things are or how fast they run, not what is learned.
NOT_RECIPE = {"model_id", "train_manifest", "eval_manifest", "vocabulary", "bias_vocabulary", "dev_manifest",
              "safety_manifest", "corrections_manifest", "device", "num_threads", "checkpoint_interval",
              "log_interval", "eval_batch_size"}


def recipe_defaults() -> dict:
    """run-experiment's defaults that shape a run, so a record made under other defaults is not reused."""
    from lora_training.config import ExperimentConfig

    return {f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
            for f in dataclasses.fields(ExperimentConfig) if f.name not in NOT_RECIPE}


def record_path(ctx: Context, name: str) -> Path:
    return ctx.work / "results" / f"{name}.json"


def load_record(ctx: Context, name: str) -> dict | None:
    """A finished variant's record when its settings are this run's; None when there is none."""
    path = record_path(ctx, name)
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    if record["settings"] != json.loads(json.dumps(settings(name, ctx))):
        return None
    return record


def run_variant(name: str, ctx: Context) -> dict:
    """Train and evaluate one variant (or reuse its record); returns the record."""
    path = record_path(ctx, name)
    wanted = json.loads(json.dumps(settings(name, ctx)))  # tuples as lists, as the record holds them
    pending = path.with_suffix(".pending.json")
    for earlier in (path, pending):
        if earlier.is_file() and not ctx.overwrite:
            saved = json.loads(earlier.read_text(encoding="utf-8"))["settings"]
            if saved != wanted:
                changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
                raise ConfigError(f"{earlier}: variant {name} ran with other settings ({', '.join(changed)}), "
                                  f"expected this run's; pass --overwrite to run it again, or another --workdir")
    if path.is_file() and not ctx.overwrite:
        ctx.say(f"{name}: result exists ({path}), skipped")
        return json.loads(path.read_text(encoding="utf-8"))
    path.parent.mkdir(parents=True, exist_ok=True)
    pending.write_text(json.dumps({"settings": wanted}) + "\n", encoding="utf-8")
    ctx.say(f"{name}: running")
    started = time.perf_counter()
    output = RUNNERS[name](ctx)
    record = {"variant": name, "settings": wanted, "eval_results": str(output),
              "wall_seconds": round(time.perf_counter() - started, 1)}
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    pending.unlink()
    ctx.say(f"{name}: done in {record['wall_seconds'] / 60:.1f} min")
    return record


# --- the variants -----------------------------------------------------------------------------

def run_baseline(ctx: Context) -> Path:
    from lora_training.evaluation.evaluate import run_evaluation

    output = ctx.work / "baseline" / "eval_results.json"
    run_evaluation(ctx.eval_options(output), progress=True)
    return output


def run_plain(ctx: Context) -> Path:
    from lora_training.evaluation.evaluate import run_evaluation

    cfg = PlainConfig(steps=ctx.steps(DEFAULT_STEPS))
    adapter = ctx.work / "plain" / "adapter"
    recipe = PlainRecipe(cfg, ctx)
    if recipe.done(adapter):
        ctx.say(f"plain: {adapter} was trained with these settings, reused")
    else:
        recipe.setup()
        recipe.train()
        recipe.save(adapter)
        recipe.cleanup()
    output = ctx.work / "plain" / "eval_results.json"
    run_evaluation(ctx.eval_options(output, adapter_dir=str(adapter)), progress=True)
    return output


def _pipeline_variant(ctx: Context, name: str, recipe: dict, *, bias: bool) -> Path:
    """run-experiment → wait → evaluate, as a pipeline of the toolkit's own stages (like the demo's)."""
    from lora_training.config import ExperimentConfig
    from lora_training.runners.pipeline import Pipeline, Stage, pipeline_dir, run_pipeline
    from lora_training.runs import STATE_FILE, RunDir

    vocabulary = ctx.data.path("vocabulary.txt")
    train = {"experiment": name, "model_id": ctx.model_id, "train_manifest": ctx.data.path("mixed_train.jsonl"),
             "eval_manifest": ctx.data.path("user_test.jsonl"), "vocabulary": vocabulary,
             "num_threads": ctx.threads, **recipe}
    fields = {f.name for f in dataclasses.fields(ExperimentConfig)}
    if bias and "bias_vocabulary" in fields:  # the run's own evals decode as `evaluate` will
        train["bias_vocabulary"] = vocabulary
    evaluate = {"experiment": name, "safety": "builtin", "halt_on_failure": False, "num_threads": ctx.threads,
                "safety_max_utterances": ctx.safety_clips, **({"bias_vocabulary": vocabulary} if bias else {})}
    pipeline = Pipeline(name=f"quality_{name}", path=__file__, outputs=str(ctx.work), stages=[
        Stage("train", "run-experiment", train),
        Stage("wait", "wait", {"experiment": name, "interval": 5.0}),
        Stage("evaluate", "evaluate", evaluate),
    ])
    # A crashed or interrupted attempt (its settings were checked in run_variant) continues from its checkpoint.
    resume = not ctx.overwrite and (pipeline_dir(pipeline) / STATE_FILE).is_file()
    run_pipeline(pipeline, resume=resume, overwrite=ctx.overwrite, write=ctx.say)
    return RunDir.named(name, ctx.work).eval_results


def run_ours(ctx: Context) -> Path:
    return _pipeline_variant(ctx, "ours", {"max_steps": ctx.steps(DEFAULT_STEPS)}, bias=True)


def run_seed002(ctx: Context) -> Path:
    return _pipeline_variant(ctx, "seed002", {**SEED002, "max_steps": ctx.steps(SEED002["max_steps"])}, bias=False)


def run_seed002_bare(ctx: Context) -> Path:
    return _pipeline_variant(ctx, "seed002-bare", {**SEED002, **BARE, "max_steps": ctx.steps(SEED002["max_steps"])},
                             bias=False)


def _ours_variant(name: str) -> Callable[[Context], Path]:
    return lambda ctx: _pipeline_variant(ctx, name, {"max_steps": ctx.steps(DEFAULT_STEPS), **OURS_VARIANTS[name]},
                                         bias=True)


RUNNERS: dict[str, Callable[[Context], Path]] = {"baseline": run_baseline, "plain": run_plain, "ours": run_ours,
                                                 "seed002": run_seed002, "seed002-bare": run_seed002_bare,
                                                 **{name: _ours_variant(name) for name in OURS_VARIANTS}}


# --- the plain recipe -------------------------------------------------------------------------

class PlainRecipe:
    """A first fine-tuning script, kept readable: random batches of the user's recordings, zero-padded
    audio through `model(input_values=..., attention_mask=..., labels=...)` (the encoder runs with
    gradients every step), constant learning rate, no dev set, no clipping, the last step kept."""

    def __init__(self, cfg: PlainConfig, ctx: Context):
        self.cfg, self.ctx = cfg, ctx
        self.manifest = ctx.data.path("user_train.jsonl")

    def sidecar_config(self) -> dict:
        """The sidecar's `config`, in ExperimentConfig's key names where one exists (the report reads them)."""
        cfg = self.cfg
        return {"lora_r": cfg.r, "lora_alpha": cfg.alpha, "lora_dropout": cfg.dropout, "use_dora": False,
                "adapter_sites": "both", "target_modules": list(cfg.target_modules), "lr": cfg.lr,
                "batch_size": cfg.batch_size, "max_steps": cfg.steps, "seed": cfg.seed, "recipe": "plain"}

    def done(self, adapter: Path) -> bool:
        """An adapter of this recipe on this training manifest already exists (a re-run after a failed evaluation)."""
        from lora_training.data.manifest import manifest_hash

        sidecar = adapter / "lora_training.json"
        if self.ctx.overwrite or not sidecar.is_file():
            return False
        info = json.loads(sidecar.read_text(encoding="utf-8"))
        return (info.get("config") == self.sidecar_config() and info.get("base_model") == self.ctx.model_id
                and info["manifests"]["train_manifest"]["sha256"] == manifest_hash(self.manifest))

    def setup(self) -> None:
        import torch
        from peft import LoraConfig, get_peft_model

        from lora_training.data.manifest import load_manifest
        from lora_training.models.adapters import base_fingerprint
        from lora_training.models.registry import resolve_model
        from lora_training.models.runtime import set_threads

        cfg = self.cfg
        set_threads(self.ctx.threads)
        torch.manual_seed(cfg.seed)
        self.utts = load_manifest(self.manifest)
        if len(self.utts) < cfg.batch_size:
            raise ConfigError(f"{self.manifest}: {len(self.utts)} recordings, expected at least one batch of "
                              f"{cfg.batch_size}")
        model, self.processor = resolve_model(self.ctx.model_id)
        self.fingerprint = base_fingerprint(model)
        self.eos = model.config.eos_token_id
        self.model = get_peft_model(model, LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                                                      target_modules=list(cfg.target_modules)))
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=cfg.lr)
        self.rng = random.Random(cfg.seed)

    def step(self) -> float:
        import torch

        from lora_training.data.audio import load_audio

        batch = self.rng.sample(self.utts, self.cfg.batch_size)
        audios = [load_audio(u.audio) for u in batch]
        inputs = self.processor(audios, sampling_rate=16000, padding=True, return_attention_mask=True,
                                return_tensors="pt")
        ids = [self.processor.tokenizer(u.text, add_special_tokens=False).input_ids + [self.eos] for u in batch]
        width = max(map(len, ids))
        labels = torch.tensor([x + [-100] * (width - len(x)) for x in ids])
        loss = self.model(input_values=inputs.input_values, attention_mask=inputs.attention_mask, labels=labels).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        return loss.item()

    def train(self) -> None:
        self.model.train()
        started = time.perf_counter()
        for step in range(1, self.cfg.steps + 1):
            loss = self.step()
            if not math.isfinite(loss):
                raise ConfigError(f"plain: loss became {loss} at step {step}, expected a finite number")
            if step % self.cfg.log_every == 0 or step == self.cfg.steps:
                per_step = (time.perf_counter() - started) / step
                self.ctx.say(f"plain: step {step}/{self.cfg.steps}  loss {loss:.4f}  {per_step:.2f}s/step  "
                             f"ETA {per_step * (self.cfg.steps - step) / 60:.1f} min")
        self.seconds_per_step = (time.perf_counter() - started) / self.cfg.steps

    def save(self, adapter: Path) -> None:
        from lora_training.data.manifest import manifest_hash
        from lora_training.data.vocabulary import load_vocabulary
        from lora_training.models.adapters import save_adapter
        from lora_training.training.evals import seen_terms

        vocabulary = load_vocabulary(self.ctx.data.path("vocabulary.txt")).written_forms()
        terms = seen_terms(self.utts, vocabulary)
        save_adapter(self.model, adapter, base_model=self.ctx.model_id, fingerprint=self.fingerprint, info={
            "step": self.cfg.steps, "chosen_on": "last step", "config": self.sidecar_config(),
            "manifests": {"train_manifest": {"path": self.manifest, "sha256": manifest_hash(self.manifest)}},
            "train_terms": terms, "train_terms_by_source": {"real": terms},
            "seconds_per_step": round(self.seconds_per_step, 3)})

    def cleanup(self) -> None:
        del self.model, self.optimizer
