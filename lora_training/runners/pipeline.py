"""Unattended pipelines: a TOML list of stages run in order, halting at the first failure.

Each stage kind is a thin adapter over one library function (`runners/stages.py`, dispatched by
the table here, not an if-chain); its TOML keys are the fields of that function's options
dataclasses, and `load_pipeline` checks every
stage against them (unknown, missing or mistyped keys, out-of-range values) before anything runs,
so a typo in stage 9 costs seconds, not the hours of stages 1-8. The pipeline's own state is a
file, `outputs/pipelines/NAME/state.json`, like an experiment's: `--resume` skips the stages
already done and continues a training stage from its checkpoint. A run-experiment stage never
replaces an existing experiment folder unless `--overwrite` says so (and then names it).

    name = "vocab_expansion"
    [[stages]]
    name = "split"                 # unique, shown in progress and errors
    kind = "split"                 # split | synth | mix | run-experiment | wait | check | evaluate | report
    # skipped when every listed file exists (e.g. a split already made by hand)
    skip_if_exists = ["data/my_voice_train.jsonl", "data/my_voice_eval.jsonl"]
    input = "data/my_voice_all.jsonl"
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any, Callable

from lora_training.errors import ConfigError, LoraTrainingError
from lora_training.options import from_dict, option
from lora_training.runners.stages import (Context, StageFailed, check_stage, evaluate_stage, mix_stage, occupied,
                                          report_stage, run_experiment_stage, split_stage, synth_check_stage,
                                          synth_stage, wait_stage)
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
    overwrite: bool = option(False, "remove the existing folders of run-experiment stages and train again "
                                    "(each removed folder is named)")
    fail_stage: str | None = option(None, "drill: force this stage to fail", metavar="NAME")


# --- the stage table ----------------------------------------------------------------------

def _eval_override_keys() -> list[str]:
    from lora_training.runners.evaluation import overridable

    return overridable()


def _eval_overrides(rest: dict, where: str) -> dict:
    """An evaluate stage's further keys, checked as `evaluate NAME` would check them after loading the run."""
    from lora_training.evaluation.evaluate import EvalOptions
    from lora_training.runners.evaluation import check_overrides

    _check_types(EvalOptions, rest, where)
    check_overrides(rest, where)
    return rest


@dataclass(frozen=True)
class StageKind:
    """A stage kind: its work, `run(*options, ctx)`, and the options dataclasses its keys fill.

    Each dataclass ("module:Class", imported when a pipeline is checked) takes the keys it declares;
    `rest` checks the `rest_keys` no dataclass declares (evaluate's EvalOptions overrides) and is
    passed to `run` as one more argument. Any other key is unknown.
    """

    run: Callable[..., dict]
    options: tuple[str, ...]
    rest: Callable[[dict, str], Any] | None = None
    rest_keys: Callable[[], list[str]] = list


_STAGES = "lora_training.runners.stages"
STAGE_KINDS: dict[str, StageKind] = {
    "split": StageKind(split_stage, ("lora_training.data.split:SplitOptions",)),
    "synth": StageKind(synth_stage, ("lora_training.synth.synthesize:SynthConfig",)),
    "synth-check": StageKind(synth_check_stage, ("lora_training.synth.synthesize:SynthConfig",)),
    "mix": StageKind(mix_stage, ("lora_training.data.mix:MixOptions",)),
    "run-experiment": StageKind(run_experiment_stage,
                                (f"{_STAGES}:ExperimentStage", "lora_training.config:ExperimentConfig")),
    "wait": StageKind(wait_stage, (f"{_STAGES}:WaitStage",)),
    "check": StageKind(check_stage, (f"{_STAGES}:ExperimentStage",)),
    "evaluate": StageKind(evaluate_stage, (f"{_STAGES}:EvaluateStage",), rest=_eval_overrides,
                          rest_keys=_eval_override_keys),
    "report": StageKind(report_stage, (f"{_STAGES}:ExperimentStage",)),
}


# --- checking -----------------------------------------------------------------------------

# What a TOML value must be for a field annotated with each type name (a TOML array for tuples).
_TOML_TYPES: dict[str, type | tuple[type, ...]] = {"str": str, "int": int, "float": (int, float), "bool": bool,
                                                   "list": list, "tuple": list, "dict": dict}


def _fits(annotation: str, value: Any) -> bool:
    """Whether a TOML value suits a field annotated `annotation` (e.g. "str | None", "list[str]")."""
    for part in annotation.split("|"):
        name, _, inner = part.strip().partition("[")
        expected = _TOML_TYPES.get(name)
        if expected is None:
            if name == "None":  # no TOML value is None, but a pipeline built in Python may pass one
                if value is None:
                    return True
                continue
            return True  # a type this check does not know: the dataclass decides
        if isinstance(value, bool) and name != "bool":
            continue  # TOML true is not the number 1
        if isinstance(value, expected):
            return not inner.startswith("str") or all(isinstance(v, str) for v in value)
    return False


def _check_types(cls, data: dict[str, Any], where: str) -> None:
    """Keys whose value has the wrong type (a number in quotes, one path for a list): checked before the
    dataclass is built, so `__post_init__` never compares a string with a number."""
    types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    wrong = [f"{key}: expected {types[key]}, got {type(value).__name__} {value!r}"
             for key, value in data.items() if key in types and not _fits(types[key], value)]
    if wrong:
        raise ConfigError(f"{where}: " + "; ".join(wrong))


def _build(cls, data: dict[str, Any], where: str):
    _check_types(cls, data, where)
    return from_dict(cls, data, where)


def _load(ref: str):
    module, _, name = ref.partition(":")
    return getattr(import_module(module), name)


def _placed(e: Exception, where: str) -> str:
    text = str(e)
    return text if text.startswith(where) else f"{where}: {text}"


def stage_options(stage: Stage, where: str) -> list[Any]:
    """The stage's options objects, in the order its kind's `run` takes them; a ConfigError listing
    every problem (unknown, missing or mistyped keys, out-of-range values), each prefixed by `where`."""
    kind = STAGE_KINDS[stage.kind]
    problems, parts, claimed = [], [], []
    for cls in map(_load, kind.options):
        names = [f.name for f in dataclasses.fields(cls)]
        claimed += [n for n in names if n not in claimed]
        try:
            parts.append(_build(cls, {k: v for k, v in stage.options.items() if k in names}, where))
        except (ConfigError, TypeError, ValueError) as e:
            problems.append(_placed(e, where))
    extra = kind.rest_keys()
    unknown = sorted(set(stage.options) - set(claimed) - set(extra))
    if unknown:
        problems.insert(0, f"{where}: unknown key(s) {', '.join(unknown)}, expected only: "
                           f"{', '.join(claimed + extra)}")
    if kind.rest is not None:
        try:
            parts.append(kind.rest({k: v for k, v in stage.options.items() if k in extra}, where))
        except ConfigError as e:
            problems.append(_placed(e, where))
    if problems:
        raise ConfigError("\n".join(problems))
    return parts


def check_pipeline(pipeline: Pipeline) -> list[str]:
    """Every problem of a pipeline (its name, each stage's name, kind, skip_if_exists and options),
    found without running anything; input files are not checked, since an earlier stage may write them."""
    problems = []
    try:
        RunDir.named(pipeline.name)  # its state folder is outputs/pipelines/NAME: the same rule as a run
    except ConfigError as e:
        problems.append(f"{pipeline.path}: name: {str(e).partition(': ')[2] or e}")
    seen = set()
    for i, stage in enumerate(pipeline.stages, start=1):
        where = f"{pipeline.path}: stage {i} ({stage.name})"
        if not isinstance(stage.name, str) or not stage.name:
            problems.append(f"{where}: name, expected a non-empty string, got {stage.name!r}")
        elif stage.name in seen:
            problems.append(f"{where}: duplicate stage name {stage.name!r}, expected unique names")
        seen.add(stage.name if isinstance(stage.name, str) else None)
        if not (isinstance(stage.skip_if_exists, list) and all(isinstance(p, str) for p in stage.skip_if_exists)):
            problems.append(f"{where}: skip_if_exists, expected a list of paths such as [\"data/x.jsonl\"], "
                            f"got {stage.skip_if_exists!r}")
        if not isinstance(stage.kind, str) or stage.kind not in STAGE_KINDS:
            problems.append(f"{where}: kind, expected one of {', '.join(STAGE_KINDS)}, got {stage.kind!r}")
            continue
        try:
            stage_options(stage, where)
        except ConfigError as e:
            problems.append(str(e))
    return problems


# --- loading ------------------------------------------------------------------------------

def load_pipeline(path: str | Path, *, outputs: str = DEFAULT_OUTPUTS) -> Pipeline:
    """Parse and check a pipeline file; every problem of every stage is reported at once, naming it."""
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
    name = data.get("name", path.stem)
    if not isinstance(name, str):
        problems.append(f"{path}: name, expected a string, got {type(name).__name__} {name!r}")
        name = path.stem
    raw_stages = data.get("stages", [])
    if not (isinstance(raw_stages, list) and all(isinstance(raw, dict) for raw in raw_stages)):
        problems.append(f"{path}: stages, expected [[stages]] tables, got {type(raw_stages).__name__} "
                        f"{raw_stages!r:.60}")
        raw_stages = []
    elif not raw_stages:
        problems.append(f"{path}: stages, expected at least one [[stages]] table, got none")
    stages = [Stage(name=raw.get("name", f"{i}-{raw.get('kind')}"), kind=raw.get("kind"),
                    options={k: v for k, v in raw.items() if k not in COMMON_KEYS},
                    skip_if_exists=raw.get("skip_if_exists", []))
              for i, raw in enumerate(raw_stages, start=1)]
    pipeline = Pipeline(name=name, path=str(path), outputs=outputs, stages=stages)
    problems += check_pipeline(pipeline)
    if problems:
        raise ConfigError("\n".join(problems))
    return pipeline


# --- running ------------------------------------------------------------------------------

def pipeline_dir(pipeline: Pipeline) -> Path:
    return Path(pipeline.outputs) / PIPELINES_DIR / pipeline.name


def _existing_runs(pipeline: Pipeline) -> list[str]:
    """"folder (stage, phase)" of every run-experiment stage whose experiment folder already holds a run."""
    from lora_training.runners.experiment import effective_state

    found = []
    for stage in pipeline.stages:
        if stage.kind == "run-experiment":
            run = RunDir.named(stage.options["experiment"], pipeline.outputs)
            if occupied(run.path):
                phase = (effective_state(run.path) or {}).get("phase", "unknown")
                found.append(f"{run.path} (stage {stage.name}, phase {phase})")
    return found


def run_pipeline(pipeline: Pipeline, *, resume: bool = False, overwrite: bool = False, fail_stage: str | None = None,
                 write: Callable[[str], None] = print, progress: bool = True) -> dict[str, Any]:
    """Run every stage in order; returns the final state. Raises StageFailed at the first failure.

    Everything is checked before stage 1 runs: the stages' options, and (without --resume or
    --overwrite) that no run-experiment stage would replace an existing run.
    `fail_stage` forces that stage to fail (a drill for halting and --resume).
    """
    problems = check_pipeline(pipeline)
    if problems:
        raise ConfigError("\n".join(problems))
    if resume and overwrite:
        raise ConfigError("--resume, --overwrite: expected at most one (continue the existing runs, or remove "
                          "them and train again), got both")
    names = [s.name for s in pipeline.stages]
    if fail_stage is not None and fail_stage not in names:
        raise ConfigError(f"--fail-stage: unknown stage {fail_stage!r}, expected one of {', '.join(names)}")
    folder = pipeline_dir(pipeline)
    previous = read_state(folder) or {}
    if previous and not resume and previous.get("phase") == "running":
        raise LoraTrainingError(f"pipeline {pipeline.name}: already running per {folder / STATE_FILE}; "
                                f"pass --resume if it is not")
    kept = [] if resume or overwrite else _existing_runs(pipeline)
    if kept:
        raise LoraTrainingError(f"{', '.join(kept)}: experiment folder exists, expected none for a new run of "
                                f"pipeline {pipeline.name}; rerun with --resume to continue, or with --overwrite "
                                f"to remove it and train again")
    done = {s["name"] for s in previous.get("stages", []) if s.get("status") == "done"} if resume else set()
    state = RunState(folder, initial={"name": pipeline.name, "config": pipeline.path, "phase": "running",
                                      "started_at": time.time(), "stages": []})
    ctx = Context(outputs=pipeline.outputs, resuming=resume, overwrite=overwrite, progress=progress, write=write)
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
            result = STAGE_KINDS[stage.kind].run(*stage_options(stage, f"stage {stage.name}"), ctx)
        except (LoraTrainingError, TypeError, ValueError, OSError) as e:
            reason = _reason(e)
            row.update(status="failed", error=reason, seconds=round(time.perf_counter() - started, 1))
            state.update(stages=rows, phase="failed", error=f"stage {stage.name}: {reason}", ended_at=time.time())
            raise StageFailed(f"pipeline {pipeline.name} halted at stage {stage.name} ({stage.kind}): {reason}; "
                              f"state: {folder / STATE_FILE}; fix it and rerun with --resume") from e
        row.update(status="done", seconds=round(time.perf_counter() - started, 1), result=_brief(result))
        state.update(stages=rows)
        write(f"{header}: done in {row['seconds']:.0f}s")
    return state.update(phase="completed", current=None, ended_at=time.time())


def _reason(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _brief(result: dict) -> dict:
    """Scalar fields of a stage result, for state.json (full results live in their own files)."""
    return {k: v for k, v in result.items() if isinstance(v, (str, int, float, bool)) or v is None}
