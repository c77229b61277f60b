"""Length-bucketing batch sampler that also shards across DDP ranks.

Each epoch: a seeded permutation, sorted by length inside large chunks ("megabatches") so a batch holds chains of
similar length, cut into batches, grouped into steps of ``num_replicas`` neighbouring batches, steps shuffled.
Rank r takes batch r of every step, so all ranks run the same number of steps on distinct samples of similar
length. When the batch count does not divide evenly, the largest batches are split (no duplicates); only with
fewer samples than ranks are batches repeated.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from rna_hpc.errors import ConfigError

MEGABATCH_STEPS = 16  # a megabatch is this many steps of batches; larger = less padding, less randomness


class LengthBucketSampler(Sampler[list[int]]):
    """Batches of dataset indices of similar length; rank ``rank`` of ``num_replicas`` gets its own share."""

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
        bucket_by_length: bool = True,
    ) -> None:
        if isinstance(lengths, Sampler):  # Lightning tried to inject its DistributedSampler
            raise ConfigError(
                "trainer.use_distributed_sampler: must be false; LengthBucketSampler shards batches by rank itself"
            )
        if batch_size < 1 or num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ConfigError(f"sampler: batch_size={batch_size}, rank={rank} of num_replicas={num_replicas} invalid")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.drop_last = bool(drop_last)
        self.bucket_by_length = bool(bucket_by_length)
        self.epoch = 0

    @property
    def sampler(self) -> LengthBucketSampler:
        """Itself: Lightning calls ``set_epoch`` on ``batch_sampler.sampler`` at the start of every epoch."""
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "seed": self.seed, "num_replicas": self.num_replicas}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.seed = int(state.get("seed", self.seed))

    def __len__(self) -> int:
        n, bs, r = len(self.lengths), self.batch_size, self.num_replicas
        if self.drop_last:
            return (n // bs) // r
        return math.ceil(math.ceil(n / bs) / r)

    def _order(self, rng: np.random.Generator) -> np.ndarray:
        n = len(self.lengths)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        if not self.bucket_by_length:
            return order
        chunk = self.batch_size * self.num_replicas * MEGABATCH_STEPS
        parts = [order[s : s + chunk] for s in range(0, n, chunk)]
        return np.concatenate([p[np.argsort(self.lengths[p], kind="stable")] for p in parts]) if parts else order

    def _fill(self, batches: list[np.ndarray], total: int) -> list[np.ndarray]:
        """Reach ``total`` batches by splitting the largest ones; repeat batches only if none can be split."""
        while len(batches) < total:
            k = max(range(len(batches)), key=lambda i: len(batches[i]), default=None)
            if k is None or len(batches[k]) < 2:
                break
            half = (len(batches[k]) + 1) // 2
            batches[k : k + 1] = [batches[k][:half], batches[k][half:]]
        base = list(batches)
        while base and len(batches) < total:
            batches.append(base[len(batches) % len(base)])
        return batches

    def steps(self) -> list[list[np.ndarray]]:
        """This epoch's steps: each a list of ``num_replicas`` batches, one per rank."""
        rng = np.random.default_rng([self.seed, self.epoch])
        order = self._order(rng)
        bs, r = self.batch_size, self.num_replicas
        batches = [order[i : i + bs] for i in range(0, len(order), bs)]
        if self.drop_last and batches and len(batches[-1]) < bs:
            batches.pop()
        total = len(self) * r
        batches = batches[:total] if self.drop_last else self._fill(batches, total)
        steps = [batches[i : i + r] for i in range(0, total, r)]
        if self.shuffle:
            steps = [steps[i] for i in rng.permutation(len(steps))]
        return steps

    def __iter__(self) -> Iterator[list[int]]:
        for step in self.steps():
            yield step[self.rank].tolist()
