"""Resumable checkpoints: adapter weights, optimizer, scheduler, RNG states and step.

Tensors go to safetensors; the rest of each state (hyper-parameters, step counters, RNG
states as lists) to JSON. Nothing is pickled. The last `keep` checkpoints are kept, so that when
the newest does not load (a crash or a full disk mid-write, a bad sector) the one before it does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lora_training.atomic import atomic_replace_dir, atomic_write_json, staging_dir
from lora_training.errors import LoraTrainingError

log = logging.getLogger("lora_training.train")


class CheckpointError(LoraTrainingError):
    """A checkpoint cannot be written or read; names the checkpoint folder or file."""


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


def _read(path: Path, loader: Callable[[Path], Any]) -> Any:
    """One checkpoint file, any failure as a CheckpointError naming it."""
    try:
        return loader(path)
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: missing, expected a complete checkpoint") from e
    except (OSError, ValueError, SafetensorError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CheckpointError(f"{path}: unreadable, expected a complete checkpoint file, got {e}") from e


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def load_state_tree(folder: Path, name: str) -> Any:
    tensors = _read(folder / f"{name}.safetensors", lambda p: load_file(str(p)))
    skeleton = _read(folder / f"{name}.json", _load_json)
    try:
        return _join_tensors(skeleton, tensors)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{folder / f'{name}.json'}: does not match {name}.safetensors, "
                              f"expected the pair written together, got {type(e).__name__}: {e}") from e


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """A short digest of a state dict's names and values (as float32), for comparing adapters across ranks."""
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().to(torch.float32).numpy().tobytes())
    return h.hexdigest()[:16]


def seed_everything(seed: int) -> None:
    """Python's, NumPy's and torch's generators from the run's seed (adapter init, dropout)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
        try:
            save_file({k: v.detach().cpu().contiguous() for k, v in adapter.items()}, str(tmp / "adapter.safetensors"))
            save_state_tree(tmp, "optimizer", optimizer)
            save_state_tree(tmp, "rng", capture_rng())
            atomic_write_json(tmp / "trainer_state.json", {"step": step, "scheduler": scheduler, **extra})
            # Data, then names: a power cut after the rename must find complete files, not empty ones.
            for path in [*tmp.iterdir(), tmp]:
                _fsync(path)
            atomic_replace_dir(tmp, final)
            _fsync(self.root)
        except (OSError, SafetensorError) as e:
            shutil.rmtree(tmp, ignore_errors=True)
            got = f"[Errno {e.errno}] {e.strerror}" if isinstance(e, OSError) and e.strerror else str(e)
            raise CheckpointError(f"{final}: cannot write checkpoint, expected free space and a writable folder, "
                                  f"got {got.replace(str(tmp), str(final))}") from e
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for old in self.all()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def all(self) -> list[Path]:
        """Every checkpoint folder, oldest first, complete or not (loading tells)."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("step_*") if p.is_dir())

    def newest_step(self) -> int:
        """The step of the newest checkpoint whose trainer_state.json reads, else 0: what a resume
        starts from, known before the model loads."""
        for folder in reversed(self.all()):
            try:
                return int(_read(folder / "trainer_state.json", _load_json)["step"])
            except (CheckpointError, KeyError, TypeError, ValueError):
                continue
        return 0

    def load_latest(self) -> tuple[Path, dict[str, Any]] | None:
        """The newest checkpoint that loads, and its contents; None when there is none. One that does
        not load is logged by path and the one before it is tried; when none loads, CheckpointError."""
        for stale in self.root.glob(".step_*.tmp"):  # staging left by a killed writer; the run lock is ours
            shutil.rmtree(stale, ignore_errors=True)
        failures = []
        for folder in reversed(self.all()):
            try:
                return folder, self.load(folder)
            except CheckpointError as e:
                log.warning("checkpoint not usable: %s; trying the one before it", e)
                failures.append(str(e))
        if failures:
            raise CheckpointError(f"{self.root}: no checkpoint loads, expected one complete checkpoint, "
                                  f"got {len(failures)} damaged: " + "; ".join(failures))
        return None

    @staticmethod
    def load(folder: Path) -> dict[str, Any]:
        trainer_state = _read(folder / "trainer_state.json", _load_json)
        if not isinstance(trainer_state, dict) or not isinstance(trainer_state.get("step"), int):
            raise CheckpointError(f"{folder / 'trainer_state.json'}: invalid, expected an object with a step, "
                                  f"got {str(trainer_state)[:60]}")
        return {
            "adapter": _read(folder / "adapter.safetensors", lambda p: load_file(str(p))),
            "optimizer": load_state_tree(folder, "optimizer"),
            "rng": load_state_tree(folder, "rng"),
            **trainer_state,
        }


def restore(folder: Path, ckpt: dict[str, Any], model, optimizer, scheduler, *, dev_digest: str) -> None:
    """Put a loaded checkpoint's state into the run; a checkpoint of another run says so in one line."""
    from peft import set_peft_model_state_dict

    try:
        set_peft_model_state_dict(model, ckpt["adapter"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        restore_rng(ckpt["rng"])
    except (KeyError, RuntimeError, ValueError) as e:
        raise LoraTrainingError(f"{folder}: does not fit this run, expected a checkpoint of the same "
                                f"adapter config (lora_r, sites, target_modules), got {e}") from e
    if ckpt.get("dev_digest", dev_digest) != dev_digest:
        raise LoraTrainingError(f"{folder}: dev set, expected the one its best WER was measured on, got another "
                                "(train_manifest, seed or the dev options changed); start a new run")
