"""Spoken forms a transcript spells out, written as the vocabulary's terms: "word error rate" → "WER".

A model that has not learned a term well writes what it hears: "regular expression" for `regex`,
"standard error" for `stderr`, "github" for `GitHub`. The vocabulary already says, line by line,
how the user says each term (`WER | W E R | word error rate`), so where a transcript spells out
one of those ways, the user meant the written form. This is text after decoding, so it works
behind any decoder (torch, the on-device runtimes), with or without an adapter or keyterm biasing.

Only what cannot be ordinary English is rewritten:
- a spoken form of two or more words, matched case-insensitively at word edges (hyphens or spaces
  between its words), longest first, unless every word of it is a function word: `TODO | to do`
  and `@ | at` would rewrite ordinary speech ("what to do", "at noon"), so they are left to the
  model, which sees the context;
- one-word spoken forms never ("pseudo", "jason", "docker" are words or names; without a
  frequency list that every platform ships, there is no telling them from "postgres");
- a camel-case written form (a capital after a lower-case letter: GitHub, PostgreSQL, DoRA) spelled
  in another case ("github", "postgreSQL") gets its case back, except in title case: "Dora" and
  "Lora" are names. All-caps forms (IT, US) and lower-case ones are left alone: "it" and "us" are
  words.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# English function words: a spoken form made of these alone is ordinary speech far more often than a term.
FUNCTION_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing done down during each either else ever every few for from further
get gets got had has have having he her here hers him his how i if in into is it its just let me might
more most my no nor not now of off on once only or other our ours out over own same shall she should so
some such than that the their theirs them then there these they this those through to too under until up
upon us very was we were what when where which while who whom why will with would yes yet you your yours
""".split())


@dataclass(frozen=True)
class Rewrite:
    """One rule: text matching `pattern` becomes `written` (`spoken` is what it matches, for the docs)."""

    spoken: str
    written: str
    pattern: re.Pattern[str]


def _edge(text: str, left: bool) -> str:
    char = text[0] if left else text[-1]
    if not re.match(r"\w", char):
        return ""
    return r"(?<!\w)" if left else r"(?!\w)"


def _spoken_pattern(spoken: str) -> re.Pattern[str]:
    words = spoken.split()
    body = r"[\s-]+".join(re.escape(w) for w in words)
    return re.compile(_edge(spoken, True) + body + _edge(spoken, False), re.IGNORECASE)


def is_camel_case(written: str) -> bool:
    return re.search(r"[a-z][A-Z]", written) is not None


def rewrite_rules(terms: Iterable) -> list[Rewrite]:
    """The rules of a vocabulary's terms (`data.vocabulary.Term`s), longest spoken form first, so
    "C I slash C D" is tried before a shorter form inside it."""
    rules: dict[str, Rewrite] = {}
    for term in terms:
        written = term.written
        for spoken in term.spoken:
            words = spoken.split()
            if (len(words) < 2 or spoken.casefold() == written.casefold()
                    or all(w.casefold() in FUNCTION_WORDS for w in words)):
                continue
            rules.setdefault(spoken.casefold(), Rewrite(spoken, written, _spoken_pattern(spoken)))
        if is_camel_case(written) and written.casefold() not in rules:
            rules[written.casefold()] = Rewrite(written, written, _spoken_pattern(written))
    return sorted(rules.values(), key=lambda r: len(r.spoken), reverse=True)


def spoken_rewriter(terms: Iterable) -> Callable[[str], str] | None:
    """A function from a transcript to the transcript with the rules applied; None when no term yields a rule.

    One pass over the text with all rules in one alternation (longest first): a rewritten span is never
    matched again, so "C sharp" becomes "C#" once and no rule rewrites another's output.
    """
    rules = rewrite_rules(terms)
    if not rules:
        return None
    combined = re.compile("|".join(f"(?:{r.pattern.pattern})" for r in rules), re.IGNORECASE)

    def written_for(match: re.Match[str]) -> str:
        span = match.group(0)
        rule = next(r for r in rules if r.pattern.fullmatch(span))
        return span if rule.spoken == rule.written and span.istitle() else rule.written

    def rewrite(text: str) -> str:
        return combined.sub(written_for, text)

    return rewrite


def vocabulary_rewriter(vocabulary, enabled: bool = True) -> Callable[[str], str] | None:
    """The rewriter of a loaded decode-time vocabulary (`--bias-vocabulary`, a `data.vocabulary.Vocabulary`);
    None without one, when turned off, or when no term yields a rule."""
    return spoken_rewriter(vocabulary.terms) if vocabulary is not None and enabled else None
