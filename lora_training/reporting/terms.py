"""Term recall by where the adapter heard each term: only in real recordings, only in synthetic
speech (or corrections), in several, or never. It answers the question synthetic data is for:
does a term the user never recorded, heard only in synthetic voices, come out right?"""

from __future__ import annotations

from typing import Any

from lora_training.formatting import percent


def _group(term: str, by_source: dict[str, list[str]]) -> str:
    sources = sorted(source for source, terms in by_source.items() if term in terms)
    if not sources:
        return "unseen in training"
    return f"only {sources[0]}" if len(sources) == 1 else " + ".join(sources)


def recall_by_source(results: dict[str, Any] | None) -> list[list[str]]:
    """Rows (group, terms, baseline hits, adapter hits) from eval_results.json; [] when it cannot say."""
    by_source = (results or {}).get("seen_terms_by_source")
    summary = (results or {}).get("summary") or {}
    adapter = ((summary.get("adapter") or {}).get("term_recall") or {}).get("per_term")
    if not by_source or not adapter:
        return []
    baseline = ((summary.get("baseline") or {}).get("term_recall") or {}).get("per_term") or {}
    groups: dict[str, list[int]] = {}
    for term, counts in adapter.items():
        row = groups.setdefault(_group(term, by_source), [0, 0, 0, 0])
        row[0] += 1
        row[1] += counts["total"]
        row[2] += (baseline.get(term) or {}).get("hits", 0)
        row[3] += counts["hits"]
    return [[group, str(n), f"{percent(b / total if total else None)} ({b}/{total})",
             f"{percent(a / total if total else None)} ({a}/{total})"]
            for group, (n, total, b, a) in sorted(groups.items())]
