"""One trial job with a real Lightning fit and OptunaPruningCallback: ``python lightning_trial.py STORAGE STUDY N D``.

A 2-parameter linear regression trains for up to 6 epochs on ``D`` CPU devices (D > 1: DDP over gloo; Lightning
re-runs this script for the other ranks). Each rank prints ``rank R stopped epoch E pruned P`` at the end.
"""

from __future__ import annotations

import sys

import pytorch_lightning as pl
import torch

from rna_hpc.hpo.pruning import OptunaPruningCallback


class Regression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def _loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._loss(batch)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.log("val/loss", self._loss(batch), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def loader() -> torch.utils.data.DataLoader:
    x = torch.linspace(-1, 1, 32).unsqueeze(1)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, 3 * x + 1), batch_size=8)


def main() -> None:
    storage, study, number, devices = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    trial = {"study_name": study, "storage": storage, "number": number, "stage": 0}
    callback = OptunaPruningCallback(trial, monitor="val/loss")
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        max_epochs=6,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(Regression(), train_dataloaders=loader(), val_dataloaders=loader())
    line = f"rank {trainer.global_rank} stopped epoch {trainer.current_epoch} pruned {callback.pruned}\n"
    sys.stdout.write(line)  # one write per rank: the ranks share the pipe
    sys.stdout.flush()


if __name__ == "__main__":
    main()
