"""Training throughput (samples/s) and peak GPU memory of one model config in one precision, on one GPU.

    python benchmarks/gpu_throughput.py --precision bf16-mixed --steps 40 [--model base] [override ...]

Composes ``conf/train.yaml`` with ``trainer=gpu`` and the overrides, builds the project's datamodule and module,
and fits ``--warmup`` + ``--steps`` optimizer steps; samples/s counts the steps after the warm-up only.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import REPO

CONF = REPO / "conf"


def compose_train(overrides: list[str]):  # noqa: ANN201 - DictConfig
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def measure(overrides: list[str], precision: str, warmup: int, steps: int) -> dict:
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate

    from rna_hpc.job.run import build_module

    cfg = compose_train(["trainer=gpu", f"trainer.precision={precision}", *overrides])

    class Clock(pl.Callback):
        def __init__(self) -> None:
            self.samples, self.start = 0, None

        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:  # noqa: ANN001
            if trainer.global_step == warmup and self.start is None:
                torch.cuda.synchronize()
                self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
            if self.start is not None:
                self.samples += int(batch["seq"].shape[0])

    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data, seed=cfg.seed, _convert_="object")
    clock = Clock()
    trainer = pl.Trainer(
        accelerator="gpu",
        devices=1,
        precision=precision,
        max_steps=warmup + steps,
        max_epochs=-1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        use_distributed_sampler=False,
        callbacks=[clock],
    )
    torch.cuda.reset_peak_memory_stats()
    trainer.fit(build_module(cfg), datamodule=datamodule)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - (clock.start or time.perf_counter())
    return {
        "precision": precision,
        "model": cfg.model.name,
        "steps": steps,
        "samples_per_s": round(clock.samples / seconds, 2) if seconds > 0 else None,
        "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
        "gpu": torch.cuda.get_device_name(0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--model", default="base")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--record", type=Path, help="append the figures as one JSON line to this file")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    result = measure([f"model={args.model}", *args.overrides], args.precision, args.warmup, args.steps)
    print(
        f"train {result['model']} {result['precision']:>10}: {result['samples_per_s']} samples/s, "
        f"peak GPU memory {result['peak_gpu_mem_gib']} GiB ({result['steps']} steps on {result['gpu']})",
        flush=True,
    )
    if args.record:
        with open(args.record, "a") as fh:
            fh.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
