"""The rollout losses on a real chain: its TM-score is the metric's, its FAPE sees where each part sits relative to
the others, gradients reach the network through the sampler, and training on either alone improves what the sampler
rolls out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rna_hpc.config.schema import LossConfig
from rna_hpc.evaluation.baselines import BaselineContext, ss_baseline
from rna_hpc.evaluation.metrics import tm_score
from rna_hpc.model.coords import random_rotations, residue_frames
from rna_hpc.model.losses import FAPE_CLAMP, FAPE_SCALE, compute_losses, fape, soft_tm

TARGET = "1EIY_C"  # a 76-nt tRNA of the train split
ROLLOUT_ONLY = LossConfig(diffusion=0.0, distogram=0.0, torsion=0.0, lddt=0.0, rollout=1.0, rollout_steps=3)
FAPE_ONLY = LossConfig(diffusion=0.0, distogram=0.0, torsion=0.0, lddt=0.0, fape=1.0, rollout_steps=3)


@pytest.fixture(scope="module")
def batch(rna3d_dir: Path) -> dict:
    from rna_hpc.data.datamodule import RNADataModule
    from rna_hpc.data.dataset import collate
    from rna_hpc.evaluation.references import load_references

    seq, refs = load_references(rna3d_dir / "train_labels.csv")[TARGET]
    items = RNADataModule(seed=0, format="kaggle", dir=str(rna3d_dir)).predict_samples([(TARGET, seq)])
    native = np.asarray(refs[0], dtype=np.float32)
    observed = np.isfinite(native).all(axis=1)
    return collate(items) | {
        "coords": torch.as_tensor(np.where(observed[:, None], native, 0.0))[None],
        "coord_mask": torch.as_tensor(observed)[None],
    }


def _tiny_module():  # noqa: ANN202 - an RNA3DModule
    from rna_hpc.model.module import RNA3DModule

    torch.manual_seed(0)
    trunk = {"c_s": 16, "c_z": 8, "n_blocks": 1, "n_heads": 2}
    generator = {"c_a": 16, "n_blocks": 1, "n_heads": 2, "n_steps": 3}
    return RNA3DModule(model={"trunk": trunk, "merger": {"single_in": 20, "c_cond": 16}, "generator": generator})


def test_soft_tm_is_the_tm_score_at_one_superposition(batch: dict) -> None:
    native, mask = batch["coords"], batch["coord_mask"]
    moved = native @ random_rotations(1, generator=torch.Generator().manual_seed(0))[0] + 7.0
    assert float(soft_tm(moved, native, mask)) == pytest.approx(1.0, abs=1e-4)
    seq = "".join("ACGUN"[i] for i in batch["seq"][0].tolist())
    ss = torch.as_tensor(ss_baseline(seq, BaselineContext()), dtype=torch.float32)[None]
    searched = tm_score(ss[0].numpy(), native[0].numpy(), mask[0].numpy())
    assert 0.5 * searched < float(soft_tm(ss, native, mask)) <= searched + 1e-5


def test_fape_is_zero_for_a_rigid_motion_and_sees_a_moved_helix(batch: dict) -> None:
    native, mask = batch["coords"], batch["coord_mask"]
    moved = native @ random_rotations(1, generator=torch.Generator().manual_seed(0))[0] + 7.0
    assert float(fape(moved, native, mask)) == pytest.approx(0.0, abs=1e-3)
    _, valid = residue_frames(native, mask)
    assert not valid[0, 0] and not valid[0, -1] and int(valid.sum()) >= int(mask.sum()) - 4
    swung = native.clone()  # the acceptor stem and the rest of the tRNA as they are, the 3' tail swung by 90 degrees
    hinge = swung[0, 65]
    rot = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    swung[0, 66:] = (swung[0, 66:] - hinge) @ rot + hinge
    seq = "".join("ACGUN"[i] for i in batch["seq"][0].tolist())
    ss = torch.as_tensor(ss_baseline(seq, BaselineContext()), dtype=torch.float32)[None]
    assert 0.0 < float(fape(swung, native, mask)) < float(fape(ss, native, mask)) <= FAPE_CLAMP / FAPE_SCALE


@pytest.mark.parametrize(("weights", "term"), [(ROLLOUT_ONLY, "rollout"), (FAPE_ONLY, "fape")])
def test_gradients_flow_through_the_rollout_and_training_on_its_loss_improves_it(
    batch: dict, weights: LossConfig, term: str
) -> None:
    """The rollout's 1 - TM-score falls (its TM-score rises), and so does its FAPE, each trained alone."""
    net = _tiny_module().net
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)  # 1e-2 overshoots after a few steps and falls back
    losses = []
    for step in range(15):
        parts = compute_losses(net, batch, net(batch), weights, generator=torch.Generator().manual_seed(0))
        assert set(parts) == {term, "loss"}
        optimiser.zero_grad()
        parts["loss"].backward()
        if step == 0:  # the untrained denoiser returns its prior: the gradient reaches its output layer and skip gate
            for p in (net.generator.out.weight, net.generator.skip_gate):
                assert p.grad is not None and torch.isfinite(p.grad).all() and float(p.grad.abs().sum()) > 0
        optimiser.step()
        losses.append(float(parts["loss"].detach()))
    assert losses[-1] < losses[0] - 0.01, losses
    assert any(float(p.grad.abs().sum()) > 0 for p in net.trunk.parameters() if p.grad is not None)


def test_a_negative_loss_weight_or_a_rollout_without_steps_is_a_config_error() -> None:
    from omegaconf import OmegaConf

    from rna_hpc.config.validate import loss_settings

    cfg = OmegaConf.create({"loss": {"diffusion": 1.0, "lddt": -0.5, "rollout": 1.0, "rollout_steps": 0}})
    assert loss_settings(cfg) == ["loss.lddt: must be >= 0, is -0.5", "loss.rollout_steps: must be >= 1, is 0"]
    assert loss_settings(OmegaConf.create({"loss": {"diffusion": 1.0, "rollout_steps": 3}})) == []
