"""ExperimentConfig: the one place experiment defaults live, and its JSON round trip.

The CLI builds options from these fields (help text from `metadata["help"]`), the runner
writes the result to `outputs/NAME/config.json`, and the training process reads only that.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_training.defaults import BIAS_BOOST, BUILTIN, DECODE_BATCH_SIZE, DEVICES, default_model, model_help
from lora_training.errors import ConfigError
from lora_training.options import option

ADAPTER_SITES = ("decoder", "encoder", "both")
PRECISIONS = ("fp32", "bf16", "fp16")
# Every Linear in a Moonshine attention or MLP block; sites decide which layers get them.
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2")
PATH_FIELDS = ("train_manifest", "eval_manifest", "replay_manifest", "vocabulary", "dev_manifest", "safety_manifest",
               "bias_vocabulary", "corrections_manifest")
OPTIONAL_PATH_FIELDS = PATH_FIELDS[2:]


@dataclass
class ExperimentConfig:
    model_id: str = option(default_model("train"), model_help("train"))
    train_manifest: str = option("data/my_voice_train.jsonl", "training manifest (JSONL)")
    eval_manifest: str = option("data/my_voice_eval.jsonl", "test manifest (JSONL) for the verdict: scored twice, "
                                                            "at step 0 and on best_adapter at the end")
    max_steps: int = option(500, "optimizer steps to train")
    eval_interval: int = option(50, "evaluate on the dev set (greedy transcripts: WER, CER, term recall, safety WER) "
                                    "every N steps; step 0 is the baseline")
    checkpoint_interval: int = option(0, "save a resumable checkpoint every N steps (0: at every eval)")
    log_interval: int = option(10, "write a progress line every N steps")
    lr: float = option(3e-4, "peak learning rate (AdamW, linear warmup then linear decay)")
    warmup_steps: int = option(20, "linear warmup steps")
    weight_decay: float = option(0.0, "AdamW weight decay on adapter weights")
    max_grad_norm: float = option(1.0, "gradient clipping norm (0 disables)")
    batch_size: int = option(8, "utterances per micro-batch")
    grad_accum: int = option(1, "micro-batches per optimizer step")
    eval_batch_size: int = option(DECODE_BATCH_SIZE, "utterances decoded together during evaluation")
    seed: int = option(42, "seed for data order, adapter init and dropout")
    lora_r: int = option(16, "LoRA rank")
    lora_alpha: int = option(32, "LoRA alpha (scale = alpha / r)")
    lora_dropout: float = option(0.05, "dropout on the LoRA input")
    use_dora: bool = option(False, "use DoRA (weight-decomposed LoRA) instead of plain LoRA")
    adapter_sites: str = option(
        "decoder",
        "where adapters go: decoder (fast: the encoder runs once per clip and is cached), encoder, or both",
        choices=ADAPTER_SITES,
    )
    encoder_layers: int = option(0, "with adapters in the encoder: only its top N layers get them; the stem and the "
                                    "layers below are then computed once per clip and cached (0: every layer)",
                                 metavar="N")
    target_modules: list[str] = option(list(DEFAULT_TARGET_MODULES), "Linear layer names to adapt within the chosen sites")
    # Against forgetting (training/data_order.py; the defaults are measured in docs/personalized/README.md).
    replay_manifest: str | None = option(BUILTIN, "general-domain real speech mixed into training against forgetting: "
                                                  "a manifest, or builtin (the built-in set's replay half, never the "
                                                  "half safety scores read; off where it is not installed); "
                                                  "none: no replay")
    replay_ratio: float = option(0.25, "replay utterances per training utterance in each epoch (0: no replay; "
                                       "a small replay set repeats)")
    max_synthetic_share: float = option(0.5, "at most this share of each epoch's user rows is synthetic: a fresh "
                                             "sample of the synthetic rows each epoch (1: no cap)", metavar="SHARE")
    # The user's fixes of the model's own mistakes (`corrections`): real speech, and the rows that
    # teach the most, so each is heard several times an epoch (training/data_order.py).
    corrections_manifest: str | None = option(None, "corrections manifest (`just corrections`: dictated clips with "
                                                    "their fixed text), trained on as real speech beside the "
                                                    "training rows", flag="--corrections", metavar="MANIFEST")
    corrections_weight: int = option(2, "times each correction row is heard per epoch", metavar="N")
    augment_views: int = option(0, "augmented copies (speed, tempo, room, noise) made once per real recording; each "
                                   "epoch hears one of its views, each encoded once (0: off)", metavar="K")
    respell_terms: float = option(0.3, "share of a term's occurrences in training labels spelled from another term's "
                                       "first token (stdout as st·d·out, where st starts stderr), so a decode that "
                                       "began one can still finish the other (terms from --vocabulary and the rows; "
                                       "0: off)", metavar="SHARE")
    allow_overlap: bool = option(False, "start even when a train or replay row shares its normalised text or its "
                                        "audio with an eval (or dev) row; state.json and the report count them")
    vocabulary: str | None = option(None, "vocabulary file: finds jargon terms in eval references that lack a `terms` field")
    bias_vocabulary: str | None = option(None, "keyterm biasing in the run's evals (dev, safety, test), as `evaluate "
                                               "--bias-vocabulary` decodes; off without it")
    bias_boost: float = option(BIAS_BOOST, "keyterm biasing: logit bonus for starting a term")
    rewrite_spoken: bool = option(True, "with --bias-vocabulary: spoken forms a transcript spells out ('word error "
                                        "rate') are written as their terms ('WER') in the run's evals",
                                  flag="--no-rewrite-spoken")
    # Choose on dev, report on test (training/dev_split.py, training/evals.py).
    dev_manifest: str | None = option(None, "dev manifest (JSONL) that every choice reads: periodic evals, best_adapter, "
                                            "early stop; none: carve a sentence-disjoint slice of the training data")
    dev_fraction: float = option(0.1, "without --dev-manifest: share of the recordings carved out as the dev set "
                                      "(10 to 200 utterances, synthetic rows topping up a small one)")
    safety_in_loop: int = option(8, "general-English clips scored beside dev evals to show forgetting early "
                                    "(evenly spaced, fixed for the run; 0: off)", metavar="N")
    safety_every: int = option(2, "score the safety clips at every Nth dev eval (always at step 0 and the last "
                                  "step): with 8 clips a few percent of a CPU run; an eval without a score cannot "
                                  "become best_adapter", metavar="N")
    # Safety-aware selection and stopping (training/selection.py).
    safety_budget: float = option(0.5, "best_adapter is the lowest dev WER among evals whose safety WER is at most "
                                       "this many WER points above step 0's", metavar="POINTS")
    safety_patience: int = option(2, "end the run (completed, early stop) after N consecutive safety scores over "
                                     "--safety-budget (0: never stop for safety)", metavar="N")
    safety_manifest: str | None = option(None, "general-domain manifest for --safety-in-loop; none: the built-in "
                                               "safety set's measurement half")
    early_stop_patience: int = option(0, "stop after N dev evals without a better dev WER (0: off)")
    device: str = option("auto", "compute device", choices=DEVICES)
    precision: str = option("fp32", "autocast precision for the forward pass", choices=PRECISIONS)
    num_threads: int = option(0, "torch CPU threads (0: all cores, at most 8)")

    def __post_init__(self) -> None:
        # `--replay-manifest none` and the like: the word the help text offers means "off", not a file named none.
        for name in OPTIONAL_PATH_FIELDS:
            if isinstance(getattr(self, name), str) and getattr(self, name).strip().lower() == "none":
                setattr(self, name, None)
        # Types first, from the annotations (a hand-edited config.json can hold anything); the
        # value checks below then run only on fields of the right type, and every problem is reported.
        hints = typing.get_type_hints(type(self))
        problems = [p for f in dataclasses.fields(self) if (p := _type_problem(f.name, hints[f.name], getattr(self, f.name)))]
        mistyped = {p.split(":", 1)[0] for p in problems}

        def need(name: str, ok: typing.Callable[[Any], bool], expected: str) -> None:
            if name not in mistyped and not ok(getattr(self, name)):
                problems.append(f"{name}: expected {expected}, got {getattr(self, name)!r}")

        for name in ("max_steps", "eval_interval", "log_interval", "batch_size", "grad_accum", "eval_batch_size", "lora_r", "lora_alpha"):
            need(name, lambda v: v > 0, "a positive integer")
        for name in ("checkpoint_interval", "warmup_steps", "early_stop_patience", "num_threads"):
            need(name, lambda v: v >= 0, "an integer >= 0")
        need("lr", lambda v: 0 < v < 1, "a number in (0, 1), e.g. 3e-4")
        need("lora_dropout", lambda v: 0 <= v < 1, "a number in [0, 1)")
        need("replay_ratio", lambda v: 0 <= v <= 10, "a number in [0, 10]")
        need("max_synthetic_share", lambda v: 0 < v <= 1, "a share in (0, 1], e.g. 0.5 (1: no cap)")
        need("corrections_weight", lambda v: 1 <= v <= 16, "an integer in [1, 16]")
        need("augment_views", lambda v: 0 <= v <= 16, "an integer in [0, 16] (0: off)")
        need("respell_terms", lambda v: 0 <= v <= 1, "a share in [0, 1] (0: off)")
        need("bias_boost", lambda v: v >= 0, "a logit bonus >= 0")
        need("weight_decay", lambda v: v >= 0, "a number >= 0")
        need("dev_fraction", lambda v: 0 < v <= 0.5, "a number in (0, 0.5], e.g. 0.1")
        need("safety_in_loop", lambda v: v >= 0, "an integer >= 0 (0: off)")
        need("safety_every", lambda v: v > 0, "a positive integer")
        need("safety_budget", lambda v: v >= 0, "WER points >= 0, e.g. 0.5")
        need("safety_patience", lambda v: v >= 0, "an integer >= 0 (0: never stop for safety)")
        need("max_grad_norm", lambda v: v >= 0, "a number >= 0 (0 disables clipping)")
        need("encoder_layers", lambda v: v >= 0, "an integer >= 0 (0: every encoder layer)")
        need("adapter_sites", lambda v: v in ADAPTER_SITES, f"one of {', '.join(ADAPTER_SITES)}")
        need("device", lambda v: v in DEVICES, f"one of {', '.join(DEVICES)}")
        need("precision", lambda v: v in PRECISIONS, f"one of {', '.join(PRECISIONS)}")
        need("target_modules", lambda v: bool(v) and all(v), "a non-empty list of layer names such as q_proj v_proj")
        need("model_id", lambda v: bool(v.strip()), "a hub id, a folder or embedded:moonshine-base")
        if problems:
            raise ConfigError("invalid experiment config: " + "; ".join(problems), problems=problems)

    @property
    def effective_checkpoint_interval(self) -> int:
        return self.checkpoint_interval or self.eval_interval

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "ExperimentConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(unknown)}, expected only: {', '.join(sorted(known))}"
            )
        try:
            return cls(**data)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from e

    def with_absolute_paths(self, base: str | os.PathLike = ".") -> "ExperimentConfig":
        """Paths as absolute, so the background process finds them whatever its working folder."""
        updates = {}
        for name in PATH_FIELDS:
            value = getattr(self, name)
            if value and value != BUILTIN:
                updates[name] = str((Path(base) / value).resolve())
        model = Path(base) / self.model_id
        if ":" not in self.model_id and model.is_dir():
            updates["model_id"] = str(model.resolve())
        return dataclasses.replace(self, **updates)

    def save(self, path: str | os.PathLike) -> None:
        from lora_training.atomic import atomic_write_json

        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ExperimentConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ConfigError(f"{path}: config not found") from e
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{e.lineno}: invalid JSON, expected an object, got {e.msg}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
        data.setdefault("encoder_layers", 0)  # saved before the field existed: adapters in every encoder layer
        data.setdefault("rewrite_spoken", False)  # saved before the rewrite existed: its evals decoded without it
        data.setdefault("respell_terms", 0.0)  # saved before respelling existed: its labels were canonical
        return cls.from_dict(data, source=str(path))


def _type_problem(name: str, hint: Any, value: Any) -> str | None:
    """`name: expected <type>, got <value>` when `value` does not fit the annotation, else None.
    bool is not an int here, although Python says it is: `"max_steps": true` is a mistake."""
    options = typing.get_args(hint)
    optional = type(None) in options
    if optional:  # `X | None`: None is a value, anything else must be an X
        if value is None:
            return None
        hint = next(o for o in options if o is not type(None))
    if typing.get_origin(hint) is list:
        ok, expected = isinstance(value, list) and all(isinstance(v, str) for v in value), "a list of strings"
    elif hint is bool:
        ok, expected = isinstance(value, bool), "true or false"
    elif hint is int:
        ok, expected = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        expected = "a finite number"
    elif hint is str:
        ok, expected = isinstance(value, str), "a string"
    else:
        raise TypeError(f"ExperimentConfig.{name}: no type check for {hint!r}")  # a new kind of field: add one
    return None if ok else f"{name}: expected {expected}{' or null' if optional else ''}, got {value!r}"


def adapter_kind(config: dict[str, Any]) -> str:
    """"DoRA" or "LoRA" for a config (as saved in config.json or an adapter's sidecar)."""
    return "DoRA" if config.get("use_dora") else "LoRA"


def sites_text(config: dict[str, Any]) -> str:
    """Where a config's adapters sit, e.g. "both (top 2 encoder layers)" or "decoder"."""
    sites, top = config.get("adapter_sites"), config.get("encoder_layers") or 0
    return f"{sites} (top {top} encoder layers)" if top and sites != "decoder" else str(sites)
