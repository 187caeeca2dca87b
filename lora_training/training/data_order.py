"""Which rows an epoch holds (corrections upsampled, synthetic capped, replay mixed in), which examples
each micro-batch holds, and the learning rate at each step: pure functions of (seed, epoch, index) and
of the step, so a run resumed from a checkpoint at step S sees exactly the batches and rates the
uninterrupted run saw after step S."""

from __future__ import annotations

import logging
import math
import random
from dataclasses import replace

from lora_training.data.manifest import Utterance
from lora_training.data.split import sentence_key
from lora_training.errors import LoraTrainingError
from lora_training.training.collate import Example, bucketed_batches
from lora_training.training.respell import respell_examples

log = logging.getLogger("lora_training.train")


def with_corrections(cfg, train: list[Utterance], dev: list[Utterance], corrections: list[Utterance]) -> list[Utterance]:
    """The rows to train on, plus each correction row `cfg.corrections_weight` times: corrections are
    the user's real speech (never capped as synthetic) and their fixes of the model's own mistakes,
    the rows that teach the most, so each is heard that many times an epoch.

    A correction sharing a sentence or a clip with a carved dev set is set aside, as the carve sets
    aside a synthetic row (against a given dev manifest, run-experiment's overlap check refuses it).
    """
    if not corrections:
        return train
    kept = corrections
    if not cfg.dev_manifest:
        texts, clips = {sentence_key(u.text) for u in dev}, {u.audio for u in dev}
        kept = [u for u in corrections if sentence_key(u.text) not in texts and u.audio not in clips]
    aside = len(corrections) - len(kept)
    log.info("corrections: %d row(s) of %s, each heard %d times per epoch%s", len(kept), cfg.corrections_manifest,
             cfg.corrections_weight, f"; {aside} sharing a dev sentence or clip set aside" if aside else "")
    return train + [replace(u, source=u.source or "correction") for u in kept] * cfg.corrections_weight


class DataOrder:
    """An epoch holds every real row (each as one of its augmented views; correction rows are real,
    each in `train` `corrections_weight` times by `with_corrections`), at most
    `max_synthetic_share` of synthetic rows (a fresh sample each epoch, so all are heard across
    epochs), and `replay_ratio` replay rows per row of those (a small replay set repeats); each
    respellable term occurrence is spelled otherwise with probability `respell_share`."""

    def __init__(self, train: list[Example], replay: list[Example], *, batch_size: int, replay_ratio: float,
                 seed: int, max_synthetic_share: float = 1.0, respell_share: float = 0.0, world: int = 1,
                 rank: int = 0, source: str = "train manifest"):
        self.real = [e for e in train if not e.synthetic]
        self.synthetic = [e for e in train if e.synthetic]
        self.replay = replay
        self.batch_size, self.replay_ratio, self.seed, self.respell_share = batch_size, replay_ratio, seed, respell_share
        self.world, self.rank, self.source = world, rank, source
        # With no real rows there is nothing to cap against: synthetic-only data trains as it is.
        share = max_synthetic_share if self.real else 1.0
        self.synthetic_per_epoch = (len(self.synthetic) if share >= 1 else
                                    min(len(self.synthetic), math.floor(share / (1 - share) * len(self.real))))
        self.replay_per_epoch = round(replay_ratio * (len(self.real) + self.synthetic_per_epoch)) if replay else 0
        self._per_epoch: int | None = None
        self._cache: tuple[int, list[list[Example]]] | None = None

    def epoch(self, epoch: int) -> list[list[Example]]:
        """Batches of one epoch, length-bucketed."""
        rng = random.Random(self.seed * 100_003 + epoch)
        pool = [(e, *e.views)[rng.randrange(len(e.views) + 1)] if e.views else e for e in self.real]
        pool += self._synthetic_rows(epoch)
        if self.replay_per_epoch:
            repeats, rest = divmod(self.replay_per_epoch, len(self.replay))
            pool += self.replay * repeats + rng.sample(self.replay, rest)
        order = bucketed_batches([e.length for e in pool], self.batch_size, rng)
        # Its own generator: respelling terms never changes which rows an epoch holds or their order.
        respell = random.Random(self.seed * 50_021 + epoch)
        return [respell_examples([pool[i] for i in batch], self.respell_share, respell) for batch in order]

    def describe(self) -> str:
        views = max((len(e.views) for e in self.real), default=0)
        spans = sum(len(e.respellings) for e in self.real + self.synthetic)
        return (f"each epoch: {len(self.real)} real rows" + (f" (each as one of {views + 1} views)" if views else "")
                + f", {self.synthetic_per_epoch} of {len(self.synthetic)} synthetic, {self.replay_per_epoch} replay"
                + (f"; {spans} term occurrence(s) with a shared start, each respelled with probability "
                   f"{self.respell_share:g}" if spans and self.respell_share > 0 else ""))

    def _synthetic_rows(self, epoch: int) -> list[Example]:
        """The epoch's slice of an endless run of shuffled passes over the synthetic rows: under a
        cap every row is heard once per ceil(rows / cap) epochs, none twice before all once."""
        n, k = len(self.synthetic), self.synthetic_per_epoch
        if k == n:
            return list(self.synthetic)
        passes: dict[int, list[Example]] = {}
        rows = []
        for position in range(epoch * k, (epoch + 1) * k):
            cycle, i = divmod(position, n)
            if cycle not in passes:
                passes[cycle] = random.Random(self.seed * 7_919 + cycle).sample(self.synthetic, n)
            rows.append(passes[cycle][i])
        return rows

    def micro_batch(self, index: int) -> list[Example]:
        """The `index`-th micro-batch of this process: ranks take interleaved batches."""
        if self._per_epoch is None:
            self._per_epoch = len(self.epoch(0)) // self.world
            if self._per_epoch == 0:
                raise LoraTrainingError(
                    f"{self.source}: {len(self.real) + len(self.synthetic)} utterances, expected at least one batch "
                    f"per process ({self.world} process(es) × batch {self.batch_size})"
                )
        epoch, offset = divmod(index, self._per_epoch)
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, self.epoch(epoch))
        return self._cache[1][offset * self.world + self.rank]


def lr_factor(step: int, *, warmup_steps: int, max_steps: int) -> float:
    """Linear warmup, then linear decay to 10% of the peak at max_steps."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return max(0.1, 1.0 - 0.9 * progress)
