"""Transcribe a manifest (or plain audio) with the base model and an adapter, score both, gate on safety.

    run_evaluation(EvalOptions(...)) -> result dict (schema_version 1, see docs/evaluation.md)

The base model is loaded once and the adapter attached at once (so a mismatch fails before any work);
the baseline transcribes with the adapter disabled, then the adapter is merged into the same weights (no
LoRA overhead at inference) and everything runs again. Clips that cannot be read or decoded are listed
under `failures` and left out of every score, for both systems alike, so the comparison stays paired.
The result JSON is the source of truth; the console table and the markdown report are views of it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lora_training.config import adapter_kind, sites_text
from lora_training.data.vocabulary import load_vocabulary
from lora_training.defaults import (BIAS_BOOST, DECODE_BATCH_SIZE, DEVICES, MAX_CHUNK_SECONDS, MODEL_REFERENCE_HELP,
                                    default_model)
from lora_training.errors import ConfigError, LoraTrainingError
from lora_training.evaluation.biasing import keyterm_bias
from lora_training.evaluation.inputs import (BUILTIN, Clip, audio_clips, check_output, failure_record, load_clip_audio,
                                             manifest_clips, safety_clips)
from lora_training.evaluation.rewrite import vocabulary_rewriter
from lora_training.export.runtimes import RUNTIMES
from lora_training.options import option
from lora_training.runs.results import SCHEMA_VERSION, SYSTEMS, deltas, write_results


@dataclass
class EvalOptions:
    model_id: str | None = option(None, f"base model: {MODEL_REFERENCE_HELP} (default: the adapter's base model, "
                                        f"else {default_model('transcribe')})")
    adapter_dir: str | None = option(None, "adapter folder to evaluate against the base model (merged for inference)",
                                     metavar="DIR")
    export_dir: str | None = option(None, "exported folder (just export NAME) to evaluate against its base model, "
                                          "decoded by --runtime (instead of --adapter-dir)", metavar="DIR")
    runtime: str = option("torch", "what decodes --export-dir: an on-device runtime, or torch on its merged "
                                   "transformers folder", choices=("torch", *RUNTIMES))
    manifest: str | None = option(None, "manifest (JSONL) to transcribe and score (or --audio)", metavar="PATH")
    audio: list[str] = option([], "audio file(s) or folder(s) to transcribe without references (or --manifest)",
                              nargs="+", metavar="PATH")
    output: str | None = option(None, "write the result JSON here", metavar="JSON")
    baseline: bool = option(True, "with --adapter-dir, skip the base model on the main set (the safety set still "
                                  "runs both)", flag="--no-baseline")
    vocabulary: str | None = option(None, "vocabulary file: term recall in references without `terms`, and false "
                                          "alarms", metavar="FILE")
    bias_vocabulary: str | None = option(None, "keyterm biasing (off without it): favour these written forms while "
                                               "decoding, in both systems; also --vocabulary's default", metavar="FILE")
    bias_boost: float = option(BIAS_BOOST, "keyterm biasing: logit bonus for starting a term; its k-th token "
                                           "gets B·(1+ln k)", metavar="B")
    rewrite_spoken: bool = option(True, "with --bias-vocabulary: spoken forms a transcript spells out ('word error "
                                        "rate') are written as their terms ('WER'), in both systems",
                                  flag="--no-rewrite-spoken")
    safety_manifest: str | None = option(None, "general-domain manifest for the safety WER, or 'builtin' (real "
                                               "English speech from Debian packages); None: no safety set",
                                         flag="--safety-manifest --safety", metavar="PATH|builtin")
    safety_budget: float = option(1.0, "largest allowed safety WER increase of the adapter, in WER points",
                                  metavar="POINTS")
    safety_max_utterances: int = option(0, "use at most N evenly spaced safety clips (0: all)", metavar="N")
    batch_size: int = option(DECODE_BATCH_SIZE, "clips decoded together (encoded in tight length buckets first)")
    max_chunk_seconds: float = option(MAX_CHUNK_SECONDS, "clips longer than this are cut at quiet points and the "
                                                         "texts joined")
    num_threads: int = option(0, "torch CPU threads (0: all cores, at most 8)")
    device: str = option("auto", "compute device (auto: cuda when available, else cpu)", choices=DEVICES)

    def __post_init__(self) -> None:
        problems = []
        if bool(self.manifest) == bool(self.audio):
            problems.append(f"input: expected exactly one of --manifest or --audio, got "
                            f"{'both' if self.manifest else 'neither'}")
        if not self.baseline and not (self.adapter_dir or self.export_dir):
            problems.append("baseline: --no-baseline leaves nothing to transcribe without --adapter-dir/--export-dir")
        if self.export_dir and (self.adapter_dir or (self.bias_vocabulary and self.runtime != "torch")):
            problems.append("export_dir: expected no --adapter-dir (the export holds it) and, in an on-device "
                            "runtime, no --bias-vocabulary (the runtimes have no decoding hook)")
        if not 0 <= self.bias_boost < float("inf"):
            problems.append(f"bias_boost: expected a finite logit bonus >= 0, got {self.bias_boost!r}")
        if not self.safety_budget >= 0:
            problems.append(f"safety_budget: expected WER points >= 0, got {self.safety_budget!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size > 0):
            problems.append(f"batch_size: expected a positive integer, got {self.batch_size!r}")
        for name in ("safety_max_utterances", "num_threads"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 0):
                problems.append(f"{name}: expected an integer >= 0, got {getattr(self, name)!r}")
        if not 1.0 <= self.max_chunk_seconds <= 30.0:
            problems.append(f"max_chunk_seconds: expected 1-30 s (Moonshine's decoder has 194 positions), "
                            f"got {self.max_chunk_seconds!r}")
        if self.device not in DEVICES:
            problems.append(f"device: expected one of {', '.join(DEVICES)}, got {self.device!r}")
        if problems:
            raise ConfigError("invalid evaluation options: " + "; ".join(problems))


# --- the run ----------------------------------------------------------------------------

class _Evaluator:
    """Holds the model between the baseline and the adapter pass; one instance per run."""

    def __init__(self, options: EvalOptions, progress: bool):
        self.options = options
        self.progress = progress
        self.failures: list[dict[str, Any]] = []
        self.timing: dict[str, Any] = {}
        self.runtime = None  # an export in an on-device runtime decodes the adapter system

    def transcribe(self, system: str, set_name: str, clips: list[Clip], audio: dict) -> dict[str, dict]:
        """{clip id: {"hyp", "chunks"}} for the clips that decoded; the others become failures."""
        from lora_training.data.audio import SAMPLE_RATE
        from lora_training.evaluation.transcribe import transcribe_clips, transcribe_with_runtime

        todo = [c for c in clips if c.id in audio]
        label = f"{set_name} · {system}" if self.progress else None
        start = time.perf_counter()
        if system == "adapter" and self.runtime is not None:
            results = transcribe_with_runtime(self.runtime, [audio[c.id] for c in todo], rewrite=self.rewrite,
                                              max_chunk_seconds=self.options.max_chunk_seconds, progress=label)
        else:
            results = transcribe_clips(self.model, self.processor, [audio[c.id] for c in todo],
                                       batch_size=self.options.batch_size,
                                       max_chunk_seconds=self.options.max_chunk_seconds, progress=label, bias=self.bias,
                                       rewrite=self.rewrite)
        seconds = time.perf_counter() - start
        audio_seconds = sum(len(audio[c.id]) for c in todo) / SAMPLE_RATE
        self.timing[system if set_name == "eval" else f"{set_name}_{system}"] = {
            "seconds": round(seconds, 3), "audio_seconds": round(audio_seconds, 3),
            "rtf": round(seconds / audio_seconds, 4) if audio_seconds else None,
        }
        out = {}
        for clip, result in zip(todo, results):
            if result.error:
                self.failures.append(failure_record(clip, set_name, "transcribe", system, result.error))
            else:
                out[clip.id] = {"hyp": result.text, "chunks": result.chunks}
        return out


def run_evaluation(options: EvalOptions, *, progress: bool = False) -> dict[str, Any]:
    """Everything `transcribe` and `evaluate NAME` report, as a JSON-ready dict (written to options.output)."""
    from lora_training.data.audio import SAMPLE_RATE

    started = time.perf_counter()
    ev = _Evaluator(options, progress)

    # Cheap checks and decoding first: a wrong path fails before a model is loaded, and an
    # unwritable output before a clip is decoded (minutes of work would be lost at the end).
    if options.output:
        safety_path = None if options.safety_manifest == BUILTIN else options.safety_manifest
        check_output(options.output, {"manifest": options.manifest, "vocabulary": options.vocabulary,
                                      "bias_vocabulary": options.bias_vocabulary,
                                      "safety_manifest": safety_path,
                                      **{f"audio {i}": a for i, a in enumerate(options.audio, start=1)}})
    sidecar = _sidecar(options.adapter_dir) or _export_provenance(options.export_dir)
    model_id = options.model_id or (sidecar or {}).get("base_model") or default_model("transcribe")
    clips = manifest_clips(options.manifest) if options.manifest else audio_clips(options.audio)
    bias_vocabulary = load_vocabulary(options.bias_vocabulary) if options.bias_vocabulary else None
    bias_terms = bias_vocabulary.written_forms() if bias_vocabulary else None
    vocabulary = _vocabulary(options.vocabulary) if options.vocabulary else bias_terms
    seen_terms = sorted(sidecar.get("train_terms") or []) if sidecar else None
    audio, failures = load_clip_audio(clips, "eval")
    ev.failures += failures
    safety = None
    if options.safety_manifest:
        path, description, s_clips = safety_clips(options.safety_manifest, options.safety_max_utterances)
        s_audio, s_failures = load_clip_audio(s_clips, "safety")
        ev.failures += s_failures
        safety = {"path": path, "description": description, "clips": s_clips, "audio": s_audio}
    if not audio:
        raise LoraTrainingError(f"no clip could be read, expected at least one, got {len(ev.failures)} failure(s); "
                                f"first: {ev.failures[0]['error']}")

    ev.model, ev.processor = _load_model(model_id, options, ev.timing)
    ev.bias = keyterm_bias(ev.processor.tokenizer, bias_terms or [], options.bias_boost)  # both systems alike
    ev.rewrite = vocabulary_rewriter(bias_vocabulary, options.rewrite_spoken)
    if options.adapter_dir:
        # Attached before the baseline runs, so an adapter for another base model fails at once.
        ev.model = _attach_adapter(ev.model, options.adapter_dir, model_id, ev.timing)
    systems: dict[str, dict[str, dict]] = {}
    safety_hyps: dict[str, dict[str, dict]] = {}
    with ev.model.disable_adapter() if options.adapter_dir else contextlib.nullcontext():
        if options.baseline:
            systems["baseline"] = ev.transcribe("baseline", "eval", clips, audio)
        if safety:
            # The safety gate is a delta, so the baseline runs on it even with --no-baseline.
            safety_hyps["baseline"] = ev.transcribe("baseline", "safety", safety["clips"], safety["audio"])
    if options.export_dir:
        ev.runtime, ev.model = _open_export(options, ev.model, ev.timing)
    if options.adapter_dir:
        ev.model = _merge(ev.model, ev.timing)
    if options.adapter_dir or options.export_dir:
        systems["adapter"] = ev.transcribe("adapter", "eval", clips, audio)
        if safety:
            safety_hyps["adapter"] = ev.transcribe("adapter", "safety", safety["clips"], safety["audio"])

    result = {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": _model_block(model_id, options, sidecar),
        "inputs": {
            "manifest": options.manifest, "audio": list(options.audio),
            "vocabulary": options.vocabulary or options.bias_vocabulary,
            "n_clips": len(clips), "audio_seconds": round(sum(len(a) for a in audio.values()) / SAMPLE_RATE, 3),
            "has_references": all(c.ref is not None for c in clips),
        },
        "options": dataclasses.asdict(options),
        "biasing": {"vocabulary": options.bias_vocabulary, "terms": len(bias_terms), "boost": options.bias_boost,
                    "rewrite_spoken": ev.rewrite is not None}
                   if bias_terms is not None else None,
        "seen_terms": seen_terms,
        "seen_terms_by_source": (sidecar or {}).get("train_terms_by_source"),
        **_score_main(clips, systems, ev.failures, seen_terms, vocabulary),
        "safety": _score_safety(safety, safety_hyps, ev.failures, options.safety_budget) if safety else None,
        "failures": ev.failures,
        "timing": {**ev.timing, "total_seconds": round(time.perf_counter() - started, 3)},
    }
    result["status"] = _status(result)
    if options.output:
        write_results(options.output, result)
    return result


def _sidecar(adapter_dir: str | None) -> dict[str, Any] | None:
    if not adapter_dir:
        return None
    from lora_training.models.adapters import read_sidecar

    return read_sidecar(adapter_dir)


def _export_provenance(export_dir: str | None) -> dict[str, Any] | None:
    """An export's provenance: its base model, and its adapter's sidecar (terms seen in training)."""
    if not export_dir:
        return None
    import json

    from lora_training.export.runtimes import PROVENANCE, check_export_dir

    provenance = json.loads((check_export_dir(export_dir) / PROVENANCE).read_text(encoding="utf-8"))
    return {**(provenance.get("adapter") or {}), "base_model": provenance.get("base_model"), "export": provenance}


def _open_export(options: EvalOptions, model, timing: dict[str, Any]):
    """(runtime, model) for the adapter system: the export in a runtime, or its merged folder in torch."""
    from lora_training.export.export import TRANSFORMERS_DIR
    from lora_training.export.runtimes import open_export

    start = time.perf_counter()
    if options.runtime == "torch":
        from lora_training.models.registry import resolve_model

        model = resolve_model(str(Path(options.export_dir) / TRANSFORMERS_DIR))[0]
        runtime = None
    else:
        runtime = open_export(options.export_dir, options.runtime, threads=options.num_threads or 1)
    timing["export_load_seconds"] = round(time.perf_counter() - start, 3)
    return runtime, model


def _vocabulary(path: str | None) -> list[str] | None:
    return load_vocabulary(path).written_forms() if path else None


def _load_model(model_id: str, options: EvalOptions, timing: dict[str, Any]):
    from lora_training.models.registry import resolve_model
    from lora_training.models.runtime import pick_device, set_threads

    set_threads(options.num_threads)
    start = time.perf_counter()
    model, processor = resolve_model(model_id, device=pick_device(options.device))
    timing["load_seconds"] = round(time.perf_counter() - start, 3)
    return model, processor


def _attach_adapter(model, adapter_dir: str, model_id: str, timing: dict[str, Any]):
    """The PEFT model (refused on a different base model); with `disable_adapter()` it is the base model."""
    from lora_training.models.adapters import load_adapter

    start = time.perf_counter()
    peft_model = load_adapter(model, adapter_dir, base_model=model_id)
    timing["adapter_load_seconds"] = round(time.perf_counter() - start, 3)
    return peft_model.eval()


def _merge(peft_model, timing: dict[str, Any]):
    """Fold the adapter into the base weights: inference then costs exactly what the base model costs."""
    start = time.perf_counter()
    merged = peft_model.merge_and_unload()
    timing["merge_seconds"] = round(time.perf_counter() - start, 3)
    return merged.eval()


def _model_block(model_id: str, options: EvalOptions, sidecar: dict | None) -> dict[str, Any]:
    from lora_training.models.registry import describe_reference

    block = {"model_id": model_id, "resolved": describe_reference(model_id), "adapter_dir": options.adapter_dir}
    if options.export_dir:
        block["export"] = {"dir": options.export_dir, "runtime": options.runtime,
                           "weights": sidecar["export"].get("quantization", {}).get("weights")}
    if sidecar:
        config = sidecar.get("config") or {}
        block["adapter"] = {
            "base_model": sidecar.get("base_model"), "step": sidecar.get("step"), "best": sidecar.get("best"),
            "kind": adapter_kind(config), "r": config.get("lora_r"),
            "alpha": config.get("lora_alpha"), "sites": sites_text(config) if config.get("adapter_sites") else None,
            "train_terms": len(sidecar.get("train_terms") or []),
        }
    return block


# --- scoring ----------------------------------------------------------------------------

def _failed_ids(failures: list[dict], set_name: str) -> set[str]:
    return {f["id"] for f in failures if f["set"] == set_name}


def _score_main(clips: list[Clip], systems: dict[str, dict[str, dict]], failures: list[dict],
                seen_terms: list[str] | None, vocabulary: list[str] | None) -> dict[str, Any]:
    """`summary` (score per system + deltas) and `utterances` (one row per clip that did not fail)."""
    from lora_training.evaluation.intervals import paired_deltas
    from lora_training.evaluation.metrics import repetition_flag, score

    failed = _failed_ids(failures, "eval")
    ok = [c for c in clips if c.id not in failed]
    rows = []
    for clip in ok:
        any_system = next(iter(systems.values()))[clip.id]
        rows.append({"id": clip.id, "audio": clip.audio, "ref": clip.ref, "terms": clip.terms,
                     "source": clip.source, "chunks": any_system["chunks"]})
    summary: dict[str, Any] = {name: None for name in SYSTEMS}
    scored = bool(ok) and all(c.ref is not None for c in ok)
    terms = None if all(c.terms is None for c in ok) else [c.terms or [] for c in ok]
    scored_rows: dict[str, list[dict]] = {}
    for name, hyps in systems.items():
        texts = [hyps[c.id]["hyp"] for c in ok]
        if scored:
            full = score([c.ref for c in ok], texts, terms=terms, seen_terms=seen_terms, vocabulary=vocabulary)
            summary[name] = {k: v for k, v in full.items() if k != "per_utterance"}
            per_row = scored_rows[name] = full["per_utterance"]
        else:
            per_row = [{"wer": None, "terms_hit": None, "terms_missed": None, "looping": repetition_flag(t)}
                       for t in texts]
        for row, text, scores in zip(rows, texts, per_row):
            row[name] = {"hyp": text, **scores}
    summary["delta"] = deltas(summary["baseline"], summary["adapter"])
    # The same utterances under both systems: a paired interval, far tighter than two separate ones.
    summary["delta_interval"] = (paired_deltas(scored_rows["baseline"], scored_rows["adapter"])
                                 if set(SYSTEMS) <= set(scored_rows) else None)
    return {"summary": summary, "utterances": rows}


def _score_safety(safety: dict, hyps: dict[str, dict[str, dict]], failures: list[dict], budget: float) -> dict:
    """Safety WER per system with the numbers-aware normaliser, the delta in WER points, and the gate."""
    from lora_training.evaluation.intervals import paired_deltas
    from lora_training.evaluation.metrics import score

    failed = _failed_ids(failures, "safety")
    ok = [c for c in safety["clips"] if c.id not in failed]
    block: dict[str, Any] = {"manifest": safety["path"], "description": safety["description"],
                             "n_utterances": len(ok), "normalizer": "safety", "budget_wer_points": budget}
    rows = [{"id": c.id, "ref": c.ref} for c in ok]
    scored_rows: dict[str, list[dict]] = {}
    for name in SYSTEMS:
        block[name] = None
        if name in hyps and ok:
            texts = [hyps[name][c.id]["hyp"] for c in ok]
            full = score([c.ref for c in ok], texts, normalizer="safety")
            block[name] = {"wer": full["wer"], "wer_interval": full["wer_interval"], "n_words": full["n_words"],
                           "cer": full["cer"], "n_looping": full["n_looping"]}
            scored_rows[name] = full["per_utterance"]
            for row, text, scores in zip(rows, texts, full["per_utterance"]):
                row[name] = {"hyp": text, "wer": scores["wer"], "looping": scores["looping"]}
    block["delta_interval"] = None
    if block["baseline"] and block["adapter"]:
        block["delta_wer_points"] = round(100 * (block["adapter"]["wer"] - block["baseline"]["wer"]), 3)
        block["passed"] = block["delta_wer_points"] <= budget
        block["delta_interval"] = paired_deltas(scored_rows["baseline"], scored_rows["adapter"])["wer"]
    else:
        block["delta_wer_points"] = None
        block["passed"] = None
    block["utterances"] = rows
    return block


def _status(result: dict[str, Any]) -> dict[str, Any]:
    """ok unless a clip failed or the adapter exceeded the safety budget; `problems` says which."""
    problems = []
    if result["failures"]:
        sets = sorted({f["set"] for f in result["failures"]})
        problems.append(f"{len(result['failures'])} clip failure(s) in the {' and '.join(sets)} set(s)")
    safety = result["safety"]
    if safety and safety["passed"] is False:
        problems.append(f"safety WER rose {safety['delta_wer_points']:+.2f} points, over the budget of "
                        f"+{safety['budget_wer_points']:.2f}")
    return {"ok": not problems, "problems": problems}
