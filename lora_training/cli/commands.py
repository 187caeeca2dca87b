"""Every command: its parser (built from the options dataclass of the function it calls) and a
handler that calls that one function and shows the result. Nothing here decides anything.

Library modules are imported inside the handlers and registration functions that need them,
and those modules import torch/numpy only inside their functions, so `--help` stays instant.
"""

from __future__ import annotations

import sys
from importlib import import_module

from lora_training.cli.args import Formatter, add_json, add_options, build, given, print_json


class Commands:
    """The subparsers, with each command's options added only when that command is the one parsed
    (or when `wanted` is None: all), so `--help` imports no module that pulls in numpy or torch."""

    def __init__(self, sub, wanted: str | None):
        self.sub, self.wanted = sub, wanted

    def add(self, name: str, help: str, options: str | None = None, description: str | None = None, **kw):
        """`options` is "module:Class", imported only when needed."""
        p = self.sub.add_parser(name, help=help, description=description or help, formatter_class=Formatter)
        if options is not None:
            self.extend(p, name, options, **kw)
        return p

    def extend(self, parser, name: str, options: str, **kw) -> None:
        """More options for command `name` (e.g. into an argument group), under the same rule."""
        if self.wanted in (None, name):
            add_options(parser, load(options), **kw)

    def nested(self, parser, name: str) -> "Commands":
        """Subcommands of command `name` (`models check`)."""
        sub = parser.add_subparsers(dest=f"{name}_command", required=True, metavar="SUBCOMMAND")
        return Commands(sub, None if self.wanted in (None, name) else "")


def load(ref: str):
    module, _, name = ref.partition(":")
    return getattr(import_module(module), name)


# --- data -------------------------------------------------------------------------------

def _split(args) -> int:
    from lora_training.data.split import SplitOptions, split_dataset

    summary = split_dataset(build(args, SplitOptions))
    print_json(summary.to_dict()) if args.json else print(summary.render())
    return 0


def _validate(args) -> int:
    from lora_training.data.manifest import validate_manifests
    from lora_training.reporting.status_view import render_validation

    results = validate_manifests(args.paths)
    print_json(results) if args.json else print(render_validation(results))
    return 0 if all(r["ok"] for r in results) else 1


def _mix(args) -> int:
    from lora_training.data.mix import MixOptions, mix_manifests

    summary = mix_manifests(build(args, MixOptions))
    print_json(summary.to_dict()) if args.json else print(summary.render())
    return 0


def _synth(args) -> int:
    from lora_training.synth.synthesize import SynthConfig, synthesize_dataset

    summary = synthesize_dataset(build(args, SynthConfig), progress=not args.json)
    print_json(summary.to_dict()) if args.json else print(summary.render())
    return 0


def _record(args) -> int:
    from lora_training.capture.record import RecordOptions, record

    print(record(build(args, RecordOptions)).render())
    return 0


def _verify(args) -> int:
    from lora_training.evaluation.verify import VerifyOptions, render_report, verify_manifest

    report = verify_manifest(build(args, VerifyOptions))
    print_json(report) if args.json else print(render_report(report))
    return 0


def _models_check(args) -> int:
    from lora_training.models.registry import CheckOptions, check_model
    from lora_training.reporting.status_view import render_model_check

    opts = build(args, CheckOptions)
    result = check_model(opts.model_id, audio=opts.audio, rebuild=opts.rebuild)
    print_json(result) if args.json else print(render_model_check(result))
    return 0


def add_data_commands(cmd: Commands) -> None:
    p = cmd.add("split-dataset", "split a manifest into train/eval sides (same sentence never on both)",
                "lora_training.data.split:SplitOptions")
    add_json(p, "the summary")
    p.set_defaults(handler=_split)

    p = cmd.add("validate-manifest", "check manifests and their audio (every problem at once) before training")
    p.add_argument("paths", nargs="+", metavar="PATH", help="manifest(s) to check")
    add_json(p, "the results")
    p.set_defaults(handler=_validate)

    p = cmd.add("mix", "combine manifests (real + synthetic) into one, at a target ratio, shuffled",
                "lora_training.data.mix:MixOptions")
    add_json(p, "the composition")
    p.set_defaults(handler=_mix)

    p = cmd.add("synth", "speak generated jargon sentences with TTS into a synthetic manifest (quality-gated)",
                "lora_training.synth.synthesize:SynthConfig",
                description="Clips go to <output stem>_audio/ beside the manifest; a re-run keeps clips already made.")
    add_json(p, "the summary (no progress bar)")
    p.set_defaults(handler=_synth)

    p = cmd.add("record", "record your own voice prompt by prompt (Enter starts/stops; r redo, s skip, q quit)",
                "lora_training.capture.record:RecordOptions",
                description="Each kept take goes to recordings/rec-NNNN.wav beside the manifest and is appended "
                "to it at once; a re-run skips prompts already recorded. "
                "Needs: pip install -e '.[record]'.")
    p.set_defaults(handler=_record)

    p = cmd.add("verify", "flag silent, quiet, clipped, cut or misread recordings before they poison training",
                "lora_training.evaluation.verify:VerifyOptions")
    add_json(p, "the report")
    p.set_defaults(handler=_verify)

    p = cmd.add("models", "inspect model references")
    c = cmd.nested(p, "models").add("check", "load a model reference (building the embedded model if needed) and "
                                    "transcribe a clip", "lora_training.models.registry:CheckOptions")
    add_json(c)
    c.set_defaults(handler=_models_check)


# --- experiments and pipelines -------------------------------------------------------

def _run_experiment(args) -> int:
    from lora_training.config import ExperimentConfig
    from lora_training.runners.experiment import EXIT_CODES, RunOptions, experiment_config, start_experiment

    run = build(args, RunOptions)
    cfg = experiment_config(run.name, given(args, ExperimentConfig), outputs=run.outputs, resume=run.resume)
    info = start_experiment(run.name, cfg, outputs=run.outputs, resume=run.resume, overwrite=run.overwrite,
                            foreground=run.foreground)
    if run.foreground:
        print(f"{run.name}: {info['phase']} (log: {info['log']})")
        return EXIT_CODES[info["phase"]]
    print(f"{run.name}: started pid {info['pid']}; log: {info['log']}")
    print(f"follow it with `just poll {run.name}`, check it with `just status {run.name}`")
    return 0


def _status(args) -> int:
    from lora_training.reporting.status_view import render_status
    from lora_training.runners.experiment import StatusOptions, status

    opts = build(args, StatusOptions)
    rows = status(opts.name, outputs=opts.outputs)
    if args.json:
        print_json(rows if opts.name is None else rows[0])
    else:
        print(render_status(rows, detailed=opts.name is not None))
    return 0


def _poll(args) -> int:
    from lora_training.runners.experiment import PollOptions, poll

    opts = build(args, PollOptions)
    return poll(opts.name, outputs=opts.outputs, from_start=not opts.new_only)


def _stop(args) -> int:
    from lora_training.runners.experiment import StopOptions, stop

    opts = build(args, StopOptions)
    state = stop(opts.name, outputs=opts.outputs, timeout=opts.timeout)
    print(f"{opts.name}: {state['phase']} at step {state.get('step')}")
    return 0


def _pipeline(args) -> int:
    from lora_training.runners.pipeline import PipelineOptions, load_pipeline, run_pipeline

    opts = build(args, PipelineOptions)
    pipeline = load_pipeline(opts.config, outputs=opts.outputs)
    state = run_pipeline(pipeline, resume=opts.resume, overwrite=opts.overwrite, fail_stage=opts.fail_stage)
    print(f"pipeline {pipeline.name}: {state['phase']}")
    return 0


def _demo(args) -> int:
    from lora_training.runners.demo import DemoOptions, run_demo

    options = build(args, DemoOptions)
    return run_demo(workdir=options.workdir, recipe=options.recipe)


def add_run_commands(cmd: Commands) -> None:
    p = cmd.add("run-experiment", "train an adapter in the background (or --foreground)",
                "lora_training.runners.experiment:RunOptions")
    cmd.extend(p.add_argument_group("experiment config"), "run-experiment", "lora_training.config:ExperimentConfig")
    p.set_defaults(handler=_run_experiment)

    p = cmd.add("status", "phase, progress and WER of one run, or of every run",
                "lora_training.runners.experiment:StatusOptions")
    add_json(p, "the state")
    p.set_defaults(handler=_status)

    p = cmd.add("poll", "stream a run's log until it ends; exit code = outcome "
                "(0 completed, 1 failed, 2 crashed, 3 stopped)", "lora_training.runners.experiment:PollOptions")
    p.set_defaults(handler=_poll)

    p = cmd.add("stop", "checkpoint and stop a running experiment", "lora_training.runners.experiment:StopOptions")
    p.set_defaults(handler=_stop)

    p = cmd.add("pipeline", "run a TOML pipeline of stages unattended, halting at the first failure",
                "lora_training.runners.pipeline:PipelineOptions")
    p.set_defaults(handler=_pipeline)

    p = cmd.add("demo", "the end-to-end demo on the embedded model, offline", "lora_training.runners.demo:DemoOptions")
    p.set_defaults(handler=_demo)


# --- evaluation and reports ----------------------------------------------------------

def _show_evaluation(result: dict, args) -> int:
    if args.json:
        print_json(result)
    else:
        from lora_training.reporting.console import print_results

        print_results(result, show=args.show)
        if result["options"]["output"]:
            print(f"results: {result['options']['output']}")
    return 0 if result["status"]["ok"] else 1


def _progress(args) -> bool:
    return not args.no_progress and sys.stderr.isatty()


def _transcribe(args) -> int:
    from lora_training.evaluation.evaluate import EvalOptions, run_evaluation

    result = run_evaluation(build(args, EvalOptions), progress=_progress(args))
    return _show_evaluation(result, args)


def _evaluate(args) -> int:
    from lora_training.evaluation.evaluate import EvalOptions
    from lora_training.runners.evaluation import EvaluateRunOptions, evaluate_run

    opts = build(args, EvaluateRunOptions)
    result = evaluate_run(opts.name, outputs=opts.outputs, safety=None if opts.safety == "none" else opts.safety,
                          progress=_progress(args), **given(args, EvalOptions))
    return _show_evaluation(result, args)


def _report(args) -> int:
    from lora_training.reporting.report import ReportOptions, write_report

    opts = build(args, ReportOptions)
    print(write_report(opts.folder.path, template=opts.template, samples=opts.samples))
    return 0


def _compare(args) -> int:
    from lora_training.reporting.compare import CompareOptions, compare_runs
    from lora_training.runs import RunDir

    opts = build(args, CompareOptions)
    rows = compare_runs([RunDir.named(name, opts.outputs).path for name in opts.names])
    if args.json:
        print_json(rows)
    else:
        from rich.console import Console

        from lora_training.reporting.console import compare_table

        # A table this wide is cut at 80 columns when piped; a terminal gets its own width.
        Console(highlight=False, width=None if sys.stdout.isatty() else 140).print(compare_table(rows))
    return 0


def _add_display_options(p) -> None:
    add_json(p, "the result (instead of the table)")
    p.add_argument("--show", type=int, default=5, metavar="N", help="most-changed samples to show as word diffs "
                   "(default: 5)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def add_evaluation_commands(cmd: Commands) -> None:
    from lora_training.runners.evaluation import FROM_RUN

    p = cmd.add("transcribe", "transcribe a manifest or audio files with a base model and/or adapter; score, "
                "compare, gate safety", "lora_training.evaluation.evaluate:EvalOptions",
                description="Transcribe with the base model and (with --adapter-dir) the adapter merged into it, "
                "score both (WER, CER, term recall seen/unseen, symbol accuracy) and optionally a general-domain "
                "safety set. Exit status 1 when a clip failed or the safety budget was exceeded.")
    _add_display_options(p)
    p.set_defaults(handler=_transcribe)

    p = cmd.add("evaluate", "best adapter of a run vs its base model, on its eval manifest + safety set",
                "lora_training.runners.evaluation:EvaluateRunOptions",
                description="Writes outputs/NAME/eval_results.json. Exit status 1 when a clip failed or the safety "
                "budget was exceeded.")
    cmd.extend(p, "evaluate", "lora_training.evaluation.evaluate:EvalOptions", skip=FROM_RUN)
    _add_display_options(p)
    p.set_defaults(handler=_evaluate)

    p = cmd.add("report", "write outputs/NAME/report.md (+ PNG curves) from the run's files",
                "lora_training.reporting.report:ReportOptions")
    p.set_defaults(handler=_report)

    p = cmd.add("compare", "one table across runs: WER, term recall, safety, steps, time",
                "lora_training.reporting.compare:CompareOptions")
    add_json(p, "the rows")
    p.set_defaults(handler=_compare)
