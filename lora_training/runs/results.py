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
