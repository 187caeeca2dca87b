"""Which examples each micro-batch holds, and the learning rate at each step: pure functions of
(seed, epoch, index) and of the step, so a run resumed from a checkpoint at step S sees exactly the
batches and rates the uninterrupted run saw after step S."""

from __future__ import annotations

import random

from lora_training.errors import LoraTrainingError
from lora_training.training.collate import Example, bucketed_batches


class DataOrder:
    def __init__(self, train: list[Example], replay: list[Example], *, batch_size: int, replay_ratio: float,
                 seed: int, world: int = 1, rank: int = 0, source: str = "train manifest"):
        self.train, self.replay = train, replay
        self.batch_size, self.replay_ratio, self.seed = batch_size, replay_ratio, seed
        self.world, self.rank, self.source = world, rank, source
        self._per_epoch: int | None = None
        self._cache: tuple[int, list[list[Example]]] | None = None

    def epoch(self, epoch: int) -> list[list[Example]]:
        """Batches of one epoch: the training set plus a fresh replay sample, length-bucketed."""
        rng = random.Random(self.seed * 100_003 + epoch)
        pool = list(self.train)
        if self.replay and self.replay_ratio > 0:
            n = min(len(self.replay), round(self.replay_ratio * len(pool)))
            pool += rng.sample(self.replay, n)
        order = bucketed_batches([e.length for e in pool], self.batch_size, rng)
        return [[pool[i] for i in batch] for batch in order]

    def micro_batch(self, index: int) -> list[Example]:
        """The `index`-th micro-batch of this process: ranks take interleaved batches."""
        if self._per_epoch is None:
            self._per_epoch = len(self.epoch(0)) // self.world
            if self._per_epoch == 0:
                raise LoraTrainingError(
                    f"{self.source}: {len(self.train)} utterances, expected at least one batch per process "
                    f"({self.world} process(es) × batch {self.batch_size})"
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
