"""`evaluate NAME`: the best adapter of a finished run, on its own eval manifest and a safety set.

Everything comes from outputs/NAME/config.json (base model, eval manifest, vocabulary), so the
numbers answer "did this run's adapter help?" with no option to get wrong; the result goes to
outputs/NAME/eval_results.json, which `report` and `compare` read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lora_training.errors import LoraTrainingError

# The adapter folders a run may hold, preferred first: best eval WER, then the final one.
ADAPTER_FOLDERS = ("best_adapter", "adapter")


def run_adapter(run_dir: Path) -> Path:
    for name in ADAPTER_FOLDERS:
        if (run_dir / name / "adapter_config.json").is_file():
            return run_dir / name
    raise LoraTrainingError(f"{run_dir}: no adapter, expected {' or '.join(ADAPTER_FOLDERS)}/ from a run that "
                            f"reached its first eval; check `just status {run_dir.name}`")


def evaluate_run(name: str, *, outputs: str | Path = "outputs", safety: str | None = "builtin",
                 progress: bool = False, **overrides: Any) -> dict[str, Any]:
    """Evaluate outputs/NAME's best adapter against its base model; returns (and writes) the result JSON.

    `safety` is a manifest path, "builtin" or None (no safety gate); `overrides` are further
    EvalOptions fields (safety_budget, batch_size, ...).
    """
    from lora_training.config import ExperimentConfig
    from lora_training.evaluation.evaluate import RESULTS_FILE, EvalOptions, run_evaluation
    from lora_training.runners.experiment import run_dir_for

    run_dir = run_dir_for(name, outputs)
    if not (run_dir / "config.json").is_file():
        raise LoraTrainingError(f"{run_dir}: no such experiment (no config.json)")
    cfg = ExperimentConfig.load(run_dir / "config.json")
    options = EvalOptions(model_id=cfg.model_id, adapter_dir=str(run_adapter(run_dir)), manifest=cfg.eval_manifest,
                          vocabulary=cfg.vocabulary, safety_manifest=safety, output=str(run_dir / RESULTS_FILE),
                          **{"num_threads": cfg.num_threads, **overrides})
    return run_evaluation(options, progress=progress)
