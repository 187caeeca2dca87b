"""Mix manifests (the user's recordings, synthetic speech) into one training manifest.

A few hundred real clips next to thousands of synthetic ones would teach mostly the TTS voices;
a target ratio (`real=1,synthetic=3`) keeps as many rows as possible at that proportion by
sampling down whichever source is in excess, and `upsample_real` repeats the real rows first
when they should weigh more than their count. Corrections (`corrections`: dictated clips whose
transcript the user fixed) are the user's own speech, so the ratio and `upsample_real` count them
with the real rows. Every row keeps its `source`, so evaluation and the report can still tell
them apart.

Rows without a `source` take it from `SOURCE=PATH`, else `--default-source`; failing both, rows
of a manifest with no synthetic row are the user's recordings (every manifest made outside the
toolkit looks like that) and count as real, which the summary says.

`--exclude` names the held-out manifests (eval, dev, safety): a mix that would train on one of
their sentences or clips (`data/overlap.py`: same normalised text or same samples) is refused
before anything is written, naming the rows; `--allow-overlap` mixes anyway and counts them.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from lora_training.atomic import check_outputs
from lora_training.data.manifest import SOURCES, Utterance, is_real, load_manifest, save_outputs, total_seconds
from lora_training.data.overlap import (Overlap, describe_overlaps, find_overlaps, overlap_problem,
                                        overlapping_rows, read_rows)
from lora_training.errors import ConfigError, ManifestError
from lora_training.options import option

# What a ratio weighs: the user's own speech (real and correction rows together) against synthetic.
RATIO_GROUPS = ("real", "synthetic")


@dataclass(frozen=True)
class MixInput:
    path: str
    source: str | None  # for rows without a `source` field; from the `real=PATH` form


@dataclass
class SourceSummary:
    source: str
    manifests: list[str]
    available: int  # distinct rows in the inputs
    selected: int  # rows in the mix, repeats included
    distinct: int  # distinct rows in the mix
    hours: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MixSummary:
    output: str
    seed: int
    ratio: dict[str, float] | None
    upsample_real: int
    utterances: int
    hours: float
    sources: list[SourceSummary]
    exclude: list[str]  # the held-out manifests the mix was checked against
    overlap: int  # distinct rows of the mix that share text or audio with them (only with --allow-overlap)
    overlap_examples: str  # the first few, as file:line and why
    notes: list[str]  # sources the mix inferred, e.g. "12 rows without `source` in a.jsonl counted as real"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        lines = [f"{self.output}: {self.utterances} utterances, {self.hours:.2f} hours (seed {self.seed})"]
        for s in self.sources:
            share = s.selected / self.utterances if self.utterances else 0.0
            lines.append(
                f"  {s.source:<10} {s.selected:>6} rows ({share:.0%}), {s.hours:.2f} h, "
                f"{s.distinct} of {s.available} distinct rows used"
            )
        if self.exclude:
            held_out = ", ".join(self.exclude)
            lines.append(f"  overlap with {held_out} (--allow-overlap): {self.overlap} rows, e.g. "
                         f"{self.overlap_examples}" if self.overlap else f"  overlap with {held_out}: none")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def parse_input(spec: str) -> MixInput:
    """`PATH`, or `SOURCE=PATH` to name the source of rows that lack one (`real=data/old.jsonl`)."""
    source, sep, path = spec.partition("=")
    if sep and source in SOURCES:
        return MixInput(path=path, source=source)
    return MixInput(path=spec, source=None)


def _group(source: str) -> str:
    return "real" if is_real(source) else source


def parse_ratio(spec: str) -> dict[str, float]:
    """`real=1,synthetic=3` → {"real": 1.0, "synthetic": 3.0}; correction rows count as real."""
    ratio: dict[str, float] = {}
    for part in spec.split(","):
        source, sep, value = part.strip().partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if not sep or source not in RATIO_GROUPS or not math.isfinite(weight) or weight < 0:
            raise ConfigError(
                f"ratio: invalid part {part.strip()!r}, expected SOURCE=WEIGHT with SOURCE one of "
                f"{', '.join(RATIO_GROUPS)} (correction rows count as real) and WEIGHT >= 0 "
                f"(e.g. real=1,synthetic=3), got {spec!r}"
            )
        ratio[source] = weight
    return ratio


@dataclass
class MixOptions:
    inputs: list[str] = option([], "manifests to mix; SOURCE=PATH (real=..., synthetic=... or correction=...) names "
                                   "the source of rows without one", positional=True, nargs="+", metavar="MANIFEST")
    output: str = option("data/mixed_train.jsonl", "mixed manifest to write")
    ratio: str | dict | None = option(None, "rows per source in proportion, e.g. real=1,synthetic=3 (the source in "
                                            "excess is sampled down); None: every row once", metavar="SOURCE=W,...")
    upsample_real: int = option(1, "repeat real (and correction) rows N times before the ratio", metavar="N")
    default_source: str | None = option(None, "source of rows that have none and whose manifest was not named "
                                              "SOURCE=PATH", choices=SOURCES)
    seed: int = option(0, "random seed of sampling and shuffle")
    exclude: list[str] = option([], "held-out manifests (eval, dev, safety): a mix holding a row with the same "
                                    "normalised text or the same audio as one of theirs is refused",
                                metavar="MANIFEST")
    allow_overlap: bool = option(False, "mix even when rows overlap an --exclude manifest; the summary counts them")
    overwrite: bool = option(False, "replace an existing --output that would get other rows")


def mix_manifests(options: MixOptions) -> MixSummary:
    """Write one shuffled manifest from `inputs` (paths or `SOURCE=PATH`) and describe it.

    Relative audio paths are rewritten against the output's folder; ids that occur in more than
    one input get their manifest's name as a prefix, and repeats of a row get `~2`, `~3`….
    """
    inputs, output, upsample_real = options.inputs, options.output, options.upsample_real
    default_source, seed = options.default_source, options.seed
    ratio = parse_ratio(options.ratio) if isinstance(options.ratio, str) else options.ratio
    if upsample_real < 1:
        raise ConfigError(f"upsample_real: expected a whole number >= 1, got {upsample_real}")
    if default_source is not None and default_source not in SOURCES:
        raise ConfigError(f"default_source: expected one of {', '.join(SOURCES)}, got {default_source!r}")
    specs = [parse_input(spec) for spec in inputs]
    if not specs:
        raise ConfigError("inputs: no manifest, expected at least one manifest to mix, got none")
    check_outputs({"output": output}, {**{f"inputs[{i}]": spec.path for i, spec in enumerate(specs)},
                                       **{f"exclude[{i}]": path for i, path in enumerate(options.exclude)}})
    notes: list[str] = []
    loaded = _load_all(specs, default_source, notes)
    pools: dict[str, list[Utterance]] = {}  # by ratio group
    for rows in loaded:
        for utt in rows:
            pools.setdefault(_group(utt.source), []).append(utt)
    available = {g: len(rows) * (upsample_real if g == "real" else 1) for g, rows in pools.items()}
    targets = _targets(available, ratio) if ratio is not None else available

    rng = random.Random(seed)
    mixed: list[Utterance] = []
    for source, rows in pools.items():
        mixed.extend(_take(rows, targets[source], rng))
    rng.shuffle(mixed)
    if not mixed:
        raise ConfigError(f"ratio: every weight is 0 for the sources present, expected rows in the mix, got {ratio}")
    overlaps = _overlaps_in_mix(specs, options.exclude, mixed)
    if overlaps and not options.allow_overlap:
        raise ConfigError(overlap_problem("inputs", overlaps, f"--exclude {', '.join(options.exclude)}",
                                          "drop those rows from the inputs, or pass --allow-overlap to mix anyway"))
    notes += [f"replaced (--overwrite): {path}" for path in save_outputs({output: mixed}, overwrite=options.overwrite)]

    summaries = []
    for source in dict.fromkeys(u.source for rows in pools.values() for u in rows):
        chosen = [u for u in mixed if u.source == source]
        from_inputs = [spec.path for spec, rows_in in zip(specs, loaded, strict=True)
                       if any(u.source == source for u in rows_in)]
        summaries.append(SourceSummary(
            source=source,
            manifests=from_inputs,
            available=sum(u.source == source for rows in loaded for u in rows),
            selected=len(chosen),
            distinct=len({u.audio for u in chosen}),
            hours=total_seconds(chosen) / 3600,
        ))
    return MixSummary(
        output=str(output), seed=seed, ratio=ratio, upsample_real=upsample_real, utterances=len(mixed),
        hours=sum(s.hours for s in summaries), sources=summaries, exclude=list(options.exclude),
        overlap=overlapping_rows(overlaps), overlap_examples=describe_overlaps(overlaps), notes=notes,
    )


def _overlaps_in_mix(specs: list[MixInput], exclude: list[str], mixed: list[Utterance]) -> list[Overlap]:
    """Input rows that made it into the mix and share text or audio with an excluded manifest.

    Rows are matched to the mix by (audio, text), which `load_manifest` makes unique per clip, so
    a row the ratio sampled away is no leak and a repeated row is one offender.
    """
    if not exclude:
        return []
    in_mix = {(u.audio, u.text) for u in mixed}
    rows = [row for row in read_rows([spec.path for spec in specs]) if (row.utt.audio, row.utt.text) in in_mix]
    return find_overlaps(rows, read_rows(exclude))


def _load_all(specs: list[MixInput], default_source: str | None, notes: list[str]) -> list[list[Utterance]]:
    """Every input loaded, with its source filled in and ids made unique across inputs;
    problems in all inputs are reported together, inferred sources appended to `notes`."""
    problems: list[str] = []
    loaded: list[list[Utterance]] = []
    for spec in specs:
        try:
            rows = load_manifest(spec.path)
        except ManifestError as e:
            problems.extend(e.problems)
            loaded.append([])
            continue
        fallback = spec.source or default_source
        missing = sum(1 for u in rows if u.source is None)
        if missing and fallback is None:
            if any(u.source == "synthetic" for u in rows):  # part synthetic: the rest could be either
                problems.append(
                    f"{spec.path}: {missing} row(s) without 'source' beside synthetic rows, expected a source for "
                    f"every row, got none (name it: real={spec.path}, or pass --default-source)"
                )
            else:
                fallback = "real"
                notes.append(f"{missing} row(s) without `source` in {spec.path} counted as real "
                             f"(name it synthetic={spec.path} if they are not)")
        loaded.append([replace(u, source=u.source or fallback) for u in rows])
    if problems:
        raise ManifestError(problems)
    owners = Counter(uid for rows in loaded for uid in {u.id for u in rows})
    labels = _labels([spec.path for spec in specs])
    return [
        [replace(u, id=f"{label}/{u.id}") if owners[u.id] > 1 else u for u in rows]
        for label, rows in zip(labels, loaded, strict=True)
    ]


def _labels(paths: list[str]) -> list[str]:
    """Each manifest's file stem, numbered when two inputs share one."""
    stems = [Path(p).stem for p in paths]
    counts = Counter(stems)
    return [stem if counts[stem] == 1 else f"{stem}-{i + 1}" for i, stem in enumerate(stems)]


def _targets(available: dict[str, int], ratio: dict[str, float]) -> dict[str, int]:
    """The largest counts in proportion to `ratio` that no source runs out of."""
    unnamed = sorted(set(available) - set(ratio))
    absent = sorted(set(ratio) - set(available))
    if unnamed or absent:
        raise ConfigError(
            f"ratio: expected a weight for exactly the sources present ({', '.join(sorted(available))}), "
            f"got {', '.join(f'{s}={w:g}' for s, w in ratio.items())}"
        )
    scale = min((available[s] / w for s, w in ratio.items() if w > 0), default=0.0)
    return {s: min(available[s], round(scale * ratio[s])) for s in available}


def _take(rows: list[Utterance], count: int, rng: random.Random) -> list[Utterance]:
    """`count` rows: whole copies of `rows` first, then a random sample for the remainder, so
    no row is repeated twice before every row is repeated once."""
    copies, rest = divmod(count, len(rows))
    taken = [_copy(u, c) for c in range(1, copies + 1) for u in rows]
    taken += [_copy(u, copies + 1) for u in rng.sample(rows, rest)]
    return taken


def _copy(utt: Utterance, number: int) -> Utterance:
    return utt if number == 1 else replace(utt, id=f"{utt.id}~{number}")
