"""The dev set every choice of a run reads, carved out of the training data when none is given.

Choosing the best checkpoint (and when to stop) on the eval manifest would make its score
optimistic: of ten checkpoints of equal worth, the one that happens to score best on those clips
is picked, and its score is the luck of the draw. So choices read a dev set and the eval manifest
is kept for the verdict. Without `--dev-manifest` the trainer carves one here:

- **sentence-disjoint**: rows are grouped by `data.split.sentence_key`, and a group goes to one
  side only, so a sentence recorded twice never trains and judges at once;
- **recordings first**: the dev set should sound like the clips the adapter is for. Rows without
  `source` are the user's recordings, as `mix` counts them. A synthetic row whose sentence went
  to dev as a recording is set aside (in neither set): training on it would leak the sentence;
- **sized** (`size_for`): `dev_fraction` of the recordings, 10 to 200 utterances, synthetic rows
  topping up to 10 when there are too few recordings, never more than a quarter of either pool;
- **seeded**: a pure function of the rows and the seed, so a resumed run carves the same set.

No torch here: preflight carves too, to check the batch size against what is left to train on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from lora_training.data.manifest import Utterance, load_manifest
from lora_training.data.split import sentence_key
from lora_training.errors import ConfigError

log = logging.getLogger("lora_training.train")

# ~10 utterances are ~100 words: one word is one WER point. Below that a single word flips which
# checkpoint wins, and the choice is noise; so synthetic rows top a small dev set up to 10.
DEV_MIN = 10
# 200 utterances (~2000 words) give a WER interval of about +-1.5 points, enough to rank
# checkpoints; more only costs decode time at every eval (200 clips at the ~0.2 s each measured
# on moonshine-base with 2 CPU threads: ~40 s), and training keeps the rows.
DEV_MAX = 200
# A carve never takes more than a quarter of a pool: training needs the rest.
MAX_SHARE = 4
CARVED = "carved from train_manifest"


@dataclass
class DevCarve:
    train: list[Utterance]
    dev: list[Utterance]
    set_aside: int  # synthetic rows that share a sentence with a recording in dev

    def describe(self) -> str:
        recordings = sum(is_recording(u) for u in self.dev)
        return (f"dev set {CARVED}: {len(self.dev)} utterance(s) ({recordings} recording(s), "
                f"{len(self.dev) - recordings} synthetic), {len(self.train)} left to train on"
                + (f", {self.set_aside} synthetic row(s) sharing a dev sentence set aside" if self.set_aside else ""))


def is_recording(u: Utterance) -> bool:
    return u.source != "synthetic"


def size_for(primary: int, others: int, fraction: float) -> tuple[int, int]:
    """(rows from the primary pool, rows from the other) the carve aims for.

    The primary pool is the recordings (the synthetic rows when there are none): `fraction` of
    it, at most DEV_MAX. When that is under DEV_MIN (fewer than ~100 recordings at 0.1), the
    other pool tops it up, then the primary pool itself, each by at most a quarter of itself.
    100 recordings: 10 + 0; 40 recordings + 300 synthetic: 4 + 6; 40 recordings alone: 10;
    the tests' 8 rows: 2.
    """
    take = min(round(fraction * primary), DEV_MAX)
    top = 0
    if take < DEV_MIN:
        top = min(DEV_MIN - take, others // MAX_SHARE)
        take = max(take, min(DEV_MIN - top, primary // MAX_SHARE))
    return take, top


def dev_and_train(cfg, train_rows: list[Utterance]) -> tuple[list[Utterance], list[Utterance]]:
    """(rows to train on, dev rows) of a run: `cfg.dev_manifest` beside all training rows, else a carve."""
    if cfg.dev_manifest:
        return train_rows, load_manifest(cfg.dev_manifest)
    carve = carve_dev(train_rows, fraction=cfg.dev_fraction, seed=cfg.seed, where=cfg.train_manifest)
    log.info("%s", carve.describe())
    return carve.train, carve.dev


def dev_digest(dev: list[Utterance]) -> str:
    """Names a dev set by its clips' file names and texts (not their folder, which a user may move), so a
    resumed run can tell that it still chooses on the same set."""
    return hashlib.sha256(json.dumps([[Path(u.audio).name, u.text] for u in dev]).encode()).hexdigest()[:16]


def carve_dev(rows: list[Utterance], *, fraction: float, seed: int, where: str) -> DevCarve:
    """Split training rows into (train, dev) by whole sentences; the same rows and seed give the same carve."""
    groups: dict[str, list[int]] = {}
    for i, u in enumerate(rows):
        groups.setdefault(sentence_key(u.text), []).append(i)
    recordings = [i for i, u in enumerate(rows) if is_recording(u)]
    primary_is_real = bool(recordings)
    take, top = size_for(len(recordings) if primary_is_real else len(rows),
                         len(rows) - len(recordings) if primary_is_real else 0, fraction)
    order = list(groups.values())
    random.Random(f"dev-carve:{seed}").shuffle(order)

    def in_primary(i: int) -> bool:
        return is_recording(rows[i]) or not primary_is_real

    dev: set[int] = set()
    aside: set[int] = set()
    for goal, pool in ((take, [g for g in order if any(in_primary(i) for i in g)]),
                       (take + top, [g for g in order if not any(in_primary(i) for i in g)])):
        for group in pool:
            members = [i for i in group if in_primary(i)] or group
            if len(dev) + len(members) <= goal:
                dev.update(members)
                aside.update(set(group) - set(members))
    if not dev:
        raise ConfigError(
            f"{where}: no dev set could be carved, expected at least {MAX_SHARE} utterances and a sentence repeated "
            f"at most {max(take + top, 1)} time(s), got {len(rows)} utterance(s) in {len(groups)} sentence(s); "
            f"pass --dev-manifest")
    return DevCarve(train=[u for i, u in enumerate(rows) if i not in dev and i not in aside],
                    dev=[u for i, u in enumerate(rows) if i in dev], set_aside=len(aside))
