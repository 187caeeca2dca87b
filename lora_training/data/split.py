"""Train/eval split that never puts the same sentence on both sides.

Users often record a sentence twice; if one take trained and the other evaluated, the eval
WER would measure memorisation of that sentence rather than generalisation to new ones.

The summary names the eval terms no training row contains: the terms whose recall measures
generalisation rather than memory. A row's terms are its `terms` field plus, with `--vocabulary`,
every written form found in its text by the evaluation's rule, so a row that never listed
`kubectl` still counts as training on it.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

from lora_training.atomic import check_outputs
from lora_training.data.manifest import Utterance, load_manifest, save_outputs, total_seconds
from lora_training.data.normalize import normalize_text
from lora_training.data.vocabulary import load_vocabulary, terms_in
from lora_training.errors import ConfigError
from lora_training.options import option

MIN_UTTERANCES = 5


def sentence_key(text: str) -> str:
    """The metrics' normalisation (`normalize_text`): "Hello,  world!" == "hello world", "two cats" ==
    "2 cats", while "dev@example.com" and "devexample com" stay apart. Two takes the WER would score
    as one sentence are one group, and the overlap check run-experiment makes agrees with the split.
    """
    return normalize_text(text)


@dataclass
class SideSummary:
    path: str
    utterances: int
    hours: float
    terms: int


@dataclass
class SplitSummary:
    input: str
    seed: int
    eval_fraction: float
    train: SideSummary
    eval: SideSummary
    # Jargon that appears only in eval: the split's measure of generalisation to new terms.
    unseen_eval_terms: int
    unseen_terms: list[str]  # those terms, sorted
    replaced: list[str] = field(default_factory=list)  # outputs that had other rows (--overwrite)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        rows = [("side", "utterances", "hours", "terms", "manifest")]
        for name, side in (("train", self.train), ("eval", self.eval)):
            rows.append((name, str(side.utterances), f"{side.hours:.3f}", str(side.terms), side.path))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [f"split of {self.input} (seed {self.seed}, eval fraction {self.eval_fraction:g})"]
        for r in rows:
            lines.append(
                f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}  {r[4]}"
            )
        unseen = f" ({', '.join(self.unseen_terms)})" if self.unseen_terms else ""
        lines.append(f"eval terms unseen in training: {self.unseen_eval_terms}{unseen}")
        lines += [f"replaced (--overwrite): {path}" for path in self.replaced]
        return "\n".join(lines)


def _hours(utterances: list[Utterance]) -> float:
    return total_seconds(utterances) / 3600


def _terms(utterances: list[Utterance], written_forms: tuple[str, ...]) -> set[str]:
    """Every row's `terms` field, plus the vocabulary's written forms found in its text."""
    return {t for u in utterances for t in (*(u.terms or ()), *terms_in(u.text, written_forms))}


@dataclass
class SplitOptions:
    input: str = option("data/my_voice_all.jsonl", "manifest to split")
    train_out: str = option("data/my_voice_train.jsonl", "train manifest to write")
    eval_out: str = option("data/my_voice_eval.jsonl", "eval manifest to write")
    eval_fraction: float = option(0.2, "share of utterances for eval")
    seed: int = option(42, "random seed (same seed, same split)")
    overwrite: bool = option(False, "replace existing outputs that would get other rows")
    vocabulary: str | None = option(None, "vocabulary file: its written forms found in a row's text count as that "
                                          "row's terms, beside its `terms` field, for the unseen-terms summary")


def split_dataset(options: SplitOptions) -> SplitSummary:
    """Split `input` into two manifests by sentence group; deterministic for a given seed.

    Both outputs are checked (not the input, not each other, writable) before the input is read,
    and written as one change: a failure leaves neither side half-updated.
    """
    input, train_out, eval_out = options.input, options.train_out, options.eval_out
    eval_fraction, seed = options.eval_fraction, options.seed
    if not (isinstance(eval_fraction, (int, float)) and 0 < eval_fraction < 1):
        raise ConfigError(
            f"eval_fraction: out of range, expected a number strictly between 0 and 1, got {eval_fraction!r}"
        )
    inputs = {"input": input, **({"vocabulary": options.vocabulary} if options.vocabulary else {})}
    check_outputs({"train_out": train_out, "eval_out": eval_out}, inputs)
    written = tuple(load_vocabulary(options.vocabulary).written_forms()) if options.vocabulary else ()
    utterances = load_manifest(input)
    n = len(utterances)
    if n < MIN_UTTERANCES:
        raise ConfigError(
            f"{input}: too few utterances to split, expected at least {MIN_UTTERANCES}, got {n} "
            "(record more, or evaluate on a separate manifest)"
        )

    groups: dict[str, list[int]] = {}
    for i, utt in enumerate(utterances):
        groups.setdefault(sentence_key(utt.text), []).append(i)
    order = list(groups.values())
    random.Random(seed).shuffle(order)

    # Whole groups go to eval while they fit under the target, so 100 distinct sentences give
    # exactly 80/20 and a repeated sentence never straddles the sides.
    target = round(n * eval_fraction)
    eval_idx: set[int] = set()
    for group in order:
        if len(eval_idx) + len(group) <= target:
            eval_idx.update(group)
        if len(eval_idx) == target:
            break
    train = [u for i, u in enumerate(utterances) if i not in eval_idx]
    evals = [u for i, u in enumerate(utterances) if i in eval_idx]
    if not train or not evals:
        empty = "train" if not train else "eval"
        raise ConfigError(
            f"{input}: the {empty} side would be empty, expected utterances on both sides, got "
            f"{n} utterances in {len(groups)} distinct sentences with eval_fraction={eval_fraction:g} "
            "(adjust --eval-fraction or record more distinct sentences)"
        )

    # Summarise before writing: reading clip headers can still fail, and then nothing is written.
    train_terms, eval_terms = _terms(train, written), _terms(evals, written)
    summary = SplitSummary(
        input=str(input),
        seed=seed,
        eval_fraction=eval_fraction,
        train=SideSummary(str(train_out), len(train), _hours(train), len(train_terms)),
        eval=SideSummary(str(eval_out), len(evals), _hours(evals), len(eval_terms)),
        unseen_eval_terms=len(eval_terms - train_terms),
        unseen_terms=sorted(eval_terms - train_terms),
    )
    summary.replaced = save_outputs({train_out: train, eval_out: evals}, overwrite=options.overwrite)
    return summary
