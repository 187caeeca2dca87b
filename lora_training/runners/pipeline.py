"""Unattended pipelines: a TOML list of stages run in order, halting at the first failure.

Each stage kind is a thin adapter over one library function (a table, not an if-chain); its
TOML keys are that function's options. The pipeline's own state is a file,
`outputs/pipelines/NAME/state.json`, like an experiment's: `--resume` skips the stages already
done and continues a training stage from its checkpoint.

    name = "vocab_expansion"
    [[stages]]
    name = "split"                 # unique, shown in progress and errors
    kind = "split"                 # split | synth | mix | run-experiment | wait | check | evaluate | report
    # skipped when every listed file exists (e.g. a split already made by hand)
    skip_if_exists = ["data/my_voice_train.jsonl", "data/my_voice_eval.jsonl"]
    input = "data/my_voice_all.jsonl"
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lora_training.errors import ConfigError, LoraTrainingError
from lora_training.options import from_dict, option
from lora_training.runs import DEFAULT_OUTPUTS, PIPELINES_DIR, STATE_FILE, RunDir
from lora_training.runs.state import RunState, read_state

# Keys every stage may carry besides its function's options.
COMMON_KEYS = {"name", "kind", "skip_if_exists"}


@dataclass
class Stage:
    name: str
    kind: str
    options: dict[str, Any]
    skip_if_exists: list[str] = field(default_factory=list)


@dataclass
class Pipeline:
    name: str
    path: str
    outputs: str
    stages: list[Stage]


@dataclass
class PipelineOptions:
    config: str = option(None, "pipeline file, e.g. pipelines/vocab_expansion.toml", required=True)
    outputs: str = option(DEFAULT_OUTPUTS, "folder for experiments and outputs/pipelines/NAME/state.json")
    resume: bool = option(False, "skip stages already done; resume a crashed training stage")
    fail_stage: str | None = option(None, "drill: force this stage to fail", metavar="NAME")


class StageFailed(LoraTrainingError):
    """A stage's work failed; the message names the stage, the reason and where to look."""


# --- the stage table ----------------------------------------------------------------------

def _split(opts: dict, ctx: "Context") -> dict:
    from lora_training.data.split import SplitOptions, split_dataset

    summary = split_dataset(from_dict(SplitOptions, opts, "split stage"))
    ctx.say(summary.render())
    return summary.to_dict()


def _synth(opts: dict, ctx: "Context") -> dict:
    from lora_training.synth.synthesize import SynthConfig, synthesize_dataset

    summary = synthesize_dataset(from_dict(SynthConfig, opts, "synth stage"), progress=ctx.progress)
    ctx.say(summary.render())
    return summary.to_dict()


def _mix(opts: dict, ctx: "Context") -> dict:
    from lora_training.data.mix import MixOptions, mix_manifests

    summary = mix_manifests(from_dict(MixOptions, opts, "mix stage"))
    ctx.say(summary.render())
    return summary.to_dict()


def _run_experiment(opts: dict, ctx: "Context") -> dict:
    """Starts the run in the background (or resumes it after a crash/stop); `wait` follows it."""
    from lora_training.config import ExperimentConfig
    from lora_training.runners.experiment import effective_state, start_experiment

    opts = dict(opts)
    name = opts.pop("experiment")
    run_dir = RunDir.named(name, ctx.outputs).path
    state = effective_state(run_dir)
    cfg = ExperimentConfig.from_dict(opts, source=f"run-experiment stage {name}").with_absolute_paths()
    if state and state.get("phase") in ("queued", "running"):
        ctx.say(f"{name}: already {state['phase']}, following it")
        return {"experiment": name, "run_dir": str(run_dir)}
    if state and state.get("phase") == "completed" and ctx.resuming:
        return {"experiment": name, "run_dir": str(run_dir)}
    resume = ctx.resuming and state is not None and state.get("phase") in ("stopped", "crashed", "failed")
    info = start_experiment(name, cfg, outputs=ctx.outputs, resume=resume, overwrite=not resume)
    ctx.say(f"{name}: {'resumed' if resume else 'started'} pid {info['pid']}, log {info['log']}")
    return {"experiment": name, "run_dir": str(run_dir), "log": info["log"]}


def _wait(opts: dict, ctx: "Context") -> dict:
    from lora_training.runners.experiment import EXIT_CODES, poll

    name = opts["experiment"]
    code = poll(name, outputs=ctx.outputs, write=ctx.say if ctx.progress else (lambda _: None),
                interval=float(opts.get("interval", 2.0)))
    if code != EXIT_CODES["completed"]:
        run = RunDir.named(name, ctx.outputs)
        state = run.read_state() or {}
        phase = next(p for p, c in EXIT_CODES.items() if c == code)
        raise StageFailed(f"experiment {name} ended {phase}: {state.get('error') or 'see its log'} "
                          f"(log: {run.log})")
    return {"experiment": name, "phase": "completed"}


def _check(opts: dict, ctx: "Context") -> dict:
    """Quick sanity check of a finished run: its logs exist and its last eval transcribed text."""
    name = opts["experiment"]
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


def _evaluate(opts: dict, ctx: "Context") -> dict:
    """Best adapter vs baseline on the run's eval manifest and a safety set; a failed gate halts."""
    from lora_training.reporting.console import print_results
    from lora_training.runners.evaluation import evaluate_run

    opts = dict(opts)
    name = opts.pop("experiment")
    if opts.get("safety") is False:  # TOML has no null: `safety = false` turns the safety set off
        opts["safety"] = None
    halt = opts.pop("halt_on_failure", True)
    result = evaluate_run(name, outputs=ctx.outputs, progress=ctx.progress, **opts)
    if ctx.progress:
        print_results(result)
    output = RunDir.named(name, ctx.outputs).eval_results
    problems = "; ".join(result["status"]["problems"])
    if problems and halt:
        raise StageFailed(f"evaluation of {name} failed: {problems} (results: {output})")
    if problems:
        ctx.say(f"evaluation of {name}: {problems} (halt_on_failure = false: carrying on)")
    return {"experiment": name, "output": str(output), "ok": result["status"]["ok"]}


def _report(opts: dict, ctx: "Context") -> dict:
    from lora_training.reporting.report import write_report

    path = write_report(RunDir.named(opts["experiment"], ctx.outputs).path)
    ctx.say(f"report: {path}")
    return {"report": str(path)}


STAGE_KINDS: dict[str, Callable[[dict, "Context"], dict]] = {
    "split": _split,
    "synth": _synth,
    "mix": _mix,
    "run-experiment": _run_experiment,
    "wait": _wait,
    "check": _check,
    "evaluate": _evaluate,
    "report": _report,
}


# --- loading ------------------------------------------------------------------------------

def load_pipeline(path: str | Path, *, outputs: str = DEFAULT_OUTPUTS) -> Pipeline:
    """Parse and check a pipeline file; every problem is reported at once, naming the stage."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: pipeline file not found") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML, {e}") from e
    problems = []
    unknown = sorted(set(data) - {"name", "stages"})
    if unknown:
        problems.append(f"{path}: unknown top-level key(s) {', '.join(unknown)}, expected name and [[stages]]")
    raw_stages = data.get("stages") or []
    if not raw_stages:
        problems.append(f"{path}: no stages, expected at least one [[stages]] table")
    stages, seen = [], set()
    for i, raw in enumerate(raw_stages, start=1):
        where = f"{path}: stage {i} ({raw.get('name', '?')})"
        kind = raw.get("kind")
        if kind not in STAGE_KINDS:
            problems.append(f"{where}: kind, expected one of {', '.join(STAGE_KINDS)}, got {kind!r}")
            continue
        name = raw.get("name") or f"{i}-{kind}"
        if name in seen:
            problems.append(f"{where}: duplicate stage name {name!r}, expected unique names")
        seen.add(name)
        options = {k: v for k, v in raw.items() if k not in COMMON_KEYS}
        stages.append(Stage(name=name, kind=kind, options=options, skip_if_exists=list(raw.get("skip_if_exists", []))))
    if problems:
        raise ConfigError("\n".join(problems))
    return Pipeline(name=str(data.get("name") or path.stem), path=str(path), outputs=outputs, stages=stages)


# --- running ------------------------------------------------------------------------------

@dataclass
class Context:
    outputs: str
    resuming: bool
    progress: bool = True
    write: Callable[[str], None] = print

    def say(self, text: str) -> None:
        self.write(text)


def pipeline_dir(pipeline: Pipeline) -> Path:
    return Path(pipeline.outputs) / PIPELINES_DIR / pipeline.name


def run_pipeline(pipeline: Pipeline, *, resume: bool = False, fail_stage: str | None = None,
                 write: Callable[[str], None] = print, progress: bool = True) -> dict[str, Any]:
    """Run every stage in order; returns the final state. Raises StageFailed at the first failure.

    `fail_stage` forces that stage to fail (a drill for halting and --resume).
    """
    names = [s.name for s in pipeline.stages]
    if fail_stage is not None and fail_stage not in names:
        raise ConfigError(f"--fail-stage: unknown stage {fail_stage!r}, expected one of {', '.join(names)}")
    folder = pipeline_dir(pipeline)
    previous = read_state(folder) or {}
    if previous and not resume and previous.get("phase") == "running":
        raise LoraTrainingError(f"pipeline {pipeline.name}: already running per {folder / STATE_FILE}; "
                                f"pass --resume if it is not")
    done = {s["name"] for s in previous.get("stages", []) if s.get("status") == "done"} if resume else set()
    state = RunState(folder, initial={"name": pipeline.name, "config": pipeline.path, "phase": "running",
                                      "started_at": time.time(), "stages": []})
    ctx = Context(outputs=pipeline.outputs, resuming=resume, progress=progress, write=write)
    rows = [{"name": s.name, "kind": s.kind, "status": "done" if s.name in done else "pending"} for s in pipeline.stages]
    state.update(stages=rows)
    total = len(pipeline.stages)
    for i, (stage, row) in enumerate(zip(pipeline.stages, rows), start=1):
        header = f"[{i}/{total}] {stage.name} ({stage.kind})"
        if row["status"] == "done":
            write(f"{header}: done earlier, skipped")
            continue
        existing = [p for p in stage.skip_if_exists if Path(p).exists()]
        if stage.skip_if_exists and len(existing) == len(stage.skip_if_exists):
            write(f"{header}: {', '.join(existing)} exist, skipped")
            row.update(status="done", skipped=True)
            state.update(stages=rows)
            continue
        write(f"{header} ...")
        row.update(status="running", started_at=time.time())
        state.update(stages=rows, current=stage.name)
        started = time.perf_counter()
        try:
            if stage.name == fail_stage:
                raise StageFailed("forced failure (--fail-stage)")
            result = STAGE_KINDS[stage.kind](stage.options, ctx)
        except (LoraTrainingError, TypeError, ValueError, OSError) as e:
            reason = _reason(stage, e)
            row.update(status="failed", error=reason, seconds=round(time.perf_counter() - started, 1))
            state.update(stages=rows, phase="failed", error=f"stage {stage.name}: {reason}", ended_at=time.time())
            raise StageFailed(f"pipeline {pipeline.name} halted at stage {stage.name} ({stage.kind}): {reason}; "
                              f"state: {folder / STATE_FILE}; fix it and rerun with --resume") from e
        row.update(status="done", seconds=round(time.perf_counter() - started, 1), result=_brief(result))
        state.update(stages=rows)
        write(f"{header}: done in {row['seconds']:.0f}s")
    return state.update(phase="completed", current=None, ended_at=time.time())


def _reason(stage: Stage, e: Exception) -> str:
    if isinstance(e, TypeError) and "unexpected keyword" in str(e):
        return f"unknown option for a {stage.kind} stage ({e})"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _brief(result: dict) -> dict:
    """Scalar fields of a stage result, for state.json (full results live in their own files)."""
    return {k: v for k, v in result.items() if isinstance(v, (str, int, float, bool)) or v is None}

