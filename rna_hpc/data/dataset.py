"""Dataset items (unpadded, per the batch contract in docs/architecture.md) and ``collate`` (padding + masks).

A sample is the dict the cache stores: ``target_id``, ``sequence``, ``pair_feats`` [L, L, 2] and, for labelled
data, ``coords`` [K, L, 3] (NaN = missing; reference 0 is used).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from rna_hpc.data.targets import PAD_INDEX, encode


def make_item(sample: dict[str, Any], start: int = 0, end: int | None = None) -> dict[str, Any]:
    """The residues ``start:end`` of a sample; coordinates 0 and ``coord_mask`` False where missing."""
    seq = sample["sequence"]
    end = len(seq) if end is None else end
    coords = sample.get("coords")
    if coords is None or len(coords) == 0:
        xyz = torch.zeros(end - start, 3)
        observed = torch.zeros(end - start, dtype=torch.bool)
    else:
        xyz = torch.as_tensor(coords[0, start:end], dtype=torch.float32)
        observed = torch.isfinite(xyz).all(dim=-1)
        xyz = torch.where(observed[:, None], xyz, torch.zeros_like(xyz))
    return {
        "target_id": sample["target_id"],
        "seq": torch.from_numpy(encode(seq[start:end])),
        "coords": xyz,
        "coord_mask": observed,
        "pair_feats": torch.as_tensor(sample["pair_feats"][start:end, start:end], dtype=torch.float32),
        "residue_index": torch.arange(start, end, dtype=torch.long),
        "length": end - start,
    }


class RNADataset(Dataset):
    """Training: a random contiguous crop of ``max_length`` for longer chains. Validation: whole chains
    (the first ``val_max_length`` residues of a longer one, which preparation normally filters out)."""

    def __init__(
        self, samples: list[dict[str, Any]], train: bool, max_length: int, val_max_length: int | None = None
    ) -> None:
        self.samples = samples
        self.train = train
        self.max_length = int(max_length)
        self.val_max_length = int(val_max_length) if val_max_length else None

    def __len__(self) -> int:
        return len(self.samples)

    def _limit(self) -> int | None:
        return self.max_length if self.train else self.val_max_length

    @property
    def lengths(self) -> list[int]:
        """Residues per item after cropping (what the length-bucketing sampler sorts by)."""
        limit = self._limit()
        return [min(len(s["sequence"]), limit) if limit else len(s["sequence"]) for s in self.samples]

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        length, limit = len(sample["sequence"]), self._limit()
        if not limit or length <= limit:
            return make_item(sample)
        start = int(torch.randint(0, length - limit + 1, (1,)).item()) if self.train else 0
        return make_item(sample, start, start + limit)


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Pad items to the longest: ``seq`` with N, features and coordinates with 0, ``mask``/``coord_mask`` False."""
    n, width = len(items), max((int(it["length"]) for it in items), default=0)
    batch = {
        "target_id": [it["target_id"] for it in items],
        "seq": torch.full((n, width), PAD_INDEX, dtype=torch.long),
        "mask": torch.zeros(n, width, dtype=torch.bool),
        "coords": torch.zeros(n, width, 3),
        "coord_mask": torch.zeros(n, width, dtype=torch.bool),
        "pair_feats": torch.zeros(n, width, width, items[0]["pair_feats"].shape[-1] if items else 2),
        "residue_index": torch.zeros(n, width, dtype=torch.long),
        "length": torch.tensor([int(it["length"]) for it in items], dtype=torch.long),
    }
    for b, it in enumerate(items):
        k = int(it["length"])
        batch["seq"][b, :k] = it["seq"]
        batch["mask"][b, :k] = True
        batch["coords"][b, :k] = it["coords"]
        batch["coord_mask"][b, :k] = it["coord_mask"]
        batch["pair_feats"][b, :k, :k] = it["pair_feats"]
        batch["residue_index"][b, :k] = it["residue_index"]
    return batch
