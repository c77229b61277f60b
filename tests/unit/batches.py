"""Synthetic model inputs for the unit tests: random C1' chains and padded batches (layout: docs/architecture.md)."""

from __future__ import annotations

import numpy as np
import torch


def random_chain(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random C1' trace with 5.6 A steps."""
    steps = rng.normal(size=(n, 3))
    return np.cumsum(5.6 * steps / np.linalg.norm(steps, axis=1, keepdims=True), axis=0)


def make_batch(lengths: list[int], seed: int = 0) -> dict:
    """A padded batch of random sequences and chains, a short stem (residues k and n-1-k pair) in the pair features."""
    rng = np.random.default_rng(seed)
    b, w = len(lengths), max(lengths)
    batch = {
        "target_id": [f"s{seed}_{i}" for i in range(b)],
        "seq": torch.full((b, w), 4),
        "mask": torch.zeros(b, w, dtype=torch.bool),
        "coords": torch.zeros(b, w, 3),
        "coord_mask": torch.zeros(b, w, dtype=torch.bool),
        "pair_feats": torch.zeros(b, w, w, 2),
        "residue_index": torch.zeros(b, w, dtype=torch.long),
        "length": torch.tensor(lengths),
    }
    for i, n in enumerate(lengths):
        batch["seq"][i, :n] = torch.from_numpy(rng.integers(0, 4, n))
        batch["mask"][i, :n] = batch["coord_mask"][i, :n] = True
        batch["coords"][i, :n] = torch.tensor(random_chain(n, rng), dtype=torch.float32)
        batch["residue_index"][i, :n] = torch.arange(n)
        for k in range(3):
            batch["pair_feats"][i, k, n - 1 - k] = batch["pair_feats"][i, n - 1 - k, k] = 1.0
    return batch
