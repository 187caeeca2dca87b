"""Argument parsing only: each command builds its inputs and calls one library function.

Heavy libraries (torch, transformers) are imported inside the functions that need them,
so `--help` and `status` answer instantly.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback

from lora_training.errors import LoraTrainingError

DEFAULT_MODEL_ID = "UsefulSensors/moonshine-tiny"


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


# --- demo -------------------------------------------------------------------------------

def _cmd_demo(args) -> int:
    from lora_training.runners.demo import run_demo

    return run_demo(workdir=args.workdir)


def _add_demo_command(sub) -> None:
    p = sub.add_parser("demo", help="the end-to-end demo on the embedded model, offline", formatter_class=_Formatter)
    p.add_argument("--workdir", default="outputs/demo", help="where the demo writes its data and runs")
    p.set_defaults(handler=_cmd_demo)


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
    _add_demo_command(sub)
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
