"""ExperimentConfig: the one place experiment defaults live, and its JSON round trip.

The CLI builds options from these fields (help text from `metadata["help"]`), the runner
writes the result to `outputs/NAME/config.json`, and the training process reads only that.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_training.defaults import DECODE_BATCH_SIZE, DEVICES, default_model, model_help
from lora_training.errors import ConfigError
from lora_training.options import option

ADAPTER_SITES = ("decoder", "encoder", "both")
PRECISIONS = ("fp32", "bf16", "fp16")
# Every Linear in a Moonshine attention or MLP block; sites decide which layers get them.
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2")
PATH_FIELDS = ("train_manifest", "eval_manifest", "replay_manifest", "vocabulary")


@dataclass
class ExperimentConfig:
    model_id: str = option(default_model("train"), model_help("train"))
    train_manifest: str = option("data/my_voice_train.jsonl", "training manifest (JSONL)")
    eval_manifest: str = option("data/my_voice_eval.jsonl", "evaluation manifest (JSONL), decoded at every eval")
    max_steps: int = option(500, "optimizer steps to train")
    eval_interval: int = option(50, "evaluate (greedy transcripts: WER, CER, term recall) every N steps; step 0 is the baseline")
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
    target_modules: list[str] = option(list(DEFAULT_TARGET_MODULES), "Linear layer names to adapt within the chosen sites")
    replay_manifest: str | None = option(None, "general-domain manifest mixed into training against forgetting")
    replay_ratio: float = option(0.0, "replay utterances per training utterance in each epoch (e.g. 0.25)")
    vocabulary: str | None = option(None, "vocabulary file: finds jargon terms in eval references that lack a `terms` field")
    early_stop_patience: int = option(0, "stop after N evals without a better WER (0: off)")
    device: str = option("auto", "compute device", choices=DEVICES)
    precision: str = option("fp32", "autocast precision for the forward pass", choices=PRECISIONS)
    num_threads: int = option(0, "torch CPU threads (0: all cores, at most 8)")

    def __post_init__(self) -> None:
        problems: list[str] = []

        def need(ok: bool, name: str, expected: str) -> None:
            if not ok:
                problems.append(f"{name}: expected {expected}, got {getattr(self, name)!r}")

        for name in ("max_steps", "eval_interval", "log_interval", "batch_size", "grad_accum", "eval_batch_size", "lora_r", "lora_alpha"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) > 0, name, "a positive integer")
        for name in ("checkpoint_interval", "warmup_steps", "early_stop_patience", "num_threads"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= 0, name, "an integer >= 0")
        need(isinstance(self.lr, (int, float)) and 0 < self.lr < 1, "lr", "a number in (0, 1), e.g. 3e-4")
        need(0 <= self.lora_dropout < 1, "lora_dropout", "a number in [0, 1)")
        need(0 <= self.replay_ratio <= 10, "replay_ratio", "a number in [0, 10]")
        need(self.weight_decay >= 0, "weight_decay", "a number >= 0")
        need(self.max_grad_norm >= 0, "max_grad_norm", "a number >= 0 (0 disables clipping)")
        need(self.adapter_sites in ADAPTER_SITES, "adapter_sites", f"one of {', '.join(ADAPTER_SITES)}")
        need(self.device in DEVICES, "device", f"one of {', '.join(DEVICES)}")
        need(self.precision in PRECISIONS, "precision", f"one of {', '.join(PRECISIONS)}")
        need(bool(self.target_modules) and all(isinstance(m, str) and m for m in self.target_modules),
             "target_modules", "a non-empty list of layer names such as q_proj v_proj")
        need(bool(self.model_id), "model_id", "a hub id, a folder or embedded:moonshine-base")
        if self.replay_ratio > 0 and not self.replay_manifest:
            problems.append("replay_ratio: a ratio > 0 needs --replay-manifest, got none (set it or use --replay-ratio 0)")
        if problems:
            raise ConfigError("invalid experiment config: " + "; ".join(problems))

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
        return cls(**data)

    def with_absolute_paths(self, base: str | os.PathLike = ".") -> "ExperimentConfig":
        """Paths as absolute, so the background process finds them whatever its working folder."""
        updates = {}
        for name in PATH_FIELDS:
            value = getattr(self, name)
            if value:
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
        return cls.from_dict(data, source=str(path))


def adapter_kind(config: dict[str, Any]) -> str:
    """"DoRA" or "LoRA" for a config (as saved in config.json or an adapter's sidecar)."""
    return "DoRA" if config.get("use_dora") else "LoRA"

