"""What a synthesis run made, kept, dropped and removed: the summary `synth` prints or returns as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class SynthSummary:
    output: str
    audio_dir: str
    backend: str
    sentences: int
    clips: int  # rows in the manifest: resumed + kept
    resumed: int  # valid clips of an earlier run, kept as they were
    removed: int  # clips of an earlier run this run dropped (--overwrite), rows and files
    synthesized: int  # TTS calls this run, regenerations included
    kept: int
    regenerated: int
    dropped: int
    hours: float
    seconds: float
    clips_per_second: float  # kept this run / wall time, model loading included
    gate: dict | None
    gate_cer: dict | None  # mean / max over clips kept this run
    terms: dict  # coverage: count, min_uses, below_min
    dropped_examples: list[dict]
    exclude: list[str]  # held-out manifests whose sentences (normalised text) are never spoken
    excluded_sentences: int  # refused for --exclude or a held-out term: generated ones replaced, listed ones dropped
    holdout_terms: list[str]  # in no sentence: --holdout-terms, --exclude-terms and the terms containing them

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        lines = [
            f"{self.output}: {self.clips} clips ({self.hours * 60:.1f} min of audio) for {self.sentences} sentences, "
            f"backend {self.backend}",
            f"  this run: {self.kept} clips kept in {self.seconds:.1f} s ({self.clips_per_second:.2f} clips/s), "
            f"{self.synthesized} synthesized, {self.resumed} resumed from an earlier run",
        ]
        if self.removed:
            lines.append(f"  removed (--overwrite): {self.removed} clips of an earlier run, from the manifest "
                         f"and {self.audio_dir}")
        if self.gate is None:
            lines.append(f"  quality gate: off, {self.kept} kept unheard")
        else:
            cer = f", kept CER mean {self.gate_cer['mean']:.2f} max {self.gate_cer['max']:.2f}" if self.gate_cer else ""
            lines.append(
                f"  quality gate (max CER {self.gate['max_cer']:g}, {self.gate['retries']} retries): "
                f"{self.kept} kept, {self.regenerated} regenerated, {self.dropped} dropped{cer}"
            )
        for example in self.dropped_examples:
            lines.append(f"    dropped {example['id']}: said {example['spoken']!r}, "
                         f"heard {example['transcript']!r}")
        terms = self.terms
        if terms["count"]:
            below = f", below {terms['min_per_term']}: {', '.join(terms['below_min'])}" if terms["below_min"] else ""
            lines.append(f"  terms: {terms['count']} covered at least {terms['min_uses']} times{below}")
        if self.exclude or self.excluded_sentences:
            held_out = f" ({', '.join(self.exclude)})" if self.exclude else ""
            lines.append(f"  excluded: {self.excluded_sentences} sentence(s) of held-out manifests{held_out} or "
                         "with held-out terms (generated ones replaced, listed ones dropped)")
        if self.holdout_terms:
            lines.append(f"  held-out terms (in no sentence): {', '.join(self.holdout_terms)}")
        lines.append(f"  audio: {self.audio_dir}")
        return "\n".join(lines)
