"""Progress for Slurm log files: plain periodic lines (step, loss, samples/s, ETA) instead of carriage returns.

Lightning's progress bar redraws one line with carriage returns, which turns a log file into one huge line; when
stderr is not a terminal the trainer uses this callback instead. After each validation it adds one line with the
validation metrics.
"""

from __future__ import annotations

import logging
import time

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

log = logging.getLogger("rna_hpc.progress")


def _eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _scalar(value: object) -> bool:
    numel = getattr(value, "numel", None)
    return numel is None or numel() == 1


class PlainProgress(Callback):
    """Every ``every_n_steps`` optimizer steps, log one line on rank 0; used when stderr is not a terminal."""

    def __init__(self, every_n_steps: int = 10) -> None:
        self.every_n_steps = max(1, every_n_steps)
        self._t0 = 0.0
        self._step0 = 0
        self._samples = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0, self._step0, self._samples = time.monotonic(), trainer.global_step, 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:  # noqa: ANN001
        self._samples += len(batch["target_id"]) * trainer.world_size
        step = trainer.global_step
        if not trainer.is_global_zero or step == self._step0 or step % self.every_n_steps:
            return
        elapsed = time.monotonic() - self._t0
        done = step - self._step0
        total = trainer.estimated_stepping_batches
        eta = elapsed / done * (total - step) if done and total != float("inf") else 0.0
        loss = trainer.callback_metrics.get("train/loss")
        loss_txt = f"{float(loss):.4f}" if loss is not None else "n/a"
        log.info(
            "epoch %d step %d/%s loss %s %.1f samples/s eta %s",
            trainer.current_epoch,
            step,
            int(total) if total != float("inf") else "?",
            loss_txt,
            self._samples / max(elapsed, 1e-9),
            _eta(eta),
        )

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/") and _scalar(v)}
        text = " ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())) or "no metrics"
        elapsed = time.monotonic() - self._t0 if self._t0 else 0.0
        log.info("epoch %d validation: %s (elapsed %s)", trainer.current_epoch, text, _eta(elapsed))
