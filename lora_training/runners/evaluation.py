"""`evaluate NAME`: the best adapter of a finished run, on its own eval manifest and a safety set.

Everything comes from outputs/NAME/config.json (base model, eval manifest, vocabulary), so the
numbers answer "did this run's adapter help?" with no option to get wrong; the result goes to
outputs/NAME/eval_results.json, which `report` and `compare` read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_training.errors import ConfigError
from lora_training.options import option
from lora_training.runs import DEFAULT_OUTPUTS, RunDir, RunRef

# Options of `transcribe` that `evaluate NAME` takes from the run (config.json, its adapter, its folder) instead.
FROM_RUN = ("model_id", "adapter_dir", "export_dir", "manifest", "audio", "output", "baseline", "vocabulary", "safety_manifest",
            "max_chunk_seconds")


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

    check_overrides(overrides, f"evaluate {name}")
    run = RunDir.named(name, outputs)
    cfg = run.load_config()
    # `--runtime X` scores the run's export (just export NAME) in that runtime, beside the export.
    runtime = overrides.get("runtime", "torch")
    system = ({"adapter_dir": str(run.preferred_adapter()), "output": str(run.eval_results)} if runtime == "torch"
              else {"export_dir": str(run.export), "output": str(run.export / f"eval_results_{runtime}.json")})
    options = EvalOptions(model_id=cfg.model_id, manifest=cfg.eval_manifest, vocabulary=cfg.vocabulary,
                          safety_manifest=safety, **system, **{"num_threads": cfg.num_threads, **overrides})
    return run_evaluation(options, progress=progress)


def overridable() -> list[str]:
    """The EvalOptions fields `evaluate NAME` takes (decoding, threads, the safety budget)."""
    from lora_training.evaluation.evaluate import EvalOptions

    return [f.name for f in dataclasses.fields(EvalOptions) if f.name not in FROM_RUN]


def check_overrides(overrides: dict[str, Any], source: str) -> None:
    """Refuse now what `evaluate_run` would refuse only after reading the run: a key it does not take
    (unknown, or one the run decides) or a bad value. The run's own fields stand in as placeholders,
    so a pipeline can check its evaluate stage before the run exists."""
    from lora_training.evaluation.evaluate import EvalOptions

    allowed = overridable()
    problems = []
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)}, expected only: {', '.join(allowed)}")
    try:
        EvalOptions(manifest="<the run's eval manifest>", adapter_dir="<the run's adapter>",
                    **{k: v for k, v in overrides.items() if k in allowed})
    except (ConfigError, TypeError, ValueError) as e:
        problems.append(str(e))
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
