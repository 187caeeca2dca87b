"""The evaluation result schema: `eval_results.json` (and `transcribe --output`), written and read here.

The result JSON is the source of truth of every number the user sees; the console table, the
markdown report and `compare` are views of it. A reader refuses a file of another schema version
rather than showing numbers it may misread. Fields: docs/evaluation.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lora_training.errors import LoraTrainingError

SCHEMA_VERSION = 1
# The systems a result compares, in display order.
SYSTEMS = ("baseline", "adapter")


def write_results(path: str | os.PathLike, result: dict[str, Any]) -> Path:
    from lora_training.atomic import atomic_write_json

    return atomic_write_json(path, {"schema_version": SCHEMA_VERSION, **result})


def read_results(path: str | os.PathLike, *, fix: str = "rerun `just evaluate`") -> dict[str, Any] | None:
    """The result at `path`, None when there is none; an error naming the file when it is unusable."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise LoraTrainingError(f"{path}:{e.lineno}: invalid JSON ({e.msg}); {fix}") from e
    version = results.get("schema_version") if isinstance(results, dict) else None
    if version != SCHEMA_VERSION:
        raise LoraTrainingError(f"{path}: unsupported result, expected schema_version {SCHEMA_VERSION}, "
                                f"got {version!r}; {fix}")
    return results


# --- reading headline metrics from a score summary (metrics.score) ------------------------

_DELTA_PATHS = {
    "wer": ("wer",),
    "cer": ("cer",),
    "exact_wer": ("exact_wer",),
    "term_recall": ("term_recall", "overall", "recall"),
    "term_recall_seen": ("term_recall", "seen", "recall"),
    "term_recall_unseen": ("term_recall", "unseen", "recall"),
    "symbol_accuracy": ("symbol_accuracy", "accuracy"),
    "false_alarms": ("term_recall", "false_alarms", "total"),
    "n_looping": ("n_looping",),
}


# Where a score summary keeps a headline metric's 95% interval (metrics.score).
_INTERVAL_PATHS = {"wer": ("wer_interval",), "cer": ("cer_interval",),
                   "term_recall": ("term_recall", "overall", "interval")}


def interval(summary: dict | None, name: str) -> list[float] | None:
    """A headline metric's 95% interval, None when it has none."""
    value: Any = summary
    for key in _INTERVAL_PATHS.get(name, ("-",)):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def term_counts(summary: dict | None, name: str) -> str | None:
    """"hits/total" behind a term-recall metric (term_recall, _seen, _unseen); None for other metrics."""
    part = {"term_recall": "overall", "term_recall_seen": "seen", "term_recall_unseen": "unseen"}.get(name)
    block = ((summary or {}).get("term_recall") or {}).get(part) if part else None
    return f"{block.get('hits', 0)}/{block.get('total', 0)}" if block else None


def metric(summary: dict | None, name: str):
    """A headline number of a score summary by short name (see _DELTA_PATHS); None when absent."""
    value: Any = summary
    for key in _DELTA_PATHS[name]:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def deltas(baseline: dict | None, adapter: dict | None) -> dict[str, float | None] | None:
    """adapter - baseline for each headline metric; None where either side has no value."""
    if baseline is None or adapter is None:
        return None
    out = {}
    for name in _DELTA_PATHS:
        a, b = metric(adapter, name), metric(baseline, name)
        out[name] = None if a is None or b is None else round(a - b, 6)
    return out
