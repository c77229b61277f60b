"""A resumed fit keeps the learning curve of its earlier attempts in ``metrics.csv`` (Lightning's CSV writer deletes
the file it finds), up to the resumed checkpoint's step; a fresh fit in the same dir starts a new curve."""

from __future__ import annotations

import shutil
import warnings
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


class ValidatedSteps(Steps):
    def validation_step(self, batch, batch_idx):
        self.log("val/loss", nn.functional.mse_loss(self.net(batch[0]), batch[1]))


def _fit(
    run_dir: Path,
    max_steps: int,
    ckpt_path: Path | None = None,
    earlier: Path | None = None,
    every_n_steps: int = 2,
    validate: bool = False,
) -> pl.Trainer:
    logger = CSVLogger(save_dir=run_dir, name="csv", version="", earlier=str(earlier) if earlier else None)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        logger=logger,
        log_every_n_steps=1,
        enable_checkpointing=True,  # PeriodicCheckpoint is a checkpoint callback
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[PeriodicCheckpoint(run_dir / "ckpt", every_n_steps=every_n_steps, keep=10), KeepEarlierCurve()],
        num_sanity_val_steps=0,
        limit_val_batches=1,
    )
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)  # 8 steps an epoch
    model, val = (ValidatedSteps(), loader) if validate else (Steps(), None)
    trainer.fit(model, train_dataloaders=loader, val_dataloaders=val, ckpt_path=ckpt_path)
    return trainer


def _steps(path: Path) -> list[int]:
    return [step for step, values in read_rows(path) if "train/step_seen" in values]


def test_a_resumed_fit_keeps_the_rows_up_to_its_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _fit(run, max_steps=7)
    metrics = run / "csv" / "metrics.csv"
    assert _steps(metrics) == list(range(7))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(run, max_steps=12, ckpt_path=run / "ckpt" / "step-4.ckpt")
    assert not [w for w in caught if "will be deleted" in str(w.message)]  # they are not: they are kept
    # the first attempt's rows of the 4 steps the checkpoint holds (logged at steps 0-3) are kept, the resumed
    # attempt logs the steps it trains again: one row each
    assert _steps(metrics) == list(range(12))
    epochs = [values["epoch"] for _, values in read_rows(metrics) if "epoch" in values]
    assert epochs[-1] == 1.0


def test_a_fit_resumed_after_an_epochs_validation_logs_each_step_and_validation_once(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _fit(run, max_steps=12, every_n_steps=8, validate=True)  # step-8.ckpt is saved after epoch 0's validation
    _fit(run, max_steps=16, ckpt_path=run / "ckpt" / "step-8.ckpt", every_n_steps=8, validate=True)
    rows = read_rows(run / "csv" / "metrics.csv")
    assert [values["train/step_seen"] for _, values in rows if "train/step_seen" in values] == list(range(16))
    assert [values["epoch"] for _, values in rows if "val/loss" in values] == [0.0, 1.0]
    steps = [step for step, values in rows if "train/step_seen" in values]
    assert steps == sorted(set(steps))  # (Lightning numbers the rows after such a resume from 9: 8 is left out)


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
