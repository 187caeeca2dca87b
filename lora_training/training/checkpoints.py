"""Resumable checkpoints: adapter weights, optimizer, scheduler, RNG states and step.

Tensors go to safetensors; the rest of each state (hyper-parameters, step counters, RNG
states as lists) to JSON. Nothing is pickled. The last `keep` checkpoints are kept.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from lora_training.atomic import atomic_replace_dir, atomic_write_json, staging_dir


def _split_tensors(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested structure by a reference into `tensors`."""
    if isinstance(obj, torch.Tensor):
        key = prefix or "_"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _split_tensors(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_split_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def _join_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict) and "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {k: _join_tensors(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_join_tensors(v, tensors) for v in obj]
    return obj


def save_state_tree(folder: Path, name: str, state: Any) -> None:
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split_tensors(state, name, tensors)
    save_file(tensors, str(folder / f"{name}.safetensors"))
    atomic_write_json(folder / f"{name}.json", skeleton)


def load_state_tree(folder: Path, name: str) -> Any:
    tensors = load_file(str(folder / f"{name}.safetensors"))
    skeleton = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
    return _join_tensors(skeleton, tensors)


def capture_rng() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "python": [list(random.getstate()[1]), random.getstate()[0], random.getstate()[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }


def restore_rng(state: dict[str, Any]) -> None:
    internal, version, gauss = state["python"]
    random.setstate((version, tuple(int(x) for x in internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])


class CheckpointManager:
    """`checkpoints/step_000120/` folders, written atomically, the newest `keep` kept."""

    def __init__(self, root: str | Path, keep: int = 2):
        self.root = Path(root)
        self.keep = keep

    def save(self, step: int, *, adapter: dict[str, torch.Tensor], optimizer: dict, scheduler: dict,
             extra: dict[str, Any]) -> Path:
        final = self.root / f"step_{step:06d}"
        tmp = staging_dir(final)
        save_file({k: v.detach().cpu().contiguous() for k, v in adapter.items()}, str(tmp / "adapter.safetensors"))
        save_state_tree(tmp, "optimizer", optimizer)
        save_state_tree(tmp, "rng", capture_rng())
        atomic_write_json(tmp / "trainer_state.json", {"step": step, "scheduler": scheduler, **extra})
        atomic_replace_dir(tmp, final)
        for old in self.all()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def all(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("step_*") if p.is_dir() and (p / "trainer_state.json").exists())

    def latest(self) -> Path | None:
        found = self.all()
        return found[-1] if found else None

    @staticmethod
    def load(folder: Path) -> dict[str, Any]:
        trainer_state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        return {
            "adapter": load_file(str(folder / "adapter.safetensors")),
            "optimizer": load_state_tree(folder, "optimizer"),
            "rng": load_state_tree(folder, "rng"),
            **trainer_state,
        }
