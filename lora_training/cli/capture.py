"""Capture commands that need a model: `dictate` (live dictation with an adapter or an export)."""

from __future__ import annotations

from lora_training.cli.args import add_json, build, print_json
from lora_training.cli.commands import Commands


def _dictate(args) -> int:
    from lora_training.capture.dictate import DictateOptions, dictate

    # Flushed line by line: dictated text is often piped into another program as it is heard.
    results = dictate(build(args, DictateOptions), out=(lambda line: None) if args.json else
                      (lambda line: print(line, flush=True)))
    if args.json:
        print_json(results)
    return 0


def add_capture_commands(cmd: Commands) -> None:
    p = cmd.add("dictate", "live dictation: speak, and read what an adapter (torch) or an exported model hears",
                "lora_training.capture.dictate:DictateOptions",
                description="Voice detection (Silero VAD) cuts the microphone, or --file, into utterances; each is "
                "transcribed and printed as it ends. --keep saves every utterance under --dictation-dir (clips/ and "
                "heard.jsonl) for later corrections; Ctrl-C stops. Needs: pip install -e '.[record]'.")
    add_json(p, "every utterance (text, times, latency, clip) at the end")
    p.set_defaults(handler=_dictate)
