"""A resumed fit keeps the learning curve of its earlier attempts in ``metrics.csv`` (Lightning's CSV writer deletes
the file it finds), up to the resumed checkpoint's step; a fresh fit in the same dir starts a new curve."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rna_hpc.job.callbacks import KeepEarlierCurve, PeriodicCheckpoint
from rna_hpc.loggers.metrics_csv import read_rows
from rna_hpc.loggers.resumable_csv import CSVLogger


class Steps(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        loss = nn.functional.mse_loss(self.net(batch[0]), batch[1])
        self.log("train/loss", loss)
        self.log("train/step_seen", float(self.global_step))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(run_dir: Path, max_steps: int, ckpt_path: Path | None = None, earlier: Path | None = None) -> pl.Trainer:
    logger = CSVLogger(save_dir=run_dir, name="csv", version="", earlier=str(earlier) if earlier else None)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        logger=logger,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[PeriodicCheckpoint(run_dir / "ckpt", every_n_steps=2, keep=10), KeepEarlierCurve()],
    )
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)  # 8 steps an epoch
    trainer.fit(Steps(), train_dataloaders=loader, ckpt_path=ckpt_path)
    return trainer


def _steps(path: Path) -> list[int]:
    return [step for step, values in read_rows(path) if "train/step_seen" in values]


def test_a_resumed_fit_keeps_the_rows_up_to_its_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _fit(run, max_steps=7)
    metrics = run / "csv" / "metrics.csv"
    assert _steps(metrics) == list(range(7))
    _fit(run, max_steps=12, ckpt_path=run / "ckpt" / "step-4.ckpt")
    # rows up to the checkpoint's step are kept (a validation there is not done again); the resumed attempt logs
    # from that step on: with a row every step, the one at step 4 twice, the rows after it once
    assert _steps(metrics) == list(range(5)) + list(range(4, 12))
    epochs = [values["epoch"] for _, values in read_rows(metrics) if "epoch" in values]
    assert epochs[-1] == 1.0


def test_a_job_requeued_after_its_last_step_keeps_its_whole_curve(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _fit(run, max_steps=6)
    _fit(run, max_steps=6, ckpt_path=run / "ckpt" / "last.ckpt")  # nothing left to train
    assert _steps(run / "csv" / "metrics.csv") == list(range(6))


def test_a_wiped_scratch_dir_takes_the_curve_from_the_shared_copy(tmp_path: Path) -> None:
    run, shared = tmp_path / "run", tmp_path / "shared" / "metrics.csv"
    _fit(run, max_steps=6)
    shared.parent.mkdir()
    shutil.copy(run / "csv" / "metrics.csv", shared)
    (run / "csv" / "metrics.csv").unlink()
    _fit(run, max_steps=8, ckpt_path=run / "ckpt" / "step-6.ckpt", earlier=shared)
    assert _steps(run / "csv" / "metrics.csv") == list(range(8))


def test_a_fresh_fit_in_the_same_dir_starts_a_new_curve(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _fit(run, max_steps=6)
    _fit(run, max_steps=3)
    assert _steps(run / "csv" / "metrics.csv") == list(range(3))
