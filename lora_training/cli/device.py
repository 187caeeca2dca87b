"""Commands that take a trained adapter to the device: `export` (the runtime format)."""

from __future__ import annotations

from lora_training.cli.args import add_json, build, print_json


def _export(args) -> int:
    import sys

    from lora_training.export.export import ExportOptions, export_run
    from lora_training.reporting.console import export_summary

    result = export_run(build(args, ExportOptions), progress=not args.json and sys.stderr.isatty())
    print_json(result) if args.json else print(export_summary(result))
    return 0


def add_device_commands(cmd) -> None:
    p = cmd.add("export", "merge a run's adapter into its base model and write the on-device folder "
                "(moonshine-cpp / sherpa-onnx format, int8 by default)", "lora_training.export.export:ExportOptions",
                description="Writes OUTPUTS/NAME/export/: encoder_model.ort, decoder_model_merged.ort, tokenizer.bin, "
                "tokens.txt, the merged model as a transformers folder (transformers/) and provenance.json.")
    add_json(p, "the provenance")
    p.set_defaults(handler=_export)
