"""Keyterm biasing: what a boost gains on unseen terms and costs on other words and on safety,
with and without an adapter. Run by hand (not in CI); ~3.5 min on 2 cores (~35 s per boost).

    .venv/bin/python benchmarks/biasing.py [--boosts 0 1 2 4 8] [--threads 2] [--demo outputs/demo]

One `transcribe` per boost: model embedded:moonshine-base with the demo's best adapter (so each
run scores both systems, base model and adapter, under the same bias), `--manifest
my_voice_eval.jsonl` (28 clips, 50 term occurrences, 15 of them of the 4 terms no training row
has: __init__, C#, pytest, !=), `--vocabulary` and `--bias-vocabulary` the demo's vocabulary.txt,
`--safety builtin`. Boost 0 is biasing off (`--bias-boost 0`: no decoding hook); every boost, 0
included, decodes with the spoken-form rewrite the vocabulary brings (`--no-rewrite`: without it, as
the boost was first chosen), so the table isolates what the logit bonus adds.

Prints one markdown table. Values carry their 95% interval (bootstrap over utterances, as the
result JSON's); "Δ" columns are the change from boost 0 for the same system with a paired
interval (the same utterances resampled together), the comparison that decides a boost. Seen and
unseen refer to the adapter's training terms for both systems. "safety FA" counts vocabulary terms
the safety transcripts have beyond their references: biasing's false alarms on ordinary English.
A last line times decoding of the eval clips without and with the hook (the default boost).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SYSTEMS = ("baseline", "adapter")


def transcribe(demo: Path, boost: float, threads: int, output: Path, rewrite: bool = True) -> dict:
    data = demo / "data"
    command = [sys.executable, str(ROOT / "main.py"), "transcribe", "--model-id", "embedded:moonshine-base",
               "--adapter-dir", str(demo / "demo_tune" / "best_adapter"),
               "--manifest", str(data / "my_voice_eval.jsonl"), "--vocabulary", str(data / "vocabulary.txt"),
               "--safety", "builtin", "--num-threads", str(threads), "--output", str(output), "--no-progress"]
    command += ["--bias-vocabulary", str(data / "vocabulary.txt"), "--bias-boost", str(boost)]
    if not rewrite:
        command.append("--no-rewrite-spoken")
    # Exit status 1 is the safety gate or a clip failure; the numbers are in the output either way.
    subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, check=False)
    return json.loads(output.read_text())


def rows_of(result: dict, system: str, vocabulary: list[str]) -> dict:
    """Per-utterance counts behind each column, for intervals and paired deltas."""
    from lora_training.evaluation.metrics import find_terms, score

    seen = set(result["seen_terms"])
    eval_rows = [r[system] for r in result["utterances"]]
    safety = result["safety"]["utterances"]
    refs, hyps = [r["ref"] for r in safety], [r[system]["hyp"] for r in safety]
    safety_scores = score(refs, hyps, normalizer="safety")["per_utterance"]
    return {
        "errors": [r["errors"] for r in eval_rows], "words": [r["words"] for r in eval_rows],
        **{f"{part}_hits": [sum((t in seen) == (part == "seen") for t in r["terms_hit"]) for r in eval_rows]
           for part in ("seen", "unseen")},
        **{f"{part}_terms": [sum((t in seen) == (part == "seen") for t in r["terms_hit"] + r["terms_missed"])
                             for r in eval_rows] for part in ("seen", "unseen")},
        "safety_errors": [s["errors"] for s in safety_scores], "safety_words": [s["words"] for s in safety_scores],
        "safety_fa": sum(max(0, len(find_terms(h, vocabulary)) - len(find_terms(r, vocabulary)))
                         for r, h in zip(refs, hyps)),
        "false_alarms": result["summary"][system]["term_recall"]["false_alarms"]["total"],
    }


def rate(rows: dict, num: str, den: str) -> str:
    from lora_training.evaluation.intervals import rate_interval
    from lora_training.formatting import interval_text

    total = sum(rows[den])
    value = sum(rows[num]) / total if total else 0.0
    return f"{100 * value:.1f}{interval_text(rate_interval(rows[num], rows[den]))}"


def recall(rows: dict, part: str) -> str:
    return f"{rate(rows, f'{part}_hits', f'{part}_terms')} ({sum(rows[f'{part}_hits'])}/{sum(rows[f'{part}_terms'])})"


def delta(base: dict, new: dict, num: str, den: str) -> str:
    from lora_training.evaluation.intervals import paired_delta_interval
    from lora_training.formatting import interval_text

    change = (sum(new[num]) - sum(base[num])) / sum(base[den])
    return f"{100 * change:+.1f}{interval_text(paired_delta_interval(base[num], new[num], base[den]), signed=True)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boosts", type=float, nargs="+", default=[0, 1, 2, 4, 8])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--demo", type=Path, default=ROOT / "outputs" / "demo", help="the demo's outputs folder")
    parser.add_argument("--no-rewrite", dest="rewrite", action="store_false",
                        help="decode without the spoken-form rewrite (biasing alone)")
    args = parser.parse_args(argv)

    from lora_training.data.vocabulary import load_vocabulary

    vocabulary = load_vocabulary(args.demo / "data" / "vocabulary.txt").written_forms()
    with tempfile.TemporaryDirectory() as tmp:
        results = {b: transcribe(args.demo, b, args.threads, Path(tmp) / f"boost_{b:g}.json", args.rewrite)
                   for b in args.boosts}
    print("| system | boost | WER % | Δ WER | seen recall % | unseen recall % | Δ unseen | false alarms | "
          "safety WER % | Δ safety | safety FA |")
    print("| --- | ---: | --- | --- | --- | --- | --- | ---: | --- | --- | ---: |")
    for system in SYSTEMS:
        rows = {b: rows_of(r, system, vocabulary) for b, r in results.items()}
        base = rows[args.boosts[0]]
        for b, r in rows.items():
            print(f"| {system} | {b:g} | {rate(r, 'errors', 'words')} | {delta(base, r, 'errors', 'words')} | "
                  f"{recall(r, 'seen')} | {recall(r, 'unseen')} | {delta(base, r, 'unseen_hits', 'unseen_terms')} | "
                  f"{r['false_alarms']} | {rate(r, 'safety_errors', 'safety_words')} | "
                  f"{delta(base, r, 'safety_errors', 'safety_words')} | {r['safety_fa']} |")
    first = results[args.boosts[0]]
    print(f"\n{first['inputs']['n_clips']} clips ({first['inputs']['audio_seconds']:.0f} s), "
          f"{first['safety']['n_utterances']} safety clips; {len(vocabulary)} vocabulary terms; "
          f"Δ: change from boost {args.boosts[0]:g}, same system, 95% paired interval, in points")
    speed(args.demo, vocabulary, args.threads)
    return 0


def speed(demo: Path, vocabulary: list[str], threads: int, repeats: int = 3) -> None:
    """Decoding seconds of the eval clips without and with the hook at the default boost, interleaved,
    best of `repeats` (other processes only ever slow a run down); the base model alone."""
    import time

    from lora_training.defaults import BIAS_BOOST
    from lora_training.evaluation.biasing import keyterm_bias
    from lora_training.evaluation.inputs import load_clip_audio, manifest_clips
    from lora_training.evaluation.transcribe import transcribe_clips
    from lora_training.models.registry import resolve_model
    from lora_training.models.runtime import set_threads

    set_threads(threads)
    model, processor = resolve_model("embedded:moonshine-base", device="cpu")
    audio, _ = load_clip_audio(manifest_clips(str(demo / "data" / "my_voice_eval.jsonl")), "eval")
    audios = list(audio.values())
    best: dict[str, tuple[float, int]] = {}
    for _ in range(repeats):
        for name, bias in (("off", None), ("on", keyterm_bias(processor.tokenizer, vocabulary, BIAS_BOOST))):
            start = time.perf_counter()
            results = transcribe_clips(model, processor, audios, bias=bias)
            seconds = time.perf_counter() - start
            tokens = sum(len(ids) for r in results for ids in r.tokens)
            best[name] = min(best.get(name, (seconds, tokens)), (seconds, tokens))
    print(f"decoding speed, base model, {threads} threads, best of {repeats}: " + ", ".join(
        f"{name} {seconds:.2f} s ({1000 * seconds / tokens:.1f} ms/token)" for name, (seconds, tokens) in best.items())
        + f" (on: boost {BIAS_BOOST:g})")


if __name__ == "__main__":
    sys.exit(main())
