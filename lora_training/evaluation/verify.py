"""Flag recordings that would poison training: silent, too quiet, clipped, cut, padded with long
silence, or not the sentence that was prompted.

The level and pause checks are the ones `record` shows after each take (data/quality.py). The
prompt check transcribes every clip with the baseline model and compares the transcript with
both the spoken form ("dev at example dot com") and the written form ("dev@example.com"),
keeping the better WER: the baseline may write either, and jargon it merely misspells is what
training will fix, so only a transcript far from both is suspicious. The comparison uses the
safety normalisation ("42" == "forty-two"), because the question is whether the sentence was
said, not how it was formatted.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from lora_training.defaults import default_model, model_help
from lora_training.options import option

if TYPE_CHECKING:
    import numpy as np

    from lora_training.data.manifest import Utterance
    from lora_training.data.quality import Thresholds

    Transcriber = Callable[[list[np.ndarray]], list[str]]

# The CLI reads VerifyOptions while building its parser, so this module imports numpy and the
# data layer only inside functions: `--help` and `status` stay instant.
# Not yet measured on real recordings. Another sentence than the prompt scores ~1.0. espeak-ng
# reading 14 generated prompts (a harder speaker than a person) scored 0.09-0.75, median 0.44,
# on moonshine-base; the three above 0.6 were short sentences whose one term was garbled.
DEFAULT_MAX_WER = 0.6

def default_paths(manifest: str | os.PathLike) -> tuple[Path, Path]:
    """(report, clean manifest) beside the manifest: `NAME.verify.json`, `NAME.clean.jsonl`."""
    manifest = Path(manifest)
    return manifest.with_name(f"{manifest.stem}.verify.json"), manifest.with_name(f"{manifest.stem}.clean.jsonl")


def prompt_wer(utt: Utterance, transcript: str) -> float:
    """The transcript's WER against the closer of the spoken and the written form."""
    from lora_training.evaluation.metrics import utterance_wer
    from lora_training.data.normalize import normalize_for_safety

    references = [utt.text] + ([utt.spoken] if utt.spoken else [])
    return min(utterance_wer(ref, transcript, normalize_for_safety) for ref in references)


def check_utterances(
    utterances: Sequence[Utterance],
    transcribe: Transcriber,
    *,
    max_wer: float = DEFAULT_MAX_WER,
    thresholds: Thresholds | None = None,
) -> list[dict]:
    """One row per utterance, in order: levels, transcript, WER and issues (empty: clean)."""
    from lora_training.data.audio import load_audio
    from lora_training.data.quality import Issue, Thresholds, check_audio
    from lora_training.errors import AudioError

    thresholds = thresholds or Thresholds()
    rows, audios, readable = [], [], []
    for i, utt in enumerate(utterances):
        row = {"id": utt.id, "audio": utt.audio, "text": utt.text, "spoken": utt.spoken,
               "transcript": None, "wer": None, "levels": None, "issues": []}
        try:
            samples = load_audio(utt.audio, min_seconds=0.0, max_seconds=None)
        except AudioError as e:
            row["issues"].append(Issue("unreadable", str(e)).to_dict())
        else:
            levels, issues = check_audio(samples, thresholds)
            row["levels"] = levels.to_dict()
            row["issues"].extend(issue.to_dict() for issue in issues)
            audios.append(samples)
            readable.append(i)
        rows.append(row)
    for i, transcript in zip(readable, transcribe(audios) if audios else []):
        wer = prompt_wer(utterances[i], transcript)
        rows[i].update(transcript=transcript, wer=wer)
        if wer > max_wer:
            rows[i]["issues"].append(Issue(
                "mismatch", f"transcript far from the prompt, expected WER at most {max_wer:g}, "
                            f"got {wer:.2f} ({transcript!r})").to_dict())
    return rows


@dataclass
class VerifyOptions:
    manifest: str = option(None, "manifest to check", positional=True)
    model_id: str = option(default_model("verify"), model_help("verify", "baseline model that transcribes each clip"))
    max_wer: float = option(DEFAULT_MAX_WER, "flag clips whose transcript is further than this WER from the prompt")
    report: str | None = option(None, "JSON report to write; None: NAME.verify.json beside the manifest")
    drop: bool = option(False, "also write a manifest without the flagged clips")
    output: str | None = option(None, "clean manifest for --drop; None: NAME.clean.jsonl beside the manifest")


def verify_manifest(options: VerifyOptions, *, thresholds: Thresholds | None = None) -> dict:
    """Check every clip, write the JSON report and, with `drop`, a manifest without the flagged ones."""
    from lora_training.atomic import atomic_write_json
    from lora_training.data.manifest import load_manifest, save_manifest
    from lora_training.data.quality import Thresholds
    from lora_training.errors import ManifestError
    from lora_training.evaluation.transcribe import greedy_transcribe
    from lora_training.models.registry import resolve_model

    thresholds = thresholds or Thresholds()
    manifest, model_id, max_wer, drop = options.manifest, options.model_id, options.max_wer, options.drop
    report_path, output = options.report, options.output
    manifest, model_id, max_wer, drop = options.manifest, options.model_id, options.max_wer, options.drop
    report_path, output = options.report, options.output

    default_report, default_clean = default_paths(manifest)
    report_path = Path(report_path) if report_path is not None else default_report
    output = Path(output) if output is not None else default_clean
    utterances = load_manifest(manifest)  # before the model loads: a broken manifest fails in a second
    model, processor = resolve_model(model_id)
    rows = check_utterances(
        utterances,
        lambda audios: greedy_transcribe(model, processor, audios, progress="verify"),
        max_wer=max_wer,
        thresholds=thresholds,
    )
    report = {
        "manifest": str(manifest),
        "model": model_id,
        "max_wer": max_wer,
        "thresholds": asdict(thresholds),
        "n_utterances": len(rows),
        "n_flagged": sum(bool(row["issues"]) for row in rows),
        "report": str(report_path),
        "clean_manifest": None,
        "utterances": rows,
    }
    clean = [utt for utt, row in zip(utterances, rows) if not row["issues"]]
    if drop and clean:
        save_manifest(output, clean)
        report["clean_manifest"] = str(output)
    atomic_write_json(report_path, report)
    if drop and not clean:
        raise ManifestError([f"{manifest}: every utterance flagged, expected at least one clean utterance "
                             f"to write {output}, got 0 of {len(rows)} (see {report_path})"])
    return report


def render_report(report: dict) -> str:
    """The flagged clips as a table, each issue spelled out beneath its row."""
    flagged = [row for row in report["utterances"] if row["issues"]]
    lines = []
    if flagged:
        width = max(len("id"), *(len(str(row["id"])) for row in flagged))
        header = f"{'id':<{width}}  {'issues':<24} {'WER':>5}  transcript"
        lines += [header, "-" * len(header)]
        for row in flagged:
            codes = ", ".join(issue["code"] for issue in row["issues"])
            wer = "-" if row["wer"] is None else f"{row['wer']:.2f}"
            transcript = "-" if row["transcript"] is None else repr(row["transcript"])
            if len(transcript) > 60:
                transcript = transcript[:57] + "..."
            lines.append(f"{row['id']:<{width}}  {codes:<24} {wer:>5}  {transcript}")
            lines += [f"{'':<{width}}    {issue['message']}" for issue in row["issues"]]
        lines.append("")
    lines.append(f"{report['n_flagged']} of {report['n_utterances']} utterance(s) flagged; report: {report['report']}")
    if report["clean_manifest"]:
        lines.append(f"clean manifest ({report['n_utterances'] - report['n_flagged']} utterances): "
                     f"{report['clean_manifest']}")
    return "\n".join(lines)
