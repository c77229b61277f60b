"""Data-loading time per training step vs model time per step, on the shared dataset with a warm feature cache.

A real Lightning fit on the real training split: the time between one batch's end and the next batch's start is
the loader (fetch + collate + transfer), the time inside the batch hooks is the model (forward, losses, backward,
optimizer step). The cache is built first, untimed, as every job after the first finds it.

    python benchmarks/data_loading.py                       # model=base and model=tiny, 30 timed steps each
    python benchmarks/data_loading.py --models tiny --steps 10 --num-workers 1

The data folder defaults to $RNA_HPC_DATA, else ../shared/data/rna3d next to the repository.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from common import default_data_dir
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from rna_hpc.config import CONFIG_DIR
from rna_hpc.job.run import build_module

WARMUP = 3  # steps excluded from the figures (first batches pay allocator and worker start-up)


class StepTimer(pl.Callback):
    """Splits each training step into loader time (previous batch end -> batch start) and model time."""

    def __init__(self) -> None:
        self.data: list[float] = []
        self.model: list[float] = []
        self._end: float | None = None
        self._start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._end = time.perf_counter()

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch, batch_idx: int) -> None:
        self._start = time.perf_counter()
        if self._end is not None:
            self.data.append(self._start - self._end)

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs, batch, idx: int) -> None:
        self._end = time.perf_counter()
        self.model.append(self._end - self._start)


def measure(model: str, data_dir: Path, cache_dir: Path, steps: int, num_workers: int) -> tuple[float, float]:
    """Median loader and model seconds per step for ``model`` over ``steps`` timed steps."""
    overrides = [
        "data=rna3d",
        f"data.dir={data_dir}",
        f"data.cache_dir={cache_dir}",
        f"data.num_workers={num_workers}",
        f"model={model}",
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data, seed=cfg.seed, _convert_="object")
    datamodule.prepare_data()  # the warm cache every job but the first finds
    timer = StepTimer()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=WARMUP + steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(build_module(cfg), datamodule=datamodule)
    return statistics.median(timer.data[WARMUP:]), statistics.median(timer.model[WARMUP:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--models", default="base,tiny", help="comma-separated model configs")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--num-workers", type=int, default=0, help="data.num_workers (0: load in the main process)")
    args = parser.parse_args()
    print(f"dataset: {args.data_dir}; torch threads {torch.get_num_threads()}; data.num_workers {args.num_workers}")
    print(f"{'model':6} {'loader ms/step':>15} {'model ms/step':>14} {'loader share':>13}")
    with tempfile.TemporaryDirectory(prefix="rna_hpc_bench_") as tmp:
        for model in args.models.split(","):
            data_s, model_s = measure(model, args.data_dir, Path(tmp) / "cache", args.steps, args.num_workers)
            share = data_s / (data_s + model_s)
            print(f"{model:6} {data_s * 1e3:15.2f} {model_s * 1e3:14.1f} {share:12.2%}")


if __name__ == "__main__":
    main()
