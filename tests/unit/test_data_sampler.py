"""LengthBucketSampler and ResumableDataLoader: a simulated 2-rank split, determinism, resume position, padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import SequentialSampler

from rna_hpc.data.sampler import LengthBucketSampler, ResumableDataLoader
from rna_hpc.errors import ConfigError


def lengths(n: int, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(10, 240, size=n).tolist()


def ranks(n: int, batch_size: int, world: int, **kw: object) -> list[list[list[int]]]:
    return [list(LengthBucketSampler(lengths(n), batch_size, num_replicas=world, rank=r, **kw)) for r in range(world)]


@pytest.mark.parametrize(("n", "batch_size"), [(25, 4), (26, 4), (32, 4), (7, 3), (3, 4)])
def test_two_ranks_get_distinct_samples_and_equal_batch_counts(n: int, batch_size: int) -> None:
    per_rank = ranks(n, batch_size, 2, seed=5)
    assert len(per_rank[0]) == len(per_rank[1]) == len(LengthBucketSampler(lengths(n), batch_size, num_replicas=2))
    seen = [i for batches in per_rank for batch in batches for i in batch]
    assert sorted(seen) == list(range(n))  # every sample once: distinct across ranks, none lost
    assert all(1 <= len(b) <= batch_size for batches in per_rank for b in batches)


def test_fewer_samples_than_ranks_still_gives_every_rank_a_batch() -> None:
    per_rank = ranks(1, 4, 2)
    assert [len(b) for b in per_rank] == [1, 1]


def test_drop_last_keeps_only_full_batches() -> None:
    per_rank = ranks(27, 4, 2, drop_last=True)
    assert len(per_rank[0]) == len(per_rank[1]) == 3
    assert all(len(b) == 4 for batches in per_rank for b in batches)


def test_deterministic_per_seed_and_epoch_and_resumable() -> None:
    a = LengthBucketSampler(lengths(40), 4, seed=1)
    b = LengthBucketSampler(lengths(40), 4, seed=1)
    assert list(a) == list(b)
    a.set_epoch(1)
    epoch1 = list(a)
    assert epoch1 != list(b)
    resumed = LengthBucketSampler(lengths(40), 4, seed=1)
    resumed.load_state_dict(a.state_dict())
    assert list(resumed) == epoch1 and resumed.state_dict()["epoch"] == 1


def test_bucketing_lowers_padding() -> None:
    lens = np.asarray(lengths(200))

    def padding(sampler: LengthBucketSampler) -> int:
        return sum(int(lens[b].max() * len(b) - lens[b].sum()) for b in sampler)

    bucketed = padding(LengthBucketSampler(lens.tolist(), 8, seed=0))
    plain = padding(LengthBucketSampler(lens.tolist(), 8, seed=0, bucket_by_length=False))
    assert bucketed < plain / 4


def test_rejects_an_injected_distributed_sampler() -> None:
    with pytest.raises(ConfigError, match="trainer.use_distributed_sampler: must be false"):
        LengthBucketSampler(SequentialSampler(range(4)), batch_size=2)  # type: ignore[arg-type]


def test_resumed_epoch_skips_the_batches_already_consumed() -> None:
    full = LengthBucketSampler(lengths(40), 4, seed=1)
    full.set_epoch(2)
    epoch2 = list(full)
    resumed = LengthBucketSampler(lengths(40), 4, seed=1)
    resumed.load_state_dict({**full.state_dict(), "start_batch": 3})
    resumed.set_epoch(2)  # Lightning sets the epoch again after restoring: the position stays
    assert list(resumed) == epoch2[3:]
    assert list(resumed) == epoch2  # the skip applies once: the epoch iterated again starts at its first batch
    resumed.load_state_dict({**full.state_dict(), "start_batch": 3})
    resumed.set_epoch(3)  # another epoch starts at its first batch
    assert len(list(resumed)) == len(epoch2)


def test_an_epoch_restored_after_its_last_batch_is_not_run_again() -> None:
    """A save after the last batch of epoch 2 (before its validation) is the start of epoch 3; a restored loop that
    still finishes epoch 2 gets no batch of it, then epoch 3 from its first batch."""
    full = LengthBucketSampler(lengths(40), 4, seed=1)
    full.set_epoch(3)
    epoch3 = list(full)
    resumed = LengthBucketSampler(lengths(40), 4, seed=1)
    resumed.load_state_dict({"epoch": 3, "start_batch": 0, "seed": 1, "num_replicas": 1})
    resumed.set_epoch(2)
    assert list(resumed) == []
    resumed.set_epoch(3)
    assert list(resumed) == epoch3
    again = LengthBucketSampler(lengths(40), 4, seed=1)
    again.load_state_dict({"epoch": 3, "start_batch": 0, "seed": 1, "num_replicas": 1})
    again.set_epoch(3)  # a loop that restarts at epoch 3, as the position says
    assert list(again) == epoch3


def test_position_saved_with_another_world_size_restarts_the_epoch(caplog) -> None:
    sampler = LengthBucketSampler(lengths(40), 4, seed=1, num_replicas=2, rank=0)
    sampler.load_state_dict({"epoch": 1, "start_batch": 2, "seed": 1, "num_replicas": 1})
    assert sampler.start_batch == 0 and sampler.epoch == 1
    assert "cut for 1 ranks, this run has 2" in caplog.text


def _loader(progress=None) -> ResumableDataLoader:
    data = list(range(10))
    return ResumableDataLoader(data, LengthBucketSampler([1] * 10, 3, seed=4), progress=progress)  # 4 batches


def test_loader_state_is_the_position_in_the_epoch_and_rolls_over_at_its_end() -> None:
    loader = _loader()
    it = iter(loader)
    first = [next(it).tolist() for _ in range(2)]
    state = loader.state_dict()
    assert (state["epoch"], state["start_batch"]) == (0, 2)
    rest = [b.tolist() for b in it]
    assert (loader.state_dict()["epoch"], loader.state_dict()["start_batch"]) == (1, 0)  # epoch over: the next one
    resumed = _loader()
    resumed.load_state_dict(state)
    assert [b.tolist() for b in resumed] == rest and len(first + rest) == 4
    limited = _loader(progress=lambda: (2, 2))  # the trainer runs 2 batches per epoch (limit_train_batches)
    assert (limited.state_dict()["epoch"], limited.state_dict()["start_batch"]) == (1, 0)
    mid_step = _loader(progress=lambda: (1, 4))  # a batch in flight is not done: the restored loop runs it again
    assert mid_step.state_dict()["start_batch"] == 1


def test_iterating_the_loaders_leaves_the_global_random_state_alone() -> None:
    torch.manual_seed(0)
    before = torch.get_rng_state()
    for _ in range(2):
        list(_loader())
    assert torch.equal(torch.get_rng_state(), before)
