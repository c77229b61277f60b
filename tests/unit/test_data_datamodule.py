"""RNADataModule: built from the config with instantiate, batches per the contract, reshuffled every epoch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from rna_hpc.config.schema import DataConfig
from rna_hpc.errors import ConfigError


def test_datamodule_from_config(tmp_path: Path) -> None:
    cfg = OmegaConf.merge(
        OmegaConf.structured(DataConfig),
        {"cache_dir": str(tmp_path), "fraction": 0.5, "batch_size": 3, "featurizer": {"workers": 1}},
        {"synthetic": {"n_targets": 12, "min_length": 12, "max_length": 24}},
    )
    dm = instantiate(cfg, seed=1, split_seed=1)
    dm.setup("fit")
    assert len(dm.train_samples()) == round(len(dm.data.train) * 0.5)
    batch = next(iter(dm.train_dataloader()))
    n, width = len(batch["target_id"]), int(batch["length"].max())
    assert n <= 3 and batch["seq"].shape == (n, width) and batch["pair_feats"].shape == (n, width, width, 2)
    assert set(batch) == {"target_id", "seq", "mask", "coords", "coord_mask", "pair_feats", "residue_index", "length"}
    assert sum(len(b["target_id"]) for b in dm.val_dataloader()) == len(dm.data.val)
    (item,) = dm.predict_samples([("q", "GGGAAACCC")])
    assert item["pair_feats"].shape == (9, 9, 2) and not item["coord_mask"].any()


def test_datamodule_rejects_unknown_keys() -> None:
    from rna_hpc.data.datamodule import RNADataModule

    with pytest.raises(ConfigError, match=r"data\.batchsize: unknown key \(valid: "):
        RNADataModule(batchsize=3)


def test_lightning_reshuffles_every_epoch(tmp_path: Path) -> None:
    import pytorch_lightning as pl

    from rna_hpc.data.datamodule import RNADataModule

    class Recorder(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.seen: dict[int, list[str]] = {}

        def training_step(self, batch: dict, index: int) -> torch.Tensor:
            self.seen.setdefault(self.current_epoch, []).extend(batch["target_id"])
            return (self.w * batch["pair_feats"].sum()).sum()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.0)

    dm = RNADataModule(seed=0, cache_dir=str(tmp_path), split_seed=0, batch_size=2, synthetic={"n_targets": 10})
    model = Recorder()
    flags = {
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    pl.Trainer(max_epochs=2, accelerator="cpu", use_distributed_sampler=False, **flags).fit(model, datamodule=dm)
    assert sorted(model.seen[0]) == sorted(model.seen[1]) == sorted(s["target_id"] for s in dm.data.train)
    assert model.seen[0] != model.seen[1]  # set_epoch reached the sampler


def test_resumed_fit_goes_on_with_the_next_batch_of_the_epoch(tmp_path: Path) -> None:
    """Also when ``configure_optimizers`` asks for ``estimated_stepping_batches`` (as RNA3DModule does), which makes
    Lightning build the train loader before it restores the checkpoint's loop state."""
    import pytorch_lightning as pl

    from rna_hpc.checkpoint.lightning_io import AtomicCheckpointIO
    from rna_hpc.data.datamodule import RNADataModule
    from rna_hpc.job.callbacks import PeriodicCheckpoint

    class Recorder(pl.LightningModule):
        def __init__(self, stop_at: int | None = None) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.seen: list[tuple[int, list[str]]] = []
            self.stop_at = stop_at

        def training_step(self, batch: dict, index: int) -> torch.Tensor:
            if self.global_step == self.stop_at:
                raise RuntimeError("interrupted")
            self.seen.append((self.current_epoch, batch["target_id"]))
            return (self.w * batch["pair_feats"].sum()).sum()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            assert self.trainer.estimated_stepping_batches == 10
            return torch.optim.SGD(self.parameters(), lr=0.0)

    def fit(model: Recorder, run: str, ckpt_path: Path | None = None) -> Recorder:
        dm = RNADataModule(seed=0, cache_dir=str(tmp_path), split_seed=0, batch_size=2, synthetic={"n_targets": 12})
        saver = PeriodicCheckpoint(tmp_path / run, every_n_steps=3)
        flags = {"logger": False, "enable_checkpointing": True, "enable_progress_bar": False}
        trainer = pl.Trainer(max_epochs=2, use_distributed_sampler=False, callbacks=[saver], **flags)
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
        return model

    uninterrupted = fit(Recorder(), "a").seen
    assert len(uninterrupted) == 10  # 5 batches per epoch
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(Recorder(stop_at=4), "b")
    resumed = fit(Recorder(), "b", ckpt_path=tmp_path / "b" / "step-3.ckpt").seen
    assert resumed == uninterrupted[3:]  # batches 4 and 5 of epoch 0, then epoch 1 in its own order
