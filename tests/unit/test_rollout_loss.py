"""The rollout loss on a real chain: its TM-score is the metric's, gradients reach the network through the sampler,
and training on it alone lifts the TM-score of what the sampler rolls out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rna_hpc.config.schema import LossConfig
from rna_hpc.evaluation.baselines import BaselineContext, ss_baseline
from rna_hpc.evaluation.metrics import tm_score
from rna_hpc.model.coords import random_rotations
from rna_hpc.model.losses import compute_losses, soft_tm

TARGET = "1EIY_C"  # a 76-nt tRNA of the train split
ROLLOUT_ONLY = LossConfig(diffusion=0.0, distogram=0.0, torsion=0.0, lddt=0.0, rollout=1.0, rollout_steps=3)


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


def test_rollout_gradients_flow_and_training_on_it_lifts_the_rolled_out_tm(batch: dict) -> None:
    net = _tiny_module().net
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)  # 1e-2 overshoots after a few steps and falls back
    scores = []
    for step in range(15):
        parts = compute_losses(net, batch, net(batch), ROLLOUT_ONLY, generator=torch.Generator().manual_seed(0))
        assert set(parts) == {"rollout", "loss"}
        optimiser.zero_grad()
        parts["loss"].backward()
        if step == 0:  # the untrained denoiser returns its prior: the gradient reaches its output layer and skip gate
            for p in (net.generator.out.weight, net.generator.skip_gate):
                assert p.grad is not None and torch.isfinite(p.grad).all() and float(p.grad.abs().sum()) > 0
        optimiser.step()
        scores.append(1.0 - float(parts["loss"].detach()))
    assert scores[-1] > scores[0] + 0.01, scores
    assert any(float(p.grad.abs().sum()) > 0 for p in net.trunk.parameters() if p.grad is not None)


def test_a_negative_loss_weight_or_a_rollout_without_steps_is_a_config_error() -> None:
    from omegaconf import OmegaConf

    from rna_hpc.config.validate import loss_settings

    cfg = OmegaConf.create({"loss": {"diffusion": 1.0, "lddt": -0.5, "rollout": 1.0, "rollout_steps": 0}})
    assert loss_settings(cfg) == ["loss.lddt: must be >= 0, is -0.5", "loss.rollout_steps: must be >= 1, is 0"]
    assert loss_settings(OmegaConf.create({"loss": {"diffusion": 1.0, "rollout_steps": 3}})) == []
