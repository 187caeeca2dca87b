"""Metrics loggers: `metrics.jsonl` (one JSON object per line, flushed per line) and a null one."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

from lora_training.atomic import atomic_write_text


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as strings so the file stays valid JSON lines."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class JsonlMetricsLogger:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def log(self, kind: str, step: int, **values: Any) -> None:
        record = {"type": kind, "step": step, "time": round(time.time(), 3), **values}
        self._file.write(json.dumps(_clean(record), ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class NullMetricsLogger:
    """Used on non-main ranks so the recipe never branches on `if logger`."""

    def log(self, kind: str, step: int, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics file; a torn last line (a crash mid-write) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    # "\n" only: transcripts in eval samples may hold U+2028, which JSON leaves raw.
    for line in path.read_text(encoding="utf-8").split("\n"):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def drop_rows_after(path: str | Path, step: int | None, *,
                    redo: Callable[[dict[str, Any]], bool] = lambda row: False) -> int:
    """Before a resumed run appends, drop the rows it will log again: those after the checkpoint's
    `step` (all of them when `step` is None: the run restarts from scratch), and those `redo` names
    (rows logged after the checkpoint of their own step). Always rewritten, and atomically: a torn
    last line from a crash must not glue onto the next row appended."""
    path = Path(path)
    if not path.exists():
        return 0
    records = read_metrics(path)
    kept = [r for r in records
            if step is not None and isinstance(r.get("step"), int) and r["step"] <= step and not redo(r)]
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
    return len(records) - len(kept)
