"""Which sentences a synthesis run speaks, and what it must never say.

Two things are kept out of synthetic speech, so that the numbers evaluation reports mean what
they say:

- the sentences of held-out manifests (`--exclude`: eval, dev, safety), compared by normalised
  text (`data/normalize.py`, the metrics' normaliser): a generated sentence that is one of them is
  replaced by the next template, a line of `--sentences` that is one of them is dropped (and
  counted: synthesis never shrinks silently);
- held-out terms (`--holdout-terms N`, a seeded choice, and `--exclude-terms FILE`), so that
  recall on them measures generalisation to terms the adapter never heard. A term whose written
  form contains a held-out one (`dev@example.com` holds `@`) is held out with it, since speaking
  it would teach the other; a sentence whose text still holds a held-out term (in a template's
  own words, or a `--sentences` line) is replaced or dropped like an excluded one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lora_training.data.manifest import load_manifest
from lora_training.data.normalize import normalize_text
from lora_training.data.vocabulary import Vocabulary, load_vocabulary, terms_in
from lora_training.errors import ConfigError
from lora_training.synth.sentences import GeneratedSentence, generate_sentences, sentences_from_file

if TYPE_CHECKING:
    from lora_training.synth.synthesize import SynthConfig

# Unknown lines of an --exclude-terms file named in its error; a count says how many more.
SHOWN = 3


@dataclass
class SentencePlan:
    sentences: list[GeneratedSentence]
    holdout_terms: list[str]  # every held-out written form, in vocabulary order
    excluded: int  # sentences refused: generated ones were replaced, --sentences lines dropped


def choose_holdout(vocabulary: Vocabulary, n: int, seed: int) -> list[str]:
    """`n` written forms chosen with `seed`: the same vocabulary and seed hold out the same terms,
    so a demo or a pipeline can name them before synthesis runs."""
    written = vocabulary.written_forms()
    if not 0 <= n < len(written):
        raise ConfigError(f"holdout_terms: expected 0 to {len(written) - 1} (fewer than the {len(written)} terms of "
                          f"{vocabulary.path}), got {n}")
    return random.Random(f"holdout/{seed}").sample(written, n)


def read_term_list(path: str | Path, vocabulary: Vocabulary) -> list[str]:
    """An --exclude-terms file: one written form per line, each one of the vocabulary's (blank lines skipped)."""
    path = Path(path)
    try:
        # "\n" only, as everywhere: a U+2028 inside a term is not the end of its line.
        lines = path.read_text(encoding="utf-8-sig").split("\n")
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: exclude-terms file not found, expected one written form per line, "
                          "got no file") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: unreadable exclude-terms file, expected UTF-8 text, got {e.reason} "
                          f"at byte {e.start}") from e
    terms, unknown = [], []
    for number, line in enumerate(lines, start=1):
        term = line.strip()
        if term and vocabulary.lookup(term) is None:
            unknown.append(f"{path}:{number} {term!r}")
        elif term:
            terms.append(term)
    if unknown:
        more = f" (and {len(unknown) - SHOWN} more)" if len(unknown) > SHOWN else ""
        raise ConfigError(f"{unknown[0].split(' ', 1)[0]}: {len(unknown)} line(s) name no term, expected written forms "
                          f"of {vocabulary.path} (case-sensitive), got {', '.join(unknown[:SHOWN])}{more}")
    return terms


def plan_sentences(cfg: SynthConfig) -> SentencePlan:
    """The sentences `cfg` asks for, none of them excluded and none holding a held-out term."""
    vocabulary = load_vocabulary(cfg.vocabulary) if cfg.vocabulary is not None else None
    held = _held_out(vocabulary, cfg) if vocabulary is not None else []
    excluded = {key for path in cfg.exclude for u in load_manifest(path, check_audio=False)
                if (key := normalize_text(u.text))}
    refused = 0

    def reject(text: str) -> bool:
        nonlocal refused
        if normalize_text(text) in excluded or terms_in(text, tuple(held)):
            refused += 1
            return True
        return False

    if cfg.sentences is None:
        kept = Vocabulary([t for t in vocabulary.terms if t.written not in held], path=vocabulary.path)
        sentences = generate_sentences(kept, cfg.count, seed=cfg.seed, min_per_term=cfg.min_per_term, reject=reject)
    else:
        listed = (sentences_from_file(cfg.sentences, vocabulary, seed=cfg.seed) if vocabulary is not None
                  else plain_sentences(cfg.sentences))
        sentences = [s for s in listed if not reject(s.text)]
        if not sentences:
            raise ConfigError(f"{cfg.sentences}: every sentence is excluded, expected at least one outside "
                              f"{', '.join(cfg.exclude) or 'the --exclude manifests'} and free of held-out terms, "
                              f"got {len(listed)} refused")
    return SentencePlan(sentences=sentences, holdout_terms=held, excluded=refused)


def plain_sentences(path: str) -> list[GeneratedSentence]:
    """`--sentences` without a vocabulary: each line is spoken as written and has no terms."""
    file = Path(path)
    try:
        # "\n" only: a U+2028 inside a sentence is not the end of its line.
        lines = [line.rstrip("\r") for line in file.read_text(encoding="utf-8-sig").split("\n")]
    except FileNotFoundError as e:
        raise ConfigError(f"{file}: sentences file not found, expected one sentence per line, got no file") from e
    sentences = [
        GeneratedSentence(text=line.strip(), spoken=line.strip(), terms=[], template=f"{file.name}:{number}")
        for number, line in enumerate(lines, start=1)
        if line.strip()
    ]
    if not sentences:
        raise ConfigError(f"{file}: no sentences, expected one sentence per line, got only blank lines")
    return sentences


def _held_out(vocabulary: Vocabulary, cfg: SynthConfig) -> list[str]:
    """Every term whose written form contains a chosen or listed one (itself included), in vocabulary order."""
    chosen = choose_holdout(vocabulary, cfg.holdout_terms, cfg.seed)
    if cfg.exclude_terms is not None:
        chosen += read_term_list(cfg.exclude_terms, vocabulary)
    if not chosen:
        return []
    held = [w for w in vocabulary.written_forms() if terms_in(w, tuple(chosen))]
    if len(held) == len(vocabulary.terms):
        raise ConfigError(f"holdout_terms: holding out {', '.join(sorted(set(chosen)))} leaves no term of "
                          f"{vocabulary.path} to speak, expected at least one term left, got none")
    return held
