"""LengthBucketSampler: a simulated 2-rank split, determinism, resume state, low padding."""

from __future__ import annotations

import numpy as np
import pytest
from torch.utils.data import SequentialSampler

from rna_hpc.data.sampler import LengthBucketSampler
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
