"""`evaluate NAME`: the best adapter of a finished run, on its own eval manifest and a safety set.

Everything comes from outputs/NAME/config.json (base model, eval manifest, vocabulary), so the
numbers answer "did this run's adapter help?" with no option to get wrong; the result goes to
outputs/NAME/eval_results.json, which `report` and `compare` read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_training.options import option
from lora_training.runs import DEFAULT_OUTPUTS, RunDir, RunRef


@dataclass
class EvaluateRunOptions(RunRef):
    """`evaluate NAME`; the decoding and safety-budget options are EvalOptions' own."""

    safety: str = option("builtin", "safety set: builtin (real English speech from Debian packages), a "
                                    "general-domain manifest PATH, or none (no gate)", metavar="builtin|none|PATH",
                         flag="--safety --safety-manifest")


def evaluate_run(name: str, *, outputs: str | Path = DEFAULT_OUTPUTS, safety: str | None = "builtin",
                 progress: bool = False, **overrides: Any) -> dict[str, Any]:
    """Evaluate outputs/NAME's best adapter against its base model; returns (and writes) the result JSON.

    `safety` is a manifest path, "builtin" or None (no safety gate); `overrides` are further
    EvalOptions fields (safety_budget, batch_size, ...).
    """
    from lora_training.evaluation.evaluate import EvalOptions, run_evaluation

    run = RunDir.named(name, outputs)
    cfg = run.load_config()
    options = EvalOptions(model_id=cfg.model_id, adapter_dir=str(run.preferred_adapter()), manifest=cfg.eval_manifest,
                          vocabulary=cfg.vocabulary, safety_manifest=safety, output=str(run.eval_results),
                          **{"num_threads": cfg.num_threads, **overrides})
    return run_evaluation(options, progress=progress)
