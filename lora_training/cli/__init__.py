"""The command line: argument parsing only. Each command builds its options dataclass and calls
one library function (cli/commands.py); flags come from the dataclasses (cli/args.py).

Heavy libraries (torch, transformers) are imported inside the functions that need them,
so `--help` and `status` answer instantly. Nothing in the package imports the CLI.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from lora_training.cli.args import Formatter
from lora_training.cli.commands import Commands, add_data_commands, add_evaluation_commands, add_run_commands
from lora_training.cli.capture import add_capture_commands
from lora_training.cli.corrections import add_corrections_commands
from lora_training.cli.device import add_device_commands
from lora_training.cli.studio import add_studio_commands
from lora_training.errors import LoraTrainingError


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with `command`, only that command's options are built (the rest list
    their one-line help), which keeps `--help` and `status` from importing heavy modules."""
    parser = argparse.ArgumentParser(
        prog="lora-training",
        description="Personalise Moonshine speech-to-text to your voice and vocabulary.",
        formatter_class=Formatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cmd = Commands(sub, command)
    add_data_commands(cmd)
    add_run_commands(cmd)
    add_evaluation_commands(cmd)
    add_device_commands(cmd)
    add_capture_commands(cmd)
    add_corrections_commands(cmd)
    add_studio_commands(cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), "")
    args = build_parser(command).parse_args(argv)
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
