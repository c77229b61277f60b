"""Dataset items, cropping and collate (padding, masks, missing residues), and the synthetic smoke set."""

from __future__ import annotations

import numpy as np
import torch

from rna_hpc.config.schema import SyntheticConfig
from rna_hpc.data.dataset import RNADataset, collate, make_item
from rna_hpc.data.synthetic import generate_synthetic


def sample(tid: str, seq: str, missing: tuple[int, ...] = ()) -> dict:
    n = len(seq)
    coords = torch.arange(n * 3, dtype=torch.float32).reshape(1, n, 3)
    coords[0, list(missing)] = float("nan")
    pair = torch.rand(n, n, 2)
    return {"target_id": tid, "sequence": seq, "coords": coords, "pair_feats": pair}


def test_collate_pads_and_masks_missing_residues() -> None:
    items = [make_item(sample("a", "GGN", missing=(1,))), make_item(sample("b", "ACGUA"))]
    batch = collate(items)
    assert batch["target_id"] == ["a", "b"]
    assert batch["seq"].tolist() == [[2, 2, 4, 4, 4], [0, 1, 2, 3, 0]]  # N and padding are 4
    assert batch["mask"].tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert batch["coord_mask"].tolist() == [[True, False, True, False, False], [True] * 5]
    assert batch["coords"][0, 1].abs().sum() == 0 and batch["coords"][0, 3:].abs().sum() == 0
    assert batch["coords"][0, 2].tolist() == [6.0, 7.0, 8.0]
    assert batch["pair_feats"].shape == (2, 5, 5, 2) and batch["pair_feats"][0, 3:].abs().sum() == 0
    assert batch["residue_index"][1].tolist() == [0, 1, 2, 3, 4] and batch["length"].tolist() == [3, 5]
    assert batch["seq"].dtype == torch.long and batch["coords"].dtype == torch.float32


def test_training_crops_contiguously_and_consistently() -> None:
    s = sample("long", "ACGU" * 10)
    torch.manual_seed(0)
    item = RNADataset([s], train=True, max_length=16)[0]
    start = int(item["residue_index"][0])
    assert item["length"] == 16 and item["residue_index"].tolist() == list(range(start, start + 16))
    assert torch.equal(item["pair_feats"], s["pair_feats"][start : start + 16, start : start + 16])
    assert torch.equal(item["coords"], s["coords"][0, start : start + 16])
    assert RNADataset([s], train=True, max_length=16).lengths == [16]


def test_validation_keeps_whole_chains() -> None:
    s = sample("long", "ACGU" * 10)
    item = RNADataset([s], train=False, max_length=16, val_max_length=512)[0]
    assert item["length"] == 40 and item["residue_index"].tolist() == list(range(40))


def test_predict_items_have_no_observed_coordinates() -> None:
    item = make_item({"target_id": "p", "sequence": "GGAC", "pair_feats": np.zeros((4, 4, 2), np.float32)})
    assert item["coords"].shape == (4, 3) and not item["coord_mask"].any()


def test_synthetic_set_is_deterministic() -> None:
    cfg = SyntheticConfig(n_targets=4, min_length=16, max_length=30, seed=7)
    a, b = generate_synthetic(cfg), generate_synthetic(cfg)
    assert [t.sequence for t in a] == [t.sequence for t in b]
    assert all(np.array_equal(x.coords, y.coords) for x, y in zip(a, b, strict=True))
    assert all(16 <= t.length <= 30 and t.coords.shape == (1, t.length, 3) for t in a)
    other = generate_synthetic(SyntheticConfig(n_targets=4, min_length=16, max_length=30, seed=8))
    assert [t.sequence for t in other] != [t.sequence for t in a]
    steps = np.linalg.norm(np.diff(a[0].coords[0], axis=0), axis=1)
    assert 3.0 < float(np.median(steps)) < 8.0  # a C1' trace, not noise
