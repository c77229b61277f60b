"""Length-bucketing batch sampler that also shards across DDP ranks.

Each epoch: a seeded permutation, sorted by length inside large chunks ("megabatches") so a batch holds chains of
similar length, cut into batches, grouped into steps of ``num_replicas`` neighbouring batches, steps shuffled.
Rank r takes batch r of every step, so all ranks run the same number of steps on distinct samples of similar
length. When the batch count does not divide evenly, the largest batches are split (no duplicates); only with
fewer samples than ranks are batches repeated.

``ResumableDataLoader`` saves the position within the epoch in Lightning's checkpoints: a run resumed mid-epoch goes
on with the next batch of the same epoch order, as if it had never stopped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from rna_hpc.errors import ConfigError

MEGABATCH_STEPS = 16  # a megabatch is this many steps of batches; larger = less padding, less randomness
log = logging.getLogger(__name__)


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
        self.start_batch = 0  # batches of this epoch to skip on the next iteration (a resumed epoch)
        self.finished_epoch: int | None = None  # restored at the end of this epoch: all its batches are done

    @property
    def sampler(self) -> LengthBucketSampler:
        """Itself: Lightning calls ``set_epoch`` on ``batch_sampler.sampler`` at the start of every epoch."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this at every epoch start; another epoch than the resumed one starts at its first batch.

        A position saved at the end of an epoch reads as the start of the next; when the restored loop still finishes
        the ended epoch (a save after its last batch, before its validation), that epoch has no batches left.
        """
        epoch = int(epoch)
        if epoch == self.finished_epoch:
            self.start_batch = len(self)
        elif epoch != self.epoch:
            self.start_batch = 0
        self.epoch, self.finished_epoch = epoch, None

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "start_batch": self.start_batch,
            "seed": self.seed,
            "num_replicas": self.num_replicas,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue at ``state``'s epoch and batch; a position saved with another world size restarts the epoch."""
        self.epoch = int(state["epoch"])
        self.seed = int(state.get("seed", self.seed))
        start = int(state.get("start_batch", 0))
        replicas = int(state.get("num_replicas", self.num_replicas))
        if start and replicas != self.num_replicas:
            log.warning(
                "epoch %d restarts from its first batch: it was cut for %d ranks, this run has %d",
                self.epoch,
                replicas,
                self.num_replicas,
            )
            start = 0
        self.start_batch = start
        self.finished_epoch = self.epoch - 1 if start == 0 else None

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
        """This rank's batches of the epoch, after the ``start_batch`` already consumed (skipped once)."""
        start, self.start_batch = self.start_batch, 0
        return iter([step[self.rank].tolist() for step in self.steps()[start:]])


def training_position(trainer: Any) -> tuple[int, bool]:
    """``(batches of the epoch done, a batch is in flight)`` as a fit restored from a checkpoint taken now sees them.

    Lightning's rule: a checkpoint taken in ``on_train_batch_end`` counts that batch as done; one taken mid-step (by
    a signal handler) does not, and the restored loop runs that batch again.
    """
    p = trainer.fit_loop.epoch_loop.batch_progress.current
    at_batch_end = p.ready == p.started == p.processed == p.completed + 1
    return p.completed + int(at_batch_end), p.ready > p.processed


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for one epoch of one run."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class ResumableDataLoader(DataLoader):
    """A DataLoader over a :class:`LengthBucketSampler` whose position in the epoch is saved in checkpoints.

    Lightning stores ``state_dict()`` with its fit loop and calls ``load_state_dict()`` before iterating again, so a
    resumed run goes on with the batch the restored loop expects next. ``progress()`` gives ``(batches done,
    batches per epoch)`` as the trainer counts them (a batch interrupted mid-step is not done; ``limit_train_batches``
    bounds an epoch); without it, the batches handed out so far count as done. A position at the end of an epoch is
    saved as the start of the next. Iterating never draws from the global torch RNG (the worker seed comes from the
    loader's own generator, seeded per epoch), so a resumed run draws the same random numbers.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_sampler: LengthBucketSampler,
        progress: Callable[[], tuple[int, float]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(dataset, batch_sampler=batch_sampler, generator=torch.Generator(), **kwargs)
        self.progress = progress
        self.handed_out = 0  # batches of the current epoch handed out so far (a resumed epoch counts the skipped ones)

    def __iter__(self) -> Iterator[Any]:
        sampler = self.batch_sampler
        self.generator.manual_seed(epoch_seed(sampler.seed, sampler.epoch))
        self.handed_out = sampler.start_batch
        for batch in super().__iter__():
            self.handed_out += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        state = self.batch_sampler.state_dict()
        done, total = self.progress() if self.progress is not None else (self.handed_out, len(self))
        if done >= total:  # the epoch is over: the next batch is the first of the next epoch
            return {**state, "epoch": state["epoch"] + 1, "start_batch": 0}
        return {**state, "start_batch": int(done)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batch_sampler.load_state_dict(state)
