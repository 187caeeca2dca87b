"""Scores and training data by source: the user's recordings (`real`), their fixes of dictated clips
(`correction`), synthetic speech, replay. An overall WER over a mixed eval set can hide that the
adapter helps on TTS voices and not on the user's own speech, which is what it is for."""

from __future__ import annotations

from collections import Counter
from typing import Any

from lora_training.errors import LoraTrainingError
from lora_training.runs.results import SYSTEMS


def _source(row: dict[str, Any]) -> str:
    # Rows without a source are the user's recordings, as `mix` and the dev carve count them.
    return row.get("source") or "real"


def wer_by_source(result: dict[str, Any] | None) -> list[dict[str, Any]]:
    """WER of each source of the eval set's scored clips, per system, with counts and 95% intervals
    (and the paired change when both systems ran); [] when the set has a single source."""
    from lora_training.evaluation.intervals import paired_delta_interval, rate_interval

    rows = [r for r in (result or {}).get("utterances") or [] if r.get("ref") is not None]
    systems = [s for s in SYSTEMS if rows and (rows[0].get(s) or {}).get("words") is not None]
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(_source(row), []).append(row)
    if not systems or len(groups) < 2:
        return []
    out = []
    for source, members in sorted(groups.items()):
        words = [r[systems[0]]["words"] for r in members]
        entry: dict[str, Any] = {"source": source, "n_utterances": len(members), "n_words": sum(words)}
        for s in systems:
            errors = [r[s]["errors"] for r in members]
            entry[s] = {"wer": sum(errors) / max(sum(words), 1), "wer_interval": rate_interval(errors, words)}
        if len(systems) == 2:
            entry["delta"] = entry["adapter"]["wer"] - entry["baseline"]["wer"]
            entry["delta_interval"] = paired_delta_interval([r["baseline"]["errors"] for r in members],
                                                            [r["adapter"]["errors"] for r in members], words)
        out.append(entry)
    return out


def training_by_source(config: dict[str, Any], replay_path: str | None) -> dict[str, int]:
    """Distinct rows the run trained on, by source: the train manifest's (before any dev carve), the
    corrections manifest's and the replay manifest's (`replay`). A manifest that does not load is
    left out: the report's data table names it."""
    from lora_training.data.manifest import load_manifest

    # A corrections row without a source is a correction, as the trainer counts it (data_order.with_corrections).
    sets = ((config.get("train_manifest"), lambda u: u.source or "real"),
            (config.get("corrections_manifest"), lambda u: u.source or "correction"),
            (replay_path, lambda u: "replay"))
    counts: Counter[str] = Counter()
    for path, source in sets:
        if not path:
            continue
        try:
            counts.update(source(u) for u in load_manifest(path, check_audio=False))
        except LoraTrainingError:
            continue
    return dict(counts)
