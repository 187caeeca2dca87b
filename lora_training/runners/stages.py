"""The pipeline's stage kinds: each a thin adapter over one library function, taking that function's
options dataclass (built from the stage's TOML keys by `pipeline.stage_options`) and a Context.

The small dataclasses here hold the keys of stages that are not one function's options (the
experiment a wait, check, evaluate or report stage is about), so every key is checked the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from lora_training.errors import ConfigError, LoraTrainingError
from lora_training.options import option
from lora_training.runs import RunDir
from lora_training.runs.state import ACTIVE


class StageFailed(LoraTrainingError):
    """A stage's work failed; the message names the stage, the reason and where to look."""


@dataclass
class Context:
    outputs: str
    resuming: bool
    overwrite: bool = False
    progress: bool = True
    write: Callable[[str], None] = print

    def say(self, text: str) -> None:
        self.write(text)


# --- stage options: the keys of stage kinds that are not one library function's options ----

@dataclass
class ExperimentStage:
    """A wait, check or report stage's key, and the `experiment` of run-experiment and evaluate."""

    experiment: str = option(help="experiment name: its folder is OUTPUTS/NAME")

    def __post_init__(self) -> None:
        RunDir.named(self.experiment)  # refuses "../x" or "a/b": a run folder stays inside --outputs


@dataclass
class WaitStage(ExperimentStage):
    interval: float = option(2.0, "seconds between looks at the run's state")


@dataclass
class EvaluateStage(ExperimentStage):
    """`evaluate`'s own keys; every other key must be an EvalOptions field that `evaluate NAME` takes."""

    safety: str | bool = option("builtin", "builtin, a general-domain manifest, or false (TOML has no null): "
                                           "no safety gate")
    halt_on_failure: bool = option(True, "a clip failure or a failed safety gate halts the pipeline")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.safety is True:
            raise ConfigError("safety: expected builtin, a manifest path or false, got true")


# --- the stages -------------------------------------------------------------------------

def split_stage(opts, ctx: Context) -> dict:
    from lora_training.data.split import split_dataset

    # A pipeline run with --overwrite may replace its own derived manifests too.
    summary = split_dataset(replace(opts, overwrite=opts.overwrite or ctx.overwrite))
    ctx.say(summary.render())
    return summary.to_dict()


def synth_stage(opts, ctx: Context) -> dict:
    from lora_training.synth.synthesize import synthesize_dataset

    summary = synthesize_dataset(opts, progress=ctx.progress)
    ctx.say(summary.render())
    return summary.to_dict()


def synth_check_stage(opts, ctx: Context) -> dict:
    """The synth stage's backend checked without synthesising: its package, its weights and the
    user's reference clips, so a cloning pipeline fails in its first second, not hours in."""
    from lora_training.synth.tts import BACKENDS, BackendOptions

    backend = BACKENDS[opts.backend](BackendOptions(exclude_voices=opts.exclude_voices, voices=opts.voices,
                                                    reference_manifest=opts.reference_manifest))
    backend.check()
    ctx.say(f"{opts.backend}: package, weights and references ready")
    return {"backend": opts.backend, "fingerprint": backend.fingerprint()}


def mix_stage(opts, ctx: Context) -> dict:
    from lora_training.data.mix import mix_manifests

    # A pipeline run with --overwrite may replace its own derived manifests too.
    summary = mix_manifests(replace(opts, overwrite=opts.overwrite or ctx.overwrite))
    ctx.say(summary.render())
    return summary.to_dict()


def run_experiment_stage(stage: ExperimentStage, cfg, ctx: Context) -> dict:
    """Starts the run in the background (or resumes it after a crash/stop); `wait` follows it.

    An existing folder is continued only with --resume and replaced only with --overwrite (which
    `start_experiment` does after checking every input, naming what it removed); without either,
    run_pipeline refused to start at all.
    """
    from lora_training.runners.experiment import effective_state, start_experiment

    name, cfg = stage.experiment, cfg.with_absolute_paths()
    run = RunDir.named(name, ctx.outputs)
    phase = (effective_state(run.path) or {}).get("phase")
    if ctx.resuming and phase in ACTIVE:
        ctx.say(f"{name}: already {phase}, following it")
        return {"experiment": name, "run_dir": str(run.path)}
    if ctx.resuming and phase == "completed":
        return {"experiment": name, "run_dir": str(run.path)}
    resume = ctx.resuming and phase in ("stopped", "crashed", "failed")
    info = start_experiment(name, cfg, outputs=ctx.outputs, resume=resume, overwrite=ctx.overwrite, say=ctx.say)
    ctx.say(f"{name}: {'resumed' if resume else 'started'} pid {info['pid']}, log {info['log']}")
    return {"experiment": name, "run_dir": str(run.path), "log": info["log"]}


def occupied(folder: Path) -> bool:
    """An experiment folder holding anything (an empty one loses nothing when reused)."""
    return folder.is_dir() and any(folder.iterdir())


def wait_stage(opts: WaitStage, ctx: Context) -> dict:
    from lora_training.runners.experiment import EXIT_CODES, poll

    name = opts.experiment
    code = poll(name, outputs=ctx.outputs, write=ctx.say if ctx.progress else (lambda _: None),
                interval=float(opts.interval))
    if code != EXIT_CODES["completed"]:
        run = RunDir.named(name, ctx.outputs)
        state = run.read_state() or {}
        phase = next(p for p, c in EXIT_CODES.items() if c == code)
        raise StageFailed(f"experiment {name} ended {phase}: {state.get('error') or 'see its log'} "
                          f"(log: {run.log})")
    return {"experiment": name, "phase": "completed"}


def check_stage(opts: ExperimentStage, ctx: Context) -> dict:
    """Quick sanity check of a finished run: its logs exist and its last eval transcribed text."""
    name = opts.experiment
    run = RunDir.named(name, ctx.outputs)
    missing = [f.name for f in (run.log, run.metrics, run.config) if not f.is_file()]
    if missing:
        raise StageFailed(f"experiment {name}: missing {', '.join(missing)} in {run.path}")
    evals = [r for r in run.read_metrics() if r["type"] == "eval"]
    if not evals:
        raise StageFailed(f"experiment {name}: no evaluation in {run.metrics}")
    samples = evals[-1].get("samples") or []
    if not any(s["hyp"].strip() for s in samples):
        raise StageFailed(f"experiment {name}: the adapted model transcribed no text at step {evals[-1]['step']} "
                          f"(log: {run.log})")
    for row in samples:
        ctx.say(f"  ref: {row['ref']}\n  hyp: {row['hyp']}")
    return {"experiment": name, "step": evals[-1]["step"], "wer": evals[-1]["wer"]}


def evaluate_stage(opts: EvaluateStage, overrides: dict, ctx: Context) -> dict:
    """Best adapter vs baseline on the run's eval manifest and a safety set; a failed gate halts."""
    from lora_training.reporting.console import print_results
    from lora_training.runners.evaluation import evaluate_run

    name = opts.experiment
    safety = None if opts.safety in (False, "none") else opts.safety
    result = evaluate_run(name, outputs=ctx.outputs, safety=safety, progress=ctx.progress, **overrides)
    if ctx.progress:
        print_results(result)
    output = RunDir.named(name, ctx.outputs).eval_results
    problems = "; ".join(result["status"]["problems"])
    if problems and opts.halt_on_failure:
        raise StageFailed(f"evaluation of {name} failed: {problems} (results: {output})")
    if problems:
        ctx.say(f"evaluation of {name}: {problems} (halt_on_failure = false: carrying on)")
    return {"experiment": name, "output": str(output), "ok": result["status"]["ok"]}


def report_stage(opts: ExperimentStage, ctx: Context) -> dict:
    from lora_training.reporting.report import write_report

    path = write_report(RunDir.named(opts.experiment, ctx.outputs).path)
    ctx.say(f"report: {path}")
    return {"report": str(path)}
