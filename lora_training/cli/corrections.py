"""The `corrections` command: review dictated clips and keep their written forms (capture/corrections.py)."""

from __future__ import annotations

import sys

from lora_training.cli.args import add_json, build, print_json
from lora_training.cli.commands import Commands


def _ask_on_stderr(prompt: str) -> str:
    """`input` whose prompt goes to stderr, so `--json` leaves stdout to the summary alone."""
    print(prompt, end="", file=sys.stderr, flush=True)
    return input()


def _corrections(args) -> int:
    from lora_training.capture.corrections import CorrectionsOptions, review_corrections

    if args.json:
        summary = review_corrections(build(args, CorrectionsOptions), ask=_ask_on_stderr,
                                     out=lambda line: print(line, file=sys.stderr))
        print_json(summary.to_dict())
    else:
        print(review_corrections(build(args, CorrectionsOptions)).render())
    return 0


def add_corrections_commands(cmd: Commands) -> None:
    p = cmd.add("corrections", "review what dictate heard: accept or fix each clip's text, to train on your fixes",
                "lora_training.capture.corrections:CorrectionsOptions",
                description="Keys: p play, Enter/a accept, e edit (type the written form), s skip, d discard, "
                "q quit. Each decision is saved at once; a re-run shows only clips not yet reviewed. Train on "
                "the result with `just run-experiment NAME --corrections data/corrections.jsonl`.")
    add_json(p, "the summary (the review itself on stderr)")
    p.set_defaults(handler=_corrections)
