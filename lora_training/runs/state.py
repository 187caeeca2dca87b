"""`state.json`: the whole visible life of a run, rewritten atomically at every change.

`status` and `poll` read this file (never the process), so it must always be complete.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from lora_training.atomic import atomic_write_json
from lora_training.runs import STATE_FILE

PHASES = ("queued", "running", "completed", "failed", "stopped", "crashed")
ACTIVE = ("queued", "running")
TERMINAL = ("completed", "failed", "stopped", "crashed")


def read_state(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / STATE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


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
