"""`export NAME`: a run's adapter merged into its base model and written in the on-device format.

outputs/NAME/export/ holds what moonshine-cpp and sherpa-onnx load (encoder_model.ort,
decoder_model_merged.ort, tokenizer.bin, tokens.txt), the merged model as a transformers
`save_pretrained` folder (transformers/), and provenance.json (base model, adapter and its step,
toolkit and library versions, quantisation, every file's size and sha256, and how many eval clips
the exported graphs transcribe exactly as the merged PyTorch model does). The folder appears by an
atomic rename, so a crash never leaves half an export where a runtime would load it.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lora_training.atomic import atomic_replace_dir, atomic_write_json, staging_dir
from lora_training.defaults import DEVICES
from lora_training.errors import ConfigError
from lora_training.export.runtimes import DECODER, ENCODER, PROVENANCE
from lora_training.models.embedded import file_sha256
from lora_training.options import option
from lora_training.runs import RunRef

QUANTIZATIONS = ("int8", "none")
TRANSFORMERS_DIR = "transformers"


@dataclass
class ExportOptions(RunRef):
    checkpoint: str = option("best", "which adapter: best (the best dev checkpoint, else the final one) or final",
                             choices=("best", "final"))
    quantize: str = option("int8", "weights: int8 (one scale per output channel, ~4x smaller) or none (float32)",
                           choices=QUANTIZATIONS)
    base_only: bool = option(False, "export the run's base model without its adapter (the on-device baseline)")
    out: str | None = option(None, "output folder (default: OUTPUTS/NAME/export)", metavar="DIR")
    verify: int = option(8, "eval clips to transcribe with both the exported graphs and the merged PyTorch "
                            "model, counting identical transcripts (0: skip)")
    overwrite: bool = option(False, "replace an existing export folder")
    device: str = option("auto", "device of the PyTorch side of --verify (tracing always runs on the CPU)",
                         choices=DEVICES)


def export_run(options: ExportOptions, *, progress: bool = False) -> dict[str, Any]:
    """Export outputs/NAME's adapter (see ExportOptions); returns the provenance written."""
    from lora_training.models.adapters import load_adapter, read_sidecar
    from lora_training.models.registry import resolve_model
    from lora_training.models.runtime import pick_device

    pick_device(options.device)  # a device this machine lacks fails now, not after the export
    run = options.folder
    cfg = run.load_config()
    out = Path(options.out) if options.out else run.export
    if out.exists() and not options.overwrite:
        raise ConfigError(f"{out}: export exists, expected a new folder; pass --overwrite to replace it")
    adapter_dir = None
    if not options.base_only:
        adapter_dir = run.preferred_adapter() if options.checkpoint == "best" else run.adapter
        read_sidecar(adapter_dir)  # a one-line error before minutes of work if it is not an adapter
    model, processor = resolve_model(cfg.model_id)
    if adapter_dir is not None:
        model = load_adapter(model, adapter_dir, base_model=cfg.model_id).merge_and_unload()
    info = {"run": run.name, "base_model": cfg.model_id,
            "adapter": None if adapter_dir is None else {"dir": str(adapter_dir), **read_sidecar(adapter_dir)}}
    clips = _eval_clips(cfg.eval_manifest, options.verify)
    return export_model(model.eval(), processor, out, quantize=options.quantize, info=info, verify_clips=clips,
                        verify_device=options.device, progress=progress)


def export_model(model, processor, out: Path, *, quantize: str = "int8", info: dict[str, Any] | None = None,
                 verify_clips: list | None = None, verify_device: str = "cpu", progress: bool = False) -> dict[str, Any]:
    """Write `model` (a plain, merged MoonshineForConditionalGeneration) as an export folder at `out`."""
    import onnx

    from lora_training.export.onnx_graphs import encoder_graph, merged_decoder_graph
    from lora_training.export.quantize import quantize_weights
    from lora_training.export.tokenizer_files import write_tokenizer_files

    if quantize not in QUANTIZATIONS:
        raise ConfigError(f"quantize: unknown, expected one of {', '.join(QUANTIZATIONS)}, got {quantize!r}")
    start = time.perf_counter()
    staging = staging_dir(out)
    try:
        _say(progress, "merging and saving the transformers folder")
        model.save_pretrained(staging / TRANSFORMERS_DIR)
        processor.save_pretrained(staging / TRANSFORMERS_DIR)
        counts = {}
        for filename, build in ((ENCODER, encoder_graph), (DECODER, merged_decoder_graph)):
            _say(progress, f"tracing {filename}")
            graph = build(model)
            if quantize == "int8":
                counts[filename] = quantize_weights(graph)
            onnx_path = staging / filename.replace(".ort", ".onnx")
            onnx.save(graph, onnx_path)
            _to_ort(onnx_path, staging / filename)
            onnx_path.unlink()
        write_tokenizer_files(processor.tokenizer, staging)
        verification = (_verify(model, processor, staging, verify_clips, verify_device, progress)
                        if verify_clips else None)
        provenance = {
            **(info or {}),
            "quantization": {"weights": quantize, "scheme": "symmetric int8, one scale per output channel",
                             "tensors": counts} if quantize == "int8" else {"weights": "float32"},
            "runtime_model_type": "tiny" if model.config.hidden_size <= 288 else "base",
            "toolkit_version": _version("lora-training"),
            "packages": {p: _version(p) for p in ("torch", "transformers", "peft", "onnx", "onnxruntime")},
            "files": {f.name: {"bytes": f.stat().st_size, "sha256": file_sha256(f)}
                      for f in sorted(staging.iterdir()) if f.is_file()},
            "verification": verification,
            "export_seconds": round(time.perf_counter() - start, 1),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write_json(staging / PROVENANCE, provenance)
        atomic_replace_dir(staging, out)  # an earlier export (--overwrite) goes only once this one is in place
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"out": str(out), **provenance}


def _to_ort(onnx_path: Path, ort_path: Path) -> None:
    """Save the graph in ONNX Runtime's own format, unoptimised: the int8 chains stay in the file
    (small), and each runtime folds them with its own optimiser when it loads."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.optimized_model_filepath = str(ort_path)
    options.add_session_config_entry("session.save_model_format", "ORT")
    onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def _eval_clips(manifest: str | None, count: int) -> list:
    if not manifest or count <= 0:
        return []
    from lora_training.data.audio import load_audio
    from lora_training.data.manifest import load_manifest

    return [(row.id or row.audio, load_audio(row.audio)) for row in load_manifest(manifest)[:count]]


def _verify(model, processor, folder: Path, clips: list, device: str, progress: bool) -> dict[str, Any]:
    """How many clips the exported graphs (Python onnxruntime) transcribe exactly as PyTorch's
    `generate` does on the same model."""
    from lora_training.export.runtimes import open_export
    from lora_training.models.registry import greedy_decode
    from lora_training.models.runtime import pick_device

    _say(progress, f"verifying on {len(clips)} eval clips")
    model = model.to(pick_device(device))  # after tracing, which ran on the CPU
    runtime = open_export(folder, "onnxruntime")
    differing = []
    for clip_id, audio in clips:
        want = processor.tokenizer.decode(greedy_decode(model, processor, audio), skip_special_tokens=True).strip()
        got = runtime.transcribe(audio)
        if got != want:
            differing.append({"id": clip_id, "torch": want, "export": got})
    return {"clips": len(clips), "identical": len(clips) - len(differing), "differing": differing}


def _say(progress: bool, what: str) -> None:
    if progress:
        print(f"export: {what} ...", flush=True)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
