"""Length bucketing: batches of examples with similar lengths, so a batch pads little.

Dynamic padding pads every row to its batch's longest; with random batches of texts from 5 to
200 tokens, most of the compute is padding. `LengthBuckets` is a batch sampler for
``torch.utils.data.DataLoader(batch_sampler=...)``: each epoch it shuffles the examples (seeded
by ``seed`` and the epoch), cuts them into pools of ``pool_batches`` batches, sorts each pool by
length, cuts it into batches and shuffles the order of all batches. Batches are nearly uniform
in length, yet which examples meet, and the order, still change every epoch. Without
``shuffle`` (validation) the examples are sorted by length once.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from gptlab.errors import GptlabError

POOL_BATCHES = 50  # batches per sorted pool: larger pads less, smaller mixes more


class LengthBuckets:
    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        pool_batches: int = POOL_BATCHES,
    ) -> None:
        if batch_size < 1 or pool_batches < 1:
            raise GptlabError(
                f"batch_size and pool_batches must be positive, got {batch_size}, {pool_batches}"
            )
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.pool = batch_size * pool_batches
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def batches(self, epoch: int) -> list[list[int]]:
        """The batches (lists of example indices) of ``epoch``; every index exactly once."""
        order = list(range(len(self.lengths)))
        if not self.shuffle:
            order.sort(key=lambda i: self.lengths[i])
            return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        rng = random.Random(f"{self.seed}-{epoch}")
        rng.shuffle(order)
        batches = []
        for start in range(0, len(order), self.pool):
            pool = sorted(order[start : start + self.pool], key=lambda i: self.lengths[i])
            batches += [pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches(self.epoch)
        self.epoch += 1
        return iter(batches)
