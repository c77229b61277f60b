"""Training the model: gradient flow, overfitting, Lightning checkpoints (full and LoRA), predict from a checkpoint."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from batches import make_batch
from torch.utils.data import DataLoader

from rna_hpc.checkpoint.model_state import restore_weights
from rna_hpc.checkpoint.partial_load import load_checkpoint_file
from rna_hpc.errors import CheckpointError
from rna_hpc.model.build import build_module_from_checkpoint
from rna_hpc.model.module import RNA3DModule, sample_scores

TINY = {
    "name": "tiny",
    "trunk": {"c_s": 32, "c_z": 16, "n_blocks": 2, "n_heads": 4},
    "merger": {"single_in": 36, "c_cond": 32},
    "generator": {"c_a": 32, "n_blocks": 1, "n_heads": 4, "n_steps": 4, "n_samples": 2},
}
LORA = {"enabled": True, "r": 4, "alpha": 8, "trainable": ["merger", "heads", "generator"]}
OPTIM = {
    "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 3e-3, "weight_decay": 0.01},
    "warmup_steps": 2,
    "min_lr_ratio": 0.1,
}


BATCHES = [make_batch([16, 12], 0), make_batch([14, 10], 1)]


def trainer(root: Path, epochs: int) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )


def loader() -> DataLoader:
    return DataLoader(BATCHES, batch_size=None)


def two_steps(net: torch.nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """Two AdamW steps on the trainable parameters; returns the gradients of the second backward."""
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(2):
        opt.zero_grad()
        net.loss(batch, net(batch), {})["loss"].backward()
        grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
        opt.step()
    return grads


def test_every_trainable_parameter_gets_a_gradient_and_moves() -> None:
    torch.manual_seed(0)
    net = RNA3DModule(model=TINY).net
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    grads = two_steps(net, BATCHES[0])
    for name, p in net.named_parameters():
        assert name in grads and grads[name].abs().sum() > 0, f"no gradient reaches {name}"
        assert not torch.equal(p, before[name]), f"{name} did not change"


def test_lora_trains_adapters_and_stages_and_leaves_the_base_bit_identical() -> None:
    torch.manual_seed(0)
    net = RNA3DModule(model=TINY, lora=LORA).net
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    grads = two_steps(net, BATCHES[0])
    frozen = [n for n, p in net.named_parameters() if not p.requires_grad]
    assert any(n.endswith("q_proj.base_layer.weight") for n in frozen) and len(frozen) > 20
    for name, p in net.named_parameters():
        if p.requires_grad:
            assert grads[name].abs().sum() > 0 and not torch.equal(p, before[name]), name
        else:
            assert p.grad is None and torch.equal(p, before[name]), name


def test_two_targets_are_overfitted() -> None:
    torch.manual_seed(0)
    net = RNA3DModule(model=TINY).net
    batch = make_batch([18, 14], seed=7)

    def held_out_loss() -> dict[str, float]:
        with torch.no_grad():
            parts = net.loss(batch, net(batch), {}, generator=torch.Generator().manual_seed(0))
        return {k: float(v) for k, v in parts.items()}

    start = held_out_loss()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    for _ in range(60):
        opt.zero_grad()
        net.loss(batch, net(batch), {})["loss"].backward()
        opt.step()
    end = held_out_loss()
    assert end["loss"] < 0.5 * start["loss"], (start, end)
    assert end["distogram"] < 0.5 * start["distogram"] and end["torsion"] < 0.5 * start["torsion"], (start, end)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> tuple[RNA3DModule, Path]:
    root = tmp_path_factory.mktemp("pretrain")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    module = RNA3DModule(model=TINY, lora={"enabled": False}, loss={}, optim=OPTIM)
    fit = trainer(root, epochs=2)
    fit.fit(module, train_dataloaders=loader(), val_dataloaders=loader())
    assert {"val/tm", "val/rmsd", "val/loss", "val/tm_prior", "train/loss"} <= set(fit.callback_metrics)
    optimized = {id(p) for group in fit.optimizers[0].param_groups for p in group["params"]}
    assert optimized == {id(p) for p in module.parameters() if p.requires_grad}
    path = root / "full.ckpt"
    fit.save_checkpoint(path, weights_only=False)
    return module, path


def same_predictions(a: RNA3DModule, b: RNA3DModule) -> None:
    out = [m.eval().predict_coords(BATCHES[0], 2, torch.Generator().manual_seed(3)) for m in (a, b)]
    torch.testing.assert_close(out[0], out[1])


def test_a_checkpoint_loads_weights_only_and_predicts_like_the_trained_module(pretrained) -> None:
    module, path = pretrained
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["rna_hpc"]["model"]["trunk"]["c_s"] == 32 and ckpt["rna_hpc"]["lora"]["enabled"] is False
    assert set(ckpt["rna_hpc"]["trainable_keys"]) == set(ckpt["state_dict"])
    assert ckpt["hyper_parameters"]["optim"]["warmup_steps"] == 2 and "optimizer_states" in ckpt
    rebuilt = build_module_from_checkpoint(path)
    same_predictions(module, rebuilt)
    assert rebuilt.predict_coords(BATCHES[1]).shape == (2, 2, 14, 3)


def test_lora_fine_tune_from_the_base_checkpoint(pretrained, tmp_path: Path) -> None:
    base_module, base_path = pretrained
    model = TINY | {"init_from": str(base_path)}
    module = RNA3DModule(model=model, lora=LORA, loss={}, optim=OPTIM)
    base_q = base_module.net.trunk.blocks[0].attn.q_proj.weight
    assert torch.equal(module.net.trunk.blocks[0].attn.q_proj.base_layer.weight, base_q)
    fit = trainer(tmp_path, epochs=1)
    fit.fit(module, train_dataloaders=loader(), val_dataloaders=loader())
    path = tmp_path / "lora.ckpt"
    fit.save_checkpoint(path, weights_only=False)

    ckpt = load_checkpoint_file(path)
    assert set(ckpt["state_dict"]) == set(ckpt["rna_hpc"]["trainable_keys"])
    assert not any("base_layer" in k or k.startswith("net.embedding.") for k in ckpt["state_dict"])
    assert path.stat().st_size < 0.5 * base_path.stat().st_size
    same_predictions(module, build_module_from_checkpoint(path))

    resumed = RNA3DModule(model=model, lora=LORA, loss={}, optim=OPTIM)
    again = trainer(tmp_path, epochs=2)
    again.fit(resumed, train_dataloaders=loader(), val_dataloaders=loader(), ckpt_path=path, weights_only=True)
    assert again.global_step == 4


def test_lora_adapters_refuse_another_base(pretrained, tmp_path: Path) -> None:
    _, base_path = pretrained
    module = RNA3DModule(model=TINY | {"init_from": str(base_path)}, lora=LORA)
    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(ckpt)
    other = load_checkpoint_file(base_path)
    other["state_dict"]["net.trunk.blocks.0.attn.q_proj.weight"] += 0.01
    other_path = tmp_path / "other_base.ckpt"
    torch.save(other, other_path)
    on_other = RNA3DModule(model=TINY | {"init_from": str(other_path)}, lora=LORA)
    with pytest.raises(CheckpointError, match="frozen base weights differ"):
        restore_weights(on_other, ckpt)
    with pytest.raises(CheckpointError, match="lora.enabled=True, but the model has lora.enabled=False"):
        restore_weights(RNA3DModule(model=TINY), ckpt)
    path = tmp_path / "adapters.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="holds LoRA weights only"):
        RNA3DModule(model=TINY | {"init_from": str(path)}, lora=LORA)


def real_targets(rna3d_dir: Path, n: int, max_length: int) -> list[tuple[str, str, np.ndarray]]:
    """The first ``n`` train targets of at most ``max_length`` residues: (id, sequence, C1' coordinates)."""
    with open(rna3d_dir / "train_sequences.csv", newline="") as fh:
        wanted = {r["target_id"]: r["sequence"] for r in csv.DictReader(fh) if len(r["sequence"]) <= max_length}
    wanted = dict(list(wanted.items())[:n])
    coords: dict[str, list] = {t: [] for t in wanted}
    with open(rna3d_dir / "train_labels.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            target = row["ID"].rsplit("_", 1)[0]
            if target in coords:
                coords[target].append([float(row[k]) for k in ("x_1", "y_1", "z_1")])
    return [(t, s, np.array(coords[t])) for t, s in wanted.items()]


def real_batch(targets: list[tuple[str, str, np.ndarray]]) -> dict:
    import RNA

    batch = make_batch([len(s) for _, s, _ in targets])
    batch["target_id"] = [t for t, _, _ in targets]
    for i, (_, seq, xyz) in enumerate(targets):
        n = len(seq)
        batch["seq"][i, :n] = torch.tensor(["ACGU".index(c) for c in seq])
        batch["coords"][i, :n] = torch.tensor(xyz, dtype=torch.float32)
        batch["pair_feats"][i] = 0.0
        table = RNA.ptable(RNA.fold(seq)[0])
        for a in range(n):
            if table[a + 1] > 0:
                batch["pair_feats"][i, a, table[a + 1] - 1] = 1.0
    return batch


def test_real_structures_train_and_score(rna3d_dir: Path) -> None:
    batch = real_batch(real_targets(rna3d_dir, n=2, max_length=40))
    module = RNA3DModule(model=TINY)
    parts = module.net.loss(batch, module.net(batch), {})
    assert all(torch.isfinite(v) for v in parts.values())
    parts["loss"].backward()
    samples = module.predict_coords(batch, 2)
    prior, _ = module.net.prior_for(batch)
    scores = sample_scores(samples, prior, batch["coords"], batch["coord_mask"])
    assert len(scores["tm"]) == 2 and all(0.0 < tm <= 1.0 for tm in scores["tm"] + scores["tm_prior"])
    assert scores["tm"] == pytest.approx(scores["tm_prior"], abs=1e-3)  # untrained: the sample is the prior


def test_predictions_can_carry_the_prior_as_the_last_candidate() -> None:
    module = RNA3DModule(model=TINY).eval()
    prior, _ = module.net.prior_for(BATCHES[0])
    for n in (1, 3):
        coords = module.predict_coords(BATCHES[0], n, include_prior=True)
        assert coords.shape == (2, n, 16, 3)
        torch.testing.assert_close(coords[:, -1], prior)


def test_ema_weights_validate_fill_the_checkpoint_and_keep_lora_checkpoints_trainable_only(
    pretrained, tmp_path: Path
) -> None:
    _, base_path = pretrained
    model = TINY | {"init_from": str(base_path)}
    module = RNA3DModule(model=model, lora=LORA, loss={}, optim=OPTIM | {"ema_decay": 0.5})
    fit = trainer(tmp_path, epochs=2)
    fit.fit(module, train_dataloaders=loader(), val_dataloaders=loader())
    assert "val/tm" in fit.callback_metrics
    path = tmp_path / "ema.ckpt"
    fit.save_checkpoint(path, weights_only=False)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state, trained = ckpt["state_dict"], ckpt["rna_hpc"]["trained"]
    assert set(trained) == set(state) == set(ckpt["rna_hpc"]["trainable_keys"])  # adapters and saved stages only
    params = dict(module.named_parameters())
    for name in state:
        torch.testing.assert_close(state[name], module._ema[name])  # the checkpoint holds the average
        torch.testing.assert_close(trained[name], params[name].detach())  # and the trained weights beside it
    assert any(not torch.equal(state[n], trained[n]) for n in state)
    rebuilt = dict(build_module_from_checkpoint(path).named_parameters())
    for name in state:
        torch.testing.assert_close(rebuilt[name].detach(), state[name])  # prediction samples from the average

    resumed = RNA3DModule(model=model, lora=LORA, loss={}, optim=OPTIM | {"ema_decay": 0.5})
    again = trainer(tmp_path, epochs=3)
    again.fit(resumed, train_dataloaders=loader(), val_dataloaders=loader(), ckpt_path=path, weights_only=True)
    assert again.global_step == 6 and set(resumed._ema) == set(state)
