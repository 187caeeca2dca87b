"""`state.json`: the whole visible life of a run, rewritten atomically at every change.

`status` and `poll` read this file (never the process), so it must always be complete.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from lora_training.atomic import atomic_write_json
from lora_training.errors import LoraTrainingError
from lora_training.runs import STATE_FILE

PHASES = ("queued", "running", "completed", "failed", "stopped", "crashed")
ACTIVE = ("queued", "running")
TERMINAL = ("completed", "failed", "stopped", "crashed")
# Fields that status, poll and stop compute with: a wrong type would fail far from the file.
_NUMBERS = {"pid": int, "step": int, "max_steps": int, "pid_started": (int, float), "updated_at": (int, float)}
_EXPECTED = f"a JSON object with a phase ({', '.join(PHASES)})"


class StateError(LoraTrainingError):
    """A state.json that cannot be used; the message names the file and what is wrong with it."""


def read_state(run_dir: str | Path) -> dict[str, Any] | None:
    """The state, or None when there is none; a damaged one raises StateError naming the file."""
    path = Path(run_dir) / STATE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as e:
        raise StateError(f"{path}: unreadable run state, expected UTF-8 text, got {e.reason} at byte {e.start}") from e
    except OSError as e:
        raise StateError(f"{path}: unreadable run state, expected a readable file, got {e.strerror}") from e
    if not text.strip():
        raise StateError(f"{path}: empty run state, expected {_EXPECTED}, got an empty file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise StateError(f"{path}:{e.lineno}: invalid run state, expected {_EXPECTED}, "
                         f"got invalid JSON: {e.msg} (column {e.colno})") from e
    if not isinstance(data, dict):
        raise StateError(f"{path}: invalid run state, expected {_EXPECTED}, got a JSON {type(data).__name__}")
    problems = [] if data.get("phase") in PHASES else [f"phase: expected one of {', '.join(PHASES)}, got {data.get('phase')!r}"]
    for key, kind in _NUMBERS.items():
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
            problems.append(f"{key}: expected a number, got {value!r}")
    if problems:
        raise StateError(f"{path}: invalid run state, " + "; ".join(problems))
    return data


class RunState:
    """Holds the state dict and writes it through on every update."""

    def __init__(self, run_dir: str | Path, initial: dict[str, Any] | None = None):
        self.path = Path(run_dir) / STATE_FILE
        self.data: dict[str, Any] = dict(initial or read_state(run_dir) or {})

    def update(self, **fields: Any) -> dict[str, Any]:
        if "phase" in fields and fields["phase"] not in PHASES:
            raise ValueError(f"unknown phase {fields['phase']!r}")
        self.data.update(fields, updated_at=time.time())
        atomic_write_json(self.path, self.data)
        return self.data


class NullRunState:
    """For non-main ranks: same interface, writes nothing."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def update(self, **fields: Any) -> dict[str, Any]:
        self.data.update(fields)
        return self.data
