"""The `studio` command: the local web app over the same manifests and run folders (lora_training/studio)."""

from __future__ import annotations


def _studio(args) -> int:
    from lora_training.cli.args import build
    from lora_training.studio.serve import StudioOptions, serve

    serve(build(args, StudioOptions))
    return 0


def add_studio_commands(cmd) -> None:
    p = cmd.add("studio", "one local web page for the whole loop: record, review data, train, compare, correct",
                "lora_training.studio.serve:StudioOptions",
                description="Serves http://127.0.0.1:8765 and opens the browser. The pages call the same "
                "functions as the commands and start the same background runs, so `just status` sees what "
                "the studio started and the other way round.")
    p.set_defaults(handler=_studio)
