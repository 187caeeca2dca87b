"""Evaluation during training: which set is read when, and what each may decide.

    dev     step 0 and every eval_interval steps: best_adapter/, early stopping, the curves
    safety  beside dev evals: N fixed clips of general English. It shows when ordinary English
            starts to suffer, long before `evaluate` would, and it has a say (`selection.py`): only
            a dev eval whose own safety score is within `--safety-budget` of step 0's can become
            best_adapter/, and `--safety-patience` scores over it in a row stop the run
    test    the eval manifest, exactly twice a run: the untouched model at step 0 and
            best_adapter/ at the end. Nothing is chosen on it, so its score is not optimistic

The safety clips are the built-in set's *measurement* half (or `--safety-manifest`), never its
replay half, which training may mix in: a score on clips the adapter trained on hides the damage
it is there to show. `safety_in_loop` evenly spaced clips are picked once, as `evaluate
--safety-max-utterances` picks them.

Cost of safety in the loop (16 built-in clips, 112 s of audio), measured on the 2-core dev machine:
- tiny test model: ~0.75 s per dev eval (~0.45 s decoding: a random model writes to its token
  budget; ~0.3 s for the bootstrap intervals), so a 40-step run with 5 dev evals takes 5.5 s
  instead of 1.7 s: ~70% of a run whose steps take 0.01-0.07 s. Tests use 4 tiny clips or none;
- moonshine-base (2 threads, machine otherwise idle; 60 steps on 27 real clips of 3-8 s): 5.3-6.2 s
  per dev eval (RTF ~0.05: these prompts average 7 s, longer than the 3-5 s clips behind the 0.03
  of `benchmarks/transcribe_rtf.py`), against 0.45 s per training step (batch 8, decoder adapter,
  encoder cached) and 1.7 s for 9 dev clips. At the default eval_interval of 50 that is ~6 s of
  ~30 s per interval: ~20% of a CPU run's wall time (~35% at eval_interval 20); less on more
  cores or a GPU. Fewer clips would cost less but say less: the 16 built-in clips hold 285 words,
  so one word is 0.35 WER points against `evaluate`'s default budget of 1 point; 8 hold 168 (0.6).
Hence the defaults: 8 clips (~3 s on moonshine-base), scored at every 2nd dev eval
(`--safety-every`) and always at step 0 and the last step: ~3 s per ~50 s of a default CPU run,
about 6%. `--safety-in-loop 0` turns it off; `--safety-every 1` scores it at every dev eval.
All evals together, per 100 default steps: 45 s of training, 2 dev evals of 1.7 s and one safety
score of ~3 s, 6.4 s of 51.4 s (~13%, within the issue's 15%); a safety score at every dev eval
would make it 9.4 of 54.4 s (~17%). So a dev eval without a safety score of its own is not
eligible for best_adapter/ (selection.py says why), rather than scoring every eval. With 8 clips
one word is ~0.6 WER points, so the default `--safety-budget` of 0.5 tolerates no added word error.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_training.data.audio import AudioCache
from lora_training.data.manifest import Utterance
from lora_training.errors import LoraTrainingError

log = logging.getLogger("lora_training.train")
# ref/hyp pairs kept in each eval row: enough to eyeball in train.log and the report.
SAMPLES = 3


@dataclass
class EvalSet:
    name: str  # dev, test or safety
    source: str  # its manifest, or how it was made
    refs: list[str]
    audio: list  # 16 kHz mono float32 clips, decoded once
    terms: list[list[str]] | None  # each row's `terms`; None: found in the refs with the vocabulary
    normalizer: str = "jargon"

    @classmethod
    def of(cls, name: str, source: str, utts: list[Utterance], audio: AudioCache) -> "EvalSet":
        terms = None if all(u.terms is None for u in utts) else [u.terms or [] for u in utts]
        return cls(name, source, [u.text for u in utts], [audio.get(u.audio) for u in utts], terms)


def seen_terms(train: list[Utterance], candidates: Iterable[str]) -> list[str]:
    """The terms the adapter trained on: every `terms` entry of a training row, and every candidate
    (the vocabulary's written forms, the dev and eval rows' `terms`) written in a training
    transcript, matched as `metrics.count_term` matches (case-sensitive, at word edges). So a
    training manifest without `terms` no longer counts the jargon it trained on as unseen."""
    from lora_training.evaluation.metrics import count_term

    found = {t for u in train for t in (u.terms or [])}
    text = "\n".join(u.text for u in train)
    found.update(t for t in set(candidates) - found if t and count_term(text, t))
    return sorted(found)


def terms_by_source(train: list[Utterance], seen: list[str]) -> dict[str, list[str]]:
    """Where each seen term was heard (real recordings, synthetic speech, corrections): the report's breakdown."""
    sources = sorted({u.source or "real" for u in train})
    return {s: seen_terms([u for u in train if (u.source or "real") == s], seen) for s in sources}


def safety_set(manifest: str | None, count: int, every: int = 1) -> EvalSet | None:
    """`count` evenly spaced clips of `manifest`, else of the built-in measurement half; None when
    `count` is 0 or the built-in set is not installed (the run goes on, and says so once)."""
    from lora_training.data.audio import SAMPLE_RATE, load_audio
    from lora_training.evaluation.inputs import BUILTIN, safety_clips

    if count == 0:
        log.info("safety in the loop: off (--safety-in-loop 0)")
        return None
    try:
        path, _, clips = safety_clips(manifest or BUILTIN, count)  # BUILTIN is the measurement half
    except LoraTrainingError as e:
        if manifest:
            raise
        log.info("safety in the loop: off, the built-in safety set is unavailable: %s", e)
        return None
    audio = [load_audio(c.audio, max_seconds=None) for c in clips]
    log.info("safety in the loop: %d clips of %s (%.0f s) at step 0, the last step and %s", len(clips), path,
             sum(len(a) for a in audio) / SAMPLE_RATE, "every dev eval" if every == 1 else f"every {every} dev evals")
    return EvalSet("safety", path, [c.ref for c in clips], audio, None, normalizer="safety")


def eval_decoding(processor, vocabulary: str | None, boost: float, rewrite_spoken: bool) -> dict[str, Any]:
    """Keyterm biasing and the spoken-form rewrite for the in-loop evals (None: off), so dev choices see
    what `evaluate` will."""
    if not vocabulary:
        return {"bias": None, "rewrite": None}
    from lora_training.data.vocabulary import load_vocabulary
    from lora_training.evaluation.biasing import keyterm_bias
    from lora_training.evaluation.rewrite import vocabulary_rewriter

    loaded = load_vocabulary(vocabulary)
    rewrite = vocabulary_rewriter(loaded, rewrite_spoken)
    log.info("keyterm biasing in evals: %d terms of %s, boost %g; spoken forms %s", len(loaded.terms), vocabulary,
             boost, "rewritten" if rewrite else "left as decoded")
    return {"bias": keyterm_bias(processor.tokenizer, loaded.written_forms(), boost), "rewrite": rewrite}


class InLoopEvals:
    """Transcribes and scores the run's sets; the recipe decides what the numbers may change."""

    def __init__(self, dev: EvalSet, test: EvalSet, safety: EvalSet | None, *, seen_terms: list[str],
                 vocabulary: list[str] | None, batch_size: int, bias=None, rewrite=None):
        self.dev_set, self.test_set, self.safety = dev, test, safety
        self.seen_terms, self.vocabulary, self.batch_size = seen_terms, vocabulary, batch_size
        # Keyterm biasing (evaluation/biasing.py) and the spoken-form rewrite on every set, as `evaluate` decodes.
        self.bias, self.rewrite = bias, rewrite

    def score(self, model, processor, s: EvalSet, *, per_clip: bool = False) -> dict[str, Any]:
        """Greedy transcripts of `s`, scored like `evaluate` scores them; with `per_clip`, each clip's
        word errors and words too (the paired safety comparison in selection.py)."""
        from lora_training.evaluation.metrics import score
        from lora_training.evaluation.transcribe import greedy_transcribe

        started = time.perf_counter()
        hyps = greedy_transcribe(model, processor, s.audio, batch_size=self.batch_size, bias=self.bias,
                                 rewrite=self.rewrite)
        jargon = s.normalizer == "jargon"
        summary = score(s.refs, hyps, terms=s.terms, normalizer=s.normalizer,
                        seen_terms=self.seen_terms if jargon else None, vocabulary=self.vocabulary if jargon else None)
        result = {k: v for k, v in summary.items() if k != "per_utterance"}
        if per_clip:
            result["errors"] = [row["errors"] for row in summary["per_utterance"]]
            result["words"] = [row["words"] for row in summary["per_utterance"]]
        result["eval_seconds"] = round(time.perf_counter() - started, 2)
        result["samples"] = [{"ref": r, "hyp": h} for r, h in list(zip(s.refs, hyps))[:SAMPLES]]
        return result

    def dev(self, model, processor, *, with_safety: bool = True) -> dict[str, Any]:
        """The dev row of metrics.jsonl: dev scores, and the safety WER beside them when it is due."""
        result = {"set": self.dev_set.name, **self.score(model, processor, self.dev_set)}
        if self.safety and with_safety:
            s = self.score(model, processor, self.safety, per_clip=True)
            # Per-clip errors, so each later score is compared with step 0's clip by clip (selection.py).
            result.update(safety_wer=s["wer"], safety_wer_interval=s["wer_interval"], safety_n=s["n_utterances"],
                          safety_seconds=s["eval_seconds"], safety_errors=s["errors"], safety_words=s["words"],
                          safety_looping=s["n_looping"])
        return result

    def test(self, model, processor) -> dict[str, Any]:
        return {"set": self.test_set.name, "manifest": self.test_set.source,
                **self.score(model, processor, self.test_set)}


def brief(step: int, result: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The numbers of a dev or test row that state.json keeps for `status` (and checkpoints keep as `best`).

    A dev eval without a safety score (not due, see `--safety-every`) carries the latest one from
    `previous`, with the step it was measured at, so `status` never blinks."""
    keep = ("set", "wer", "wer_interval", "cer", "n_utterances", "safety_wer", "safety_n", "adapter", "adapter_step")
    out = {"step": step, "term_recall": result["term_recall"]["overall"]["recall"],
           **{k: result[k] for k in keep if k in result}}
    if "safety_wer" in out:
        out["safety_step"] = step
    elif previous and previous.get("safety_wer") is not None:
        out.update({k: previous[k] for k in ("safety_wer", "safety_n", "safety_step") if k in previous})
    return out


def describe(step: int, result: dict[str, Any], safety_start: float | None = None) -> str:
    """The train.log lines of a dev or test row (`poll` streams them), its samples beneath; dev rows
    say how far the safety WER has moved since step 0, which is what shows forgetting."""
    term = result["term_recall"]["overall"]["recall"]
    scores = (f"WER {100 * result['wer']:.2f}%  CER {100 * result['cer']:.2f}%  "
              f"term recall {'n/a' if term is None else f'{100 * term:.1f}%'}")
    if result["set"] == "test":
        system = "untouched model" if result["adapter"] == "baseline" else f"best_adapter of step {result['adapter_step']}"
        line = (f"test on the eval manifest ({result['n_utterances']} clips) at step {step}, {system}: {scores}  "
                f"({result['eval_seconds']:.1f}s)")
    else:
        safety = result.get("safety_wer")
        moved = "" if safety is None or safety_start is None else f", {100 * (safety - safety_start):+.2f} pts since step 0"
        line = (f"dev eval step {step} ({result['n_utterances']} clips): {scores}"
                + ("" if safety is None else f"  safety WER {100 * safety:.2f}% on {result['safety_n']} clips{moved}")
                + f"  ({result['eval_seconds'] + result.get('safety_seconds', 0):.1f}s)")
    return "\n".join([line, *(f"  ref: {s['ref']}\n  hyp: {s['hyp']}" for s in result["samples"])])


@contextlib.contextmanager
def adapter_weights(model, folder: Path | None) -> Iterator[None]:
    """The PEFT model with `folder`'s adapter weights in place (None: as it is), restored afterwards."""
    if folder is None:
        yield
        return
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from peft.utils import load_peft_weights

    current = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
    set_peft_model_state_dict(model, load_peft_weights(str(folder), device=str(next(model.parameters()).device)))
    try:
        yield
    finally:
        set_peft_model_state_dict(model, current)
