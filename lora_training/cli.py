"""Argument parsing only: each command builds its inputs and calls one library function.

Heavy libraries (torch, transformers) are imported inside the functions that need them,
so `--help` and `status` answer instantly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import traceback

from lora_training.errors import LoraTrainingError



class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


# --- data -------------------------------------------------------------------------------

def _cmd_split_dataset(args) -> int:
    from lora_training.data.split import split_dataset

    summary = split_dataset(
        args.input, args.train_out, args.eval_out, eval_fraction=args.eval_fraction, seed=args.seed
    )
    if args.json:
        _print_json(summary.to_dict())
    else:
        print(summary.render())
    return 0


def _cmd_validate_manifest(args) -> int:
    from lora_training.data.manifest import validate_manifests

    results = validate_manifests(args.paths)
    if args.json:
        _print_json(results)
    else:
        for r in results:
            if r["ok"]:
                print(f"{r['path']}: {r['utterances']} utterances, {r['hours']:.2f} hours, OK")
            else:
                print(f"{r['path']}: {len(r['problems'])} problem(s)")
                for problem in r["problems"]:
                    print(f"  {problem}")
    return 0 if all(r["ok"] for r in results) else 1


def _add_data_commands(sub) -> None:
    p = sub.add_parser(
        "split-dataset",
        help="split a manifest into train/eval sides (same sentence never on both)",
        formatter_class=_Formatter,
    )
    p.add_argument("--input", default="data/my_voice_all.jsonl", help="manifest to split")
    p.add_argument("--train-out", default="data/my_voice_train.jsonl", help="train manifest to write")
    p.add_argument("--eval-out", default="data/my_voice_eval.jsonl", help="eval manifest to write")
    p.add_argument("--eval-fraction", type=float, default=0.2, help="share of utterances for eval")
    p.add_argument("--seed", type=int, default=42, help="random seed (same seed, same split)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=_cmd_split_dataset)

    p = sub.add_parser(
        "validate-manifest",
        help="check manifests and their audio (every problem at once) before training",
        formatter_class=_Formatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="manifest(s) to check")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=_cmd_validate_manifest)


# --- models -----------------------------------------------------------------------------

def _cmd_models_check(args) -> int:
    from lora_training.models.registry import check_model

    result = check_model(args.model_id, audio=args.audio, rebuild=args.rebuild)
    if args.json:
        _print_json(result)
    else:
        print(f"model:      {result['model']}")
        print(f"resolved:   {result['resolved']}")
        print(f"load time:  {result['load_seconds']:.1f} s")
        print(f"audio:      {result['audio']} ({result['audio_seconds']:.1f} s)")
        print(f"transcript: {result['transcript']}")
        print(f"decode:     {result['decode_seconds']:.2f} s")
    return 0


def _add_model_commands(sub) -> None:
    p = sub.add_parser("models", help="inspect model references", formatter_class=_Formatter)
    msub = p.add_subparsers(dest="models_command", required=True, metavar="SUBCOMMAND")
    c = msub.add_parser(
        "check",
        help="load a model reference (building the embedded model if needed) and transcribe a clip",
        formatter_class=_Formatter,
    )
    c.add_argument(
        "model_id",
        nargs="?",
        default="embedded:moonshine-base",
        help="hub id, local save_pretrained folder, or embedded:moonshine-base",
    )
    c.add_argument("--audio", default=None, help="clip to transcribe (default: the wheel's beckett.wav)")
    c.add_argument("--rebuild", action="store_true", help="rebuild the embedded model even if cached")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.set_defaults(handler=_cmd_models_check)


# --- experiments ------------------------------------------------------------------------

def _add_config_options(p) -> None:
    """One option per ExperimentConfig field; defaults and help come from the dataclass."""
    from lora_training.config import config_fields

    for f in config_fields():
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = f"{f.metadata['help']} (default: {default})"
        if f.type in (bool, "bool"):
            p.add_argument(flag, dest=f.name, action="store_true", default=argparse.SUPPRESS, help=help_text)
        elif f.name == "target_modules":
            p.add_argument(flag, dest=f.name, nargs="+", default=argparse.SUPPRESS, help=help_text)
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            p.add_argument(flag, dest=f.name, type=kind, choices=f.metadata.get("choices"),
                           default=argparse.SUPPRESS, help=help_text)


def _given_config(args) -> dict:
    from lora_training.config import config_fields

    return {f.name: getattr(args, f.name) for f in config_fields() if hasattr(args, f.name)}


def _cmd_run_experiment(args) -> int:
    from lora_training.config import ExperimentConfig
    from lora_training.runners.experiment import EXIT_CODES, start_experiment

    given = _given_config(args)
    if args.resume:
        cfg = None
        if given:
            from lora_training.runners.experiment import run_dir_for

            saved = ExperimentConfig.load(run_dir_for(args.name, args.outputs) / "config.json")
            cfg = ExperimentConfig.from_dict({**saved.to_dict(), **given}).with_absolute_paths()
    else:
        cfg = ExperimentConfig(**given).with_absolute_paths()
    info = start_experiment(args.name, cfg, outputs=args.outputs, resume=args.resume, overwrite=args.overwrite,
                            foreground=args.foreground)
    if args.foreground:
        print(f"{args.name}: {info['phase']} (log: {info['log']})")
        return EXIT_CODES[info["phase"]]
    print(f"{args.name}: started pid {info['pid']}; log: {info['log']}")
    print(f"follow it with `just poll {args.name}`, check it with `just status {args.name}`")
    return 0


def _cmd_status(args) -> int:
    from lora_training.runners.experiment import status
    from lora_training.reporting.status_view import render_status

    rows = status(args.name, outputs=args.outputs)
    if args.json:
        _print_json(rows if args.name is None else rows[0])
    else:
        print(render_status(rows, detailed=args.name is not None))
    return 0


def _cmd_poll(args) -> int:
    from lora_training.runners.experiment import poll

    return poll(args.name, outputs=args.outputs, from_start=not args.new_only)


def _cmd_stop(args) -> int:
    from lora_training.runners.experiment import stop

    state = stop(args.name, outputs=args.outputs, timeout=args.timeout)
    print(f"{args.name}: {state['phase']} at step {state.get('step')}")
    return 0


def _add_experiment_commands(sub) -> None:
    p = sub.add_parser("run-experiment", help="train an adapter in the background (or --foreground)",
                       formatter_class=_Formatter)
    p.add_argument("name", help="experiment name: its folder is OUTPUTS/NAME")
    p.add_argument("--outputs", default="outputs", help="folder holding experiment folders")
    p.add_argument("--foreground", action="store_true", help="run in this terminal instead of detaching")
    p.add_argument("--resume", action="store_true", help="continue a stopped/crashed run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="delete an earlier run of this name first")
    _add_config_options(p.add_argument_group("experiment config"))
    p.set_defaults(handler=_cmd_run_experiment)

    p = sub.add_parser("status", help="phase, progress and WER of one run, or of every run", formatter_class=_Formatter)
    p.add_argument("name", nargs="?", default=None, help="experiment name (all runs when omitted)")
    p.add_argument("--outputs", default="outputs", help="folder holding experiment folders")
    p.add_argument("--json", action="store_true", help="print the state as JSON")
    p.set_defaults(handler=_cmd_status)

    p = sub.add_parser("poll", help="stream a run's log until it ends; exit code = outcome "
                       "(0 completed, 1 failed, 2 crashed, 3 stopped)", formatter_class=_Formatter)
    p.add_argument("name", help="experiment name")
    p.add_argument("--outputs", default="outputs", help="folder holding experiment folders")
    p.add_argument("--new-only", action="store_true", help="skip the log written so far")
    p.set_defaults(handler=_cmd_poll)

    p = sub.add_parser("stop", help="checkpoint and stop a running experiment", formatter_class=_Formatter)
    p.add_argument("name", help="experiment name")
    p.add_argument("--outputs", default="outputs", help="folder holding experiment folders")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the run to stop")
    p.set_defaults(handler=_cmd_stop)


# --- pipelines --------------------------------------------------------------------------

def _cmd_pipeline(args) -> int:
    from lora_training.runners.pipeline import load_pipeline, run_pipeline

    pipeline = load_pipeline(args.config, outputs=args.outputs)
    state = run_pipeline(pipeline, resume=args.resume, fail_stage=args.fail_stage)
    print(f"pipeline {pipeline.name}: {state['phase']}")
    return 0


def _add_pipeline_command(sub) -> None:
    p = sub.add_parser("pipeline", help="run a TOML pipeline of stages unattended, halting at the first failure",
                       formatter_class=_Formatter)
    p.add_argument("--config", required=True, help="pipeline file, e.g. pipelines/vocab_expansion.toml")
    p.add_argument("--outputs", default="outputs", help="folder for experiments and outputs/pipelines/NAME/state.json")
    p.add_argument("--resume", action="store_true", help="skip stages already done; resume a crashed training stage")
    p.add_argument("--fail-stage", default=None, metavar="NAME", help="drill: force this stage to fail")
    p.set_defaults(handler=_cmd_pipeline)


# --- demo -------------------------------------------------------------------------------

def _cmd_demo(args) -> int:
    from lora_training.runners.demo import run_demo

    return run_demo(workdir=args.workdir)


def _add_demo_command(sub) -> None:
    p = sub.add_parser("demo", help="the end-to-end demo on the embedded model, offline", formatter_class=_Formatter)
    p.add_argument("--workdir", default="outputs/demo", help="where the demo writes its data and runs")
    p.set_defaults(handler=_cmd_demo)


# --- recording --------------------------------------------------------------------------

def _cmd_record(args) -> int:
    from lora_training.data.record import Microphone, RecordingSession, load_prompts

    prompts = load_prompts(args.vocabulary, args.count, seed=args.seed, sentences=args.sentences)
    session = RecordingSession(args.manifest, Microphone(args.device), speaker=args.speaker, seconds=args.seconds)
    print(session.run(prompts).render())
    return 0


def _cmd_verify(args) -> int:
    from lora_training.evaluation.verify import render_report, verify_manifest

    report = verify_manifest(args.manifest, model_id=args.model_id, max_wer=args.max_wer,
                             report_path=args.report, drop=args.drop, output=args.output)
    if args.json:
        _print_json(report)
    else:
        print(render_report(report))
    return 0


def _add_recording_commands(sub) -> None:
    from lora_training.evaluation.verify import DEFAULT_MAX_WER, DEFAULT_MODEL

    p = sub.add_parser(
        "record",
        help="record your own voice prompt by prompt (Enter starts/stops; r redo, s skip, q quit)",
        description="Each kept take goes to recordings/rec-NNNN.wav beside the manifest and is appended "
                    "to it at once; a re-run skips prompts already recorded. Needs: pip install -e '.[record]'.",
        formatter_class=_Formatter,
    )
    p.add_argument("--vocabulary", default="data/vocabulary.txt", help="lexicon the prompts are generated from")
    p.add_argument("--count", type=int, default=100, help="number of prompts (with --sentences: the first COUNT lines)")
    p.add_argument("--sentences", default=None, metavar="FILE", help="read prompts from FILE, one per line, "
                   "instead of generating them; None: generate")
    p.add_argument("--seed", type=int, default=0, help="seed of the prompt generator (same seed, same prompts)")
    p.add_argument("--manifest", default="data/my_voice_all.jsonl", help="manifest to append to")
    p.add_argument("--speaker", default="me", help="speaker name stored with each utterance")
    p.add_argument("--seconds", type=float, default=None, help="record this many seconds per take; None: "
                   "Enter stops each take")
    p.add_argument("--device", default=None, help="input device index or name; None: the system's")
    p.set_defaults(handler=_cmd_record)

    p = sub.add_parser(
        "verify",
        help="flag silent, quiet, clipped, cut or misread recordings before they poison training",
        formatter_class=_Formatter,
    )
    p.add_argument("manifest", help="manifest to check")
    p.add_argument("--model-id", default=DEFAULT_MODEL, help="baseline model that transcribes each clip")
    p.add_argument("--max-wer", type=float, default=DEFAULT_MAX_WER,
                   help="flag clips whose transcript is further than this WER from the prompt")
    p.add_argument("--report", default=None, help="JSON report to write; None: NAME.verify.json "
                   "beside the manifest")
    p.add_argument("--drop", action="store_true", help="also write a manifest without the flagged clips")
    p.add_argument("--output", default=None, help="clean manifest for --drop; None: NAME.clean.jsonl "
                   "beside the manifest")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=_cmd_verify)


# --- synth ------------------------------------------------------------------------------

def _cmd_synth(args) -> int:
    from lora_training.synth.synthesize import SynthConfig, synthesize_dataset

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(SynthConfig) if hasattr(args, f.name)}
    summary = synthesize_dataset(SynthConfig(**given), progress=not args.json)
    if args.json:
        _print_json(summary.to_dict())
    else:
        print(summary.render())
    return 0


def _cmd_mix(args) -> int:
    from lora_training.data.mix import mix_manifests, parse_ratio

    summary = mix_manifests(
        args.inputs, args.output, ratio=parse_ratio(args.ratio) if args.ratio else None,
        upsample_real=args.upsample_real, default_source=args.default_source, seed=args.seed,
    )
    if args.json:
        _print_json(summary.to_dict())
    else:
        print(summary.render())
    return 0


def _add_synth_commands(sub) -> None:
    from lora_training.synth.synthesize import SynthConfig

    fields = {f.name: f for f in dataclasses.fields(SynthConfig)}

    def option(flag: str, name: str, help: str | None = None, **kwargs) -> None:
        """Help and default come from SynthConfig; an option not given is not passed on."""
        f = fields[name]
        p.add_argument(flag, dest=name, default=argparse.SUPPRESS,
                       help=help or f"{f.metadata['help']} (default: {f.default})", **kwargs)

    p = sub.add_parser(
        "synth",
        help="speak generated jargon sentences with TTS into a synthetic manifest (quality-gated)",
        description="Clips go to <output stem>_audio/ beside the manifest; a re-run keeps clips already made.",
        formatter_class=_Formatter,
    )
    option("--vocabulary", "vocabulary", metavar="FILE")
    option("--sentences", "sentences", metavar="FILE")
    option("--count", "count", type=int)
    option("--min-per-term", "min_per_term", type=int)
    option("--output", "output")
    option("--backend", "backend", choices=fields["backend"].metadata["choices"])
    option("--reference-manifest", "reference_manifest", metavar="PATH")
    option("--exclude-voices", "exclude_voices", nargs="+", metavar="VOICE")
    option("--voices", "voices", nargs="+", metavar="VOICE")
    option("--workers", "workers", type=int)
    option("--seed", "seed", type=int)
    option("--augment", "augment", action="store_true")
    option("--no-gate", "gate", action="store_false", help="keep every clip unheard (no baseline model is loaded)")
    option("--gate-model", "gate_model")
    option("--gate-max-cer", "gate_max_cer", type=float)
    option("--gate-retries", "gate_retries", type=int)
    p.add_argument("--json", action="store_true", help="print the summary as JSON (no progress bar)")
    p.set_defaults(handler=_cmd_synth)

    p = sub.add_parser(
        "mix",
        help="combine manifests (real + synthetic) into one, at a target ratio, shuffled",
        formatter_class=_Formatter,
    )
    p.add_argument("inputs", nargs="+", metavar="MANIFEST",
                   help="manifests to mix; SOURCE=PATH (real=... or synthetic=...) names the source of "
                        "rows without one")
    p.add_argument("--output", default="data/mixed_train.jsonl", help="mixed manifest to write")
    p.add_argument("--ratio", default=None, metavar="SOURCE=W,...",
                   help="rows per source in proportion, e.g. real=1,synthetic=3 (the source in excess is "
                        "sampled down); None: every row once")
    p.add_argument("--upsample-real", type=int, default=1, metavar="N",
                   help="repeat real rows N times before the ratio")
    p.add_argument("--default-source", default=None, choices=("real", "synthetic"),
                   help="source of rows that have none and whose manifest was not named SOURCE=PATH")
    p.add_argument("--seed", type=int, default=0, help="random seed of sampling and shuffle")
    p.add_argument("--json", action="store_true", help="print the composition as JSON")
    p.set_defaults(handler=_cmd_mix)


# --- evaluation -------------------------------------------------------------------------

def _eval_option(p, flag: str, name: str, **kw) -> None:
    """An EvalOptions field as an option: help and default come from the dataclass, absent stays absent."""
    from lora_training.evaluation.evaluate import option_fields

    f = next(f for f in option_fields() if f.name == name)
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    kw.setdefault("help", f.metadata["help"] + ("" if default in (None, []) else f" (default: {default})"))
    p.add_argument(flag, dest=name, default=argparse.SUPPRESS, **kw)


def _given_eval_options(args) -> dict:
    from lora_training.evaluation.evaluate import option_fields

    return {f.name: getattr(args, f.name) for f in option_fields() if hasattr(args, f.name)}


def _show_evaluation(result: dict, args) -> int:
    if args.json:
        _print_json(result)
    else:
        from lora_training.reporting.console import print_results

        print_results(result, show=args.show)
        if result["options"]["output"]:
            print(f"results: {result['options']['output']}")
    return 0 if result["status"]["ok"] else 1


def _cmd_transcribe(args) -> int:
    from lora_training.evaluation.evaluate import EvalOptions, run_evaluation

    options = EvalOptions(**_given_eval_options(args))
    return _show_evaluation(run_evaluation(options, progress=not args.no_progress and sys.stderr.isatty()), args)


def _cmd_evaluate(args) -> int:
    from lora_training.runners.evaluation import evaluate_run

    given = _given_eval_options(args)
    safety = given.pop("safety_manifest", None) or (None if args.safety == "none" else args.safety)
    result = evaluate_run(args.name, outputs=args.outputs, safety=safety,
                          progress=not args.no_progress and sys.stderr.isatty(), **given)
    return _show_evaluation(result, args)


def _cmd_report(args) -> int:
    from lora_training.reporting.report import write_report
    from lora_training.runners.experiment import run_dir_for

    kw = {"template": args.template} if args.template else {}
    print(write_report(run_dir_for(args.name, args.outputs), samples=args.samples, **kw))
    return 0


def _cmd_compare(args) -> int:
    from lora_training.reporting.report import compare_runs
    from lora_training.runners.experiment import run_dir_for

    rows = compare_runs([run_dir_for(name, args.outputs) for name in args.names])
    if args.json:
        _print_json(rows)
    else:
        from rich.console import Console

        from lora_training.reporting.console import compare_table

        # A table this wide is cut at 80 columns when piped; a terminal gets its own width.
        Console(highlight=False, width=None if sys.stdout.isatty() else 140).print(compare_table(rows))
    return 0


def _add_display_options(p) -> None:
    p.add_argument("--json", action="store_true", help="print the result JSON instead of the table")
    p.add_argument("--show", type=int, default=5, metavar="N", help="most-changed samples to show as word diffs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _add_evaluation_commands(sub) -> None:
    p = sub.add_parser(
        "transcribe",
        help="transcribe a manifest or audio files with a base model and/or adapter; score, compare, gate safety",
        description="Transcribe with the base model and (with --adapter-dir) the adapter merged into it, score "
                    "both (WER, CER, term recall seen/unseen, symbol accuracy) and optionally a general-domain "
                    "safety set. Exit status 1 when a clip failed or the safety budget was exceeded.",
        formatter_class=_Formatter,
    )
    inputs = p.add_mutually_exclusive_group(required=True)
    _eval_option(inputs, "--manifest", "manifest", metavar="PATH")
    _eval_option(inputs, "--audio", "audio", nargs="+", metavar="PATH")
    _eval_option(p, "--model-id", "model_id")
    _eval_option(p, "--adapter-dir", "adapter_dir", metavar="DIR")
    _eval_option(p, "--output", "output", metavar="JSON")
    _eval_option(p, "--no-baseline", "baseline", action="store_false",
                 help="with --adapter-dir, skip the base model on the main set (the safety set still runs both)")
    _eval_option(p, "--vocabulary", "vocabulary", metavar="FILE")
    safety = p.add_mutually_exclusive_group()
    _eval_option(safety, "--safety-manifest", "safety_manifest", metavar="PATH",
                 help="general-domain manifest for the safety WER")
    _eval_option(safety, "--safety", "safety_manifest", choices=["builtin"],
                 help="builtin: real English speech from Debian packages (telephone prompts + audiobook)")
    _add_run_eval_options(p)
    _eval_option(p, "--max-chunk-seconds", "max_chunk_seconds", type=float)
    _add_display_options(p)
    p.set_defaults(handler=_cmd_transcribe)

    p = sub.add_parser("evaluate", help="best adapter of a run vs its base model, on its eval manifest + safety set",
                       description="Writes outputs/NAME/eval_results.json. Exit status 1 when a clip failed or "
                                   "the safety budget was exceeded.", formatter_class=_Formatter)
    p.add_argument("name", help="experiment name")
    p.add_argument("--outputs", default="outputs", help="folder holding experiment folders")
    p.add_argument("--safety", choices=["builtin", "none"], default="builtin", help="safety set (none: no gate)")
    _eval_option(p, "--safety-manifest", "safety_manifest", metavar="PATH",
                 help="your own general-domain manifest instead of the built-in safety set")
    _add_run_eval_options(p)
    _add_display_options(p)
    p.set_defaults(handler=_cmd_evaluate)

    p = sub.add_parser("report", help="write outputs/NAME/report.md (+ PNG curves) from the run's files",
                       formatter_class=_Formatter)
    p.add_argument("name", help="experiment name")
    p.add_argument("--outputs", default="outputs", help="folder holding experiment folders")
    p.add_argument("--template", default=None, help="markdown template (default: docs/training_report.md)")
    p.add_argument("--samples", type=int, default=5, metavar="N", help="most-changed samples in the report")
    p.set_defaults(handler=_cmd_report)

    p = sub.add_parser("compare", help="one table across runs: WER, term recall, safety, steps, time",
                       formatter_class=_Formatter)
    p.add_argument("names", nargs="+", metavar="NAME", help="experiment names")
    p.add_argument("--outputs", default="outputs", help="folder holding experiment folders")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(handler=_cmd_compare)


def _add_run_eval_options(p) -> None:
    _eval_option(p, "--safety-budget", "safety_budget", type=float, metavar="POINTS")
    _eval_option(p, "--safety-max-utterances", "safety_max_utterances", type=int, metavar="N")
    _eval_option(p, "--batch-size", "batch_size", type=int)
    _eval_option(p, "--num-threads", "num_threads", type=int)
    _eval_option(p, "--device", "device", choices=["auto", "cpu", "cuda"])


# --- entry point ------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lora-training",
        description="Personalise Moonshine speech-to-text to your voice and vocabulary.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_data_commands(sub)
    _add_model_commands(sub)
    _add_experiment_commands(sub)
    _add_pipeline_command(sub)
    _add_demo_command(sub)
    _add_recording_commands(sub)
    _add_synth_commands(sub)
    _add_evaluation_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one line for the user; the traceback only on request
        if args.debug:
            traceback.print_exc()
        elif isinstance(e, LoraTrainingError):
            print(f"error: {e}", file=sys.stderr)
        else:
            print(f"error: {type(e).__name__}: {e} (run with --debug for the traceback)", file=sys.stderr)
        return 1
