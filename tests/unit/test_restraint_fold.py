"""Distogram-restrained folding on real chains: native distances refold the native; the fold is differentiable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rna_hpc.config.schema import FoldConfig
from rna_hpc.evaluation.baselines import BaselineContext, ss_baseline
from rna_hpc.evaluation.metrics import tm_score
from rna_hpc.evaluation.references import load_references
from rna_hpc.model.coords import pair_distances
from rna_hpc.model.heads import DistogramHead
from rna_hpc.model.restraint_fold import bin_centres, exact_restraints, expected_distances, fold, right_handed

EDGES = DistogramHead(8, 38, 2.0, 40.0).bin_edges  # the default head's bins


@pytest.fixture(scope="module")
def train(rna3d_dir: Path) -> dict[str, tuple[str, np.ndarray]]:
    return load_references(rna3d_dir / "train_labels.csv")


def _native(train: dict, target_id: str) -> tuple[str, torch.Tensor, torch.Tensor]:
    seq, refs = train[target_id]
    return seq, torch.as_tensor(refs[0], dtype=torch.float32)[None], torch.ones(1, len(seq), dtype=torch.bool)


def _peaked_logits(distances: torch.Tensor, sharpness: float = 2.0) -> torch.Tensor:
    """Logits [B, L, L, bins] peaked at the bin of each distance (a confident distogram)."""
    centres = bin_centres(EDGES)
    return -sharpness * (distances.unsqueeze(-1) - centres) ** 2


@pytest.mark.parametrize("target_id", ["1EIY_C", "5V93_B"])  # a tRNA (76 nt) and a 115-nt chain
def test_native_distances_refold_the_native_from_the_ss_prior(train: dict, target_id: str) -> None:
    seq, native, mask = _native(train, target_id)
    prior = torch.as_tensor(ss_baseline(seq, BaselineContext()), dtype=torch.float32)[None]
    assert tm_score(prior[0].numpy(), native[0].numpy()) < 0.3  # the fold has to be found, not kept
    folded = fold(prior, exact_restraints(native, mask), mask, FoldConfig(prior_weight=0.0))
    assert tm_score(folded[0].numpy(), native[0].numpy()) >= 0.9
    steps = torch.linalg.norm(folded[0, 1:] - folded[0, :-1], dim=-1)
    assert 4.5 < float(steps.median()) < 6.5


def test_the_mirror_image_is_reflected_back(train: dict) -> None:
    seq, native, mask = _native(train, "5V93_B")
    mirror = native * torch.tensor([1.0, 1.0, -1.0])
    assert tm_score(mirror[0].numpy(), native[0].numpy()) < 0.5
    assert tm_score(right_handed(mirror, mask)[0].numpy(), native[0].numpy()) == pytest.approx(1.0, abs=1e-3)
    torch.testing.assert_close(right_handed(native, mask), native)


def test_expected_distances_and_confidence() -> None:
    mask = torch.ones(1, 3, dtype=torch.bool)
    d = torch.tensor([[[0.0, 10.4, 25.0], [10.4, 0.0, 5.6], [25.0, 5.6, 0.0]]])
    sharp = expected_distances(_peaked_logits(d), EDGES, mask)
    off = ~torch.eye(3, dtype=torch.bool)
    torch.testing.assert_close(sharp.mu[0][off], d[0][off], atol=0.6, rtol=0.0)
    assert (sharp.weight[0][off] > 0.9).all() and (sharp.weight[0].diagonal() == 0).all()
    flat = expected_distances(torch.zeros(1, 3, 3, len(EDGES) + 1), EDGES, mask)
    assert float(flat.weight.max()) == 0.0  # a flat distogram restrains nothing
    beyond = torch.full((1, 3, 3, len(EDGES) + 1), -10.0)
    beyond[..., -1] = 10.0
    assert float(expected_distances(beyond, EDGES, mask).weight.max()) < 1e-3  # nor does "beyond the last edge"


def test_gradients_flow_from_the_fold_into_the_distogram_logits(train: dict) -> None:
    seq, native, mask = _native(train, "1EIY_C")
    target = pair_distances(native)
    torch.manual_seed(0)
    logits = (_peaked_logits(target, sharpness=0.3) + 0.5 * torch.randn(*target.shape, len(EDGES) + 1)).detach()
    logits.requires_grad_(True)
    prior = torch.as_tensor(ss_baseline(seq, BaselineContext()), dtype=torch.float32)[None]
    cfg = FoldConfig(steps=60)

    def error(lg: torch.Tensor) -> torch.Tensor:
        folded = fold(prior, expected_distances(lg, EDGES, mask, cfg.window), mask, cfg, differentiable=True)
        return ((pair_distances(folded) - target) ** 2).mean()

    loss = error(logits)
    loss.backward()
    grad = logits.grad
    assert grad is not None and torch.isfinite(grad).all() and float(grad.abs().sum()) > 0
    with torch.no_grad():
        assert float(error(logits - 0.5 * grad / grad.abs().max())) < float(loss)  # downhill in the logits
    assert not fold(prior, exact_restraints(native, mask), mask, cfg).requires_grad


def test_fold_candidates_of_an_untrained_model_keep_their_priors(rna3d_dir: Path) -> None:
    """An untrained distogram is flat: the fold candidates stay the secondary-structure variants they start from."""
    from rna_hpc.data.datamodule import RNADataModule
    from rna_hpc.data.dataset import collate
    from rna_hpc.evaluation.structure_io import read_sequences
    from rna_hpc.model.candidates import candidate_pools
    from rna_hpc.model.module import RNA3DModule

    seq = read_sequences(rna3d_dir / "val_sequences.csv")["7ELP_A"]
    items = RNADataModule(seed=0, format="kaggle", dir=str(rna3d_dir)).predict_samples([("7ELP_A", seq)])
    torch.manual_seed(0)
    tiny = {"trunk": {"c_s": 16, "c_z": 8, "n_blocks": 1, "n_heads": 2}, "merger": {"single_in": 20, "c_cond": 16}}
    module = RNA3DModule(model=tiny | {"generator": {"c_a": 16, "n_blocks": 1, "n_heads": 2, "n_steps": 3}}).eval()
    generator = torch.Generator().manual_seed(0)
    [pool] = candidate_pools(module, collate(items), ["fold", "ss_model"], 3, None, generator, fold=FoldConfig())
    by_name = dict(zip(pool.names, pool.coords, strict=True))
    assert pool.sources.count("fold") == 3
    for k in range(3):
        assert by_name[f"fold_{k}"].shape == (len(seq), 3) and np.isfinite(by_name[f"fold_{k}"]).all()
        assert tm_score(by_name[f"fold_{k}"], by_name[f"ss_model_{k}"]) > 0.8
