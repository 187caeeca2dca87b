"""Metrics that measure what personalisation is for: jargon, symbols and not breaking English.

Every function takes raw reference and hypothesis strings and returns plain floats, ints,
lists and dicts, so `score` output goes straight to JSON, the console and the report.
Rates whose denominator is zero (no terms, no symbol tokens) are None, never a fake 0 or 1.
"""

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import jiwer

from lora_training.data.normalize import get_normalizer, normalize_text
from lora_training.evaluation.intervals import rate_interval

# Characters that make a normalised token a "symbol token" for symbol accuracy.
# Apostrophes are not symbols ("don't"); everything else that survives normalisation inside a
# token, or stands alone as a dictated symbol, is.
SYMBOL_CHARS = frozenset("@#/_.+-()[]{}!?:;,=<>*&%$~\\|^")

# A hypothesis loops when an n-gram of 1..MAX_LOOP_NGRAM words repeats LOOP_REPEATS times in a
# row. Real speech repeats a word three times ("no no no"), rarely four.
MAX_LOOP_NGRAM = 4
LOOP_REPEATS = 4
# A chunk of 1-4 characters repeated 10+ times inside one token ("hahahahahahahahahaha") is a
# loop of one subword token; 10 keeps "1000000000" (nine zeros) unflagged.
_CHAR_LOOP = re.compile(r"(\S{1,4}?)\1{9,}")


def _check_same_length(where: str, refs: Sequence, hyps: Sequence[str]) -> None:
    if len(refs) != len(hyps):
        raise ValueError(
            f"{where}: lengths differ, expected one per hypothesis, got {len(refs)} for {len(hyps)}"
        )


def _check_pairs(where: str, refs: Sequence[str], hyps: Sequence[str]) -> None:
    """An empty corpus raises rather than scoring 0.0, which would read as a perfect model."""
    _check_same_length(where, refs, hyps)
    if not refs:
        raise ValueError(f"{where}: no utterances, expected at least one")


def _rate(value: int, total: int) -> float | None:
    return value / total if total else None


def _corpus_error_rate(
    refs: Sequence[str],
    hyps: Sequence[str],
    normalizer: Callable[[str], str],
    process: Callable[[list[str], list[str]], jiwer.WordOutput | jiwer.CharacterOutput],
    units: Callable[[str], int],
) -> float:
    """(S + D + I) / reference units over the whole corpus, from one jiwer alignment.

    Pairs whose normalised reference is empty (silence, or punctuation only) are not aligned;
    every unit of their hypothesis counts as an insertion, so hallucinating on silence is
    penalised without dividing by zero. If every reference is empty the denominator is 1,
    i.e. the result is the number of inserted units (jiwer's own convention).
    """
    _check_pairs("corpus error rate", refs, hyps)
    pairs = [(normalizer(r), normalizer(h)) for r, h in zip(refs, hyps)]
    aligned = [(r, h) for r, h in pairs if r]
    errors = sum(units(h) for r, h in pairs if not r)
    reference_units = 0
    if aligned:
        out = process([r for r, _ in aligned], [h for _, h in aligned])
        errors += out.substitutions + out.deletions + out.insertions
        reference_units = out.hits + out.substitutions + out.deletions
    return errors / max(reference_units, 1)


def corpus_wer(
    refs: Sequence[str], hyps: Sequence[str], normalizer: Callable[[str], str] = normalize_text
) -> float:
    """Corpus word error rate: total word edits over total reference words (not a mean of utterances)."""
    return _corpus_error_rate(refs, hyps, normalizer, jiwer.process_words, lambda h: len(h.split()))


def corpus_cer(
    refs: Sequence[str], hyps: Sequence[str], normalizer: Callable[[str], str] = normalize_text
) -> float:
    """Corpus character error rate on normalised text (spaces count as characters, as in jiwer)."""
    return _corpus_error_rate(refs, hyps, normalizer, jiwer.process_characters, len)


def edit_counts(ref: str, hyp: str, normalizer: Callable[[str], str] = normalize_text) -> dict[str, int]:
    """One utterance's word and character edits and reference units, under the corpus rules
    (an empty reference makes every hypothesis unit an insertion), so corpus rates are their sums."""
    r, h = normalizer(ref), normalizer(hyp)
    if not r:
        return {"errors": len(h.split()), "words": 0, "char_errors": len(h), "chars": 0}
    words, chars = jiwer.process_words(r, h), jiwer.process_characters(r, h)
    return {"errors": words.substitutions + words.deletions + words.insertions,
            "words": words.hits + words.substitutions + words.deletions,
            "char_errors": chars.substitutions + chars.deletions + chars.insertions,
            "chars": chars.hits + chars.substitutions + chars.deletions}


def utterance_wer(ref: str, hyp: str, normalizer: Callable[[str], str] = normalize_text) -> float:
    """WER of one utterance, with the same empty-reference rule as `corpus_wer`."""
    return corpus_wer([ref], [hyp], normalizer)


def _term_pattern(term: str) -> str:
    """A term's regex with boundaries only on word-character edges ("kubectl" vs "kubectls"; "@" anywhere)."""
    left = r"(?<!\w)" if re.match(r"\w", term[0]) else ""
    right = r"(?!\w)" if re.match(r"\w", term[-1]) else ""
    return left + re.escape(term) + right


def find_terms(text: str, terms: Iterable[str]) -> list[str]:
    """Every occurrence of a vocabulary written form in `text`, in order, duplicates kept.

    Case-sensitive. Where terms overlap, the leftmost wins, and at the same position the
    longest ("Next.js" over "Next", "kubectl apply" over "kubectl"), so a contained shorter
    term is not reported twice.
    """
    pattern = terms_regex(terms)
    return [m.group(0) for m in pattern.finditer(text)] if pattern else []


def terms_regex(terms: Iterable[str]) -> re.Pattern[str] | None:
    """One regex matching any of `terms` by `find_terms`' rules (longest first); None for no terms."""
    ordered = sorted({t for t in terms if t}, key=len, reverse=True)
    return re.compile("|".join(_term_pattern(t) for t in ordered)) if ordered else None


def count_term(text: str, term: str) -> int:
    """Non-overlapping occurrences of one term in `text`, with `find_terms`' boundary rules."""
    return len(re.findall(_term_pattern(term), text))


def _match_terms(ref_terms: Sequence[str], hyp: str) -> tuple[list[str], list[str]]:
    """Split one utterance's reference terms into hits and misses; a term needed twice must appear twice."""
    hits: list[str] = []
    missed: list[str] = []
    for term, needed in Counter(ref_terms).items():
        found = min(needed, count_term(hyp, term))
        hits += [term] * found
        missed += [term] * (needed - found)
    return hits, missed


def _totals(hits: int, total: int) -> dict:
    return {"hits": hits, "total": total, "recall": _rate(hits, total)}


def term_recall(
    refs_terms: Sequence[Sequence[str]],
    hyps: Sequence[str],
    seen_terms: Iterable[str] | None = None,
    vocabulary: Iterable[str] | None = None,
) -> dict:
    """Jargon recall: how many reference terms the hypotheses spell exactly (case-sensitive).

    `refs_terms` holds each utterance's terms (a term listed twice needs two occurrences).
    `seen_terms` is the adapter's training vocabulary: with it, totals are also split into
    `seen` (memorised?) and `unseen` (generalised?); without it those are None. With
    `vocabulary`, `false_alarms` counts vocabulary terms a hypothesis has beyond its reference's
    count, i.e. an adapter that sprays jargon everywhere; without it, None.
    """
    _check_same_length("term_recall", refs_terms, hyps)
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    alarms: Counter[str] = Counter()
    vocab = list(vocabulary) if vocabulary is not None else None
    for ref_terms, hyp in zip(refs_terms, hyps):
        totals.update(ref_terms)
        hits.update(_match_terms(ref_terms, hyp)[0])
        if vocab is not None:
            alarms.update(Counter(find_terms(hyp, vocab)) - Counter(ref_terms))

    seen = set(seen_terms) if seen_terms is not None else None

    def subtotal(keep: Callable[[str], bool]) -> dict:
        return _totals(sum(hits[t] for t in totals if keep(t)), sum(n for t, n in totals.items() if keep(t)))

    return {
        "overall": subtotal(lambda t: True),
        "seen": subtotal(lambda t: t in seen) if seen is not None else None,
        "unseen": subtotal(lambda t: t not in seen) if seen is not None else None,
        "per_term": {
            t: {**_totals(hits[t], totals[t]), "seen": (t in seen) if seen is not None else None}
            for t in sorted(totals)
        },
        "false_alarms": (
            {"total": sum(alarms.values()), "per_term": dict(sorted(alarms.items()))}
            if vocab is not None
            else None
        ),
    }


def _is_symbol_token(token: str) -> bool:
    return any(c in SYMBOL_CHARS for c in token)


def symbol_accuracy(refs: Sequence[str], hyps: Sequence[str]) -> dict:
    """Share of symbol-bearing reference tokens the hypothesis reproduces exactly.

    Tokens come from `normalize_text`, which has already stripped sentence punctuation, so
    any symbol left in a token is part of it: "dev@example.com", "__init__.py", "v1.2", "c++",
    "--force", "print()", "!=", "localhost:8080", a lone "@" or "?" (and also hyphenated words
    such as "well-known").
    Count-aware per utterance; order is ignored because WER already measures it.
    """
    _check_same_length("symbol_accuracy", refs, hyps)
    hits = total = 0
    for ref, hyp in zip(refs, hyps):
        wanted = Counter(t for t in normalize_text(ref).split() if _is_symbol_token(t))
        got = Counter(normalize_text(hyp).split())
        total += sum(wanted.values())
        hits += sum(min(n, got[t]) for t, n in wanted.items())
    return {"hits": hits, "total": total, "accuracy": _rate(hits, total)}


def repetition_flag(hyp: str) -> bool:
    """True when a hypothesis loops, as Moonshine does when decoding runs past its positions.

    Flags an n-gram of 1-4 words repeated 4+ times in a row ("go to the go to the ..."), or a
    1-4 character chunk repeated 10+ times inside a token (a looping subword, "lalalala...").
    Sentence punctuation and case are ignored ("And then, and then, ...").
    """
    if _CHAR_LOOP.search(hyp):
        return True
    words = normalize_text(hyp).split()
    for n in range(1, MAX_LOOP_NGRAM + 1):
        for start in range(len(words) - n * LOOP_REPEATS + 1):
            gram = words[start : start + n]
            if all(words[start + k * n : start + (k + 1) * n] == gram for k in range(1, LOOP_REPEATS)):
                return True
    return False


def score(
    refs: Sequence[str],
    hyps: Sequence[str],
    *,
    terms: Sequence[Sequence[str]] | None = None,
    seen_terms: Iterable[str] | None = None,
    vocabulary: Iterable[str] | None = None,
    normalizer: str = "jargon",
) -> dict:
    """The one summary of an evaluation, used by the trainer, `evaluate` and the report.

    `terms` gives each utterance's reference terms (the manifest's `terms`); when it is None
    and `vocabulary` is given, they are found in each reference with `find_terms`. `normalizer`
    names the WER/CER strategy ("safety" for the general-domain set); symbol accuracy always
    uses the jargon normalisation, since symbols are what it measures.
    """
    _check_pairs("score", refs, hyps)
    normalize = get_normalizer(normalizer)
    vocab = list(vocabulary) if vocabulary is not None else None
    if terms is None:
        terms = [find_terms(ref, vocab) for ref in refs] if vocab is not None else [[] for _ in refs]
    else:
        _check_same_length("score: terms", terms, hyps)

    rows = []
    for ref, hyp, ref_terms in zip(refs, hyps, terms):
        hit, missed = _match_terms(ref_terms, hyp)
        counts = edit_counts(ref, hyp, normalize)
        rows.append(
            {
                "wer": counts["errors"] / max(counts["words"], 1),
                **counts,
                "terms_hit": hit,
                "terms_missed": missed,
                "looping": repetition_flag(hyp),
            }
        )
    recall = term_recall(terms, hyps, seen_terms=seen_terms, vocabulary=vocab)
    recall["overall"]["interval"] = rate_interval([len(r["terms_hit"]) for r in rows],
                                                  [len(r["terms_hit"]) + len(r["terms_missed"]) for r in rows])
    return {
        "n_utterances": len(refs),
        "n_words": sum(r["words"] for r in rows),
        "normalizer": normalizer,
        "wer": corpus_wer(refs, hyps, normalize),
        "wer_interval": rate_interval([r["errors"] for r in rows], [r["words"] for r in rows]),
        "cer": corpus_cer(refs, hyps, normalize),
        "cer_interval": rate_interval([r["char_errors"] for r in rows], [r["chars"] for r in rows]),
        # Case and punctuation as written, for users whose output must match character for character.
        "exact_wer": corpus_wer(refs, hyps, get_normalizer("exact")),
        "term_recall": recall,
        "symbol_accuracy": symbol_accuracy(refs, hyps),
        "n_looping": sum(row["looping"] for row in rows),
        "per_utterance": rows,
    }
