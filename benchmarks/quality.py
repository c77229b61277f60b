"""Model quality on the real validation split after a wall-clock training budget, beside the baselines.

    python benchmarks/quality.py --minutes 30 [--threads 2] [hydra overrides ...]

Trains ``model=base`` on the train split of the Kaggle-layout folder (default ``../shared/data/rna3d``) for
``--minutes`` of wall clock (validation included), keeps the checkpoint with the best ``val/tm``, predicts the
validation sequences and scores them with `rna_hpc.evaluate`. Two submissions are scored: the model's diffusion
samples alone, and the ranked pool of ``--candidates`` (model samples, secondary-structure prior, templates).
Prints mean best-of-5 TM-score / RMSD beside the helix, secondary-structure and template baselines, with the budget
and the config; writes ``quality.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from common import REPO, default_data_dir

TRAIN_DEFAULTS = ["data=rna3d", "model=base", "trainer.enable_progress_bar=false"]
CANDIDATES = "model,model_template,ss_model,template"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0, help="training wall-clock budget (30: target, 15: figure)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument(
        "--epochs-per-minute",
        type=float,
        default=1.2,
        help="sets trainer.max_epochs = minutes x this, the length of the LR schedule (1.2: measured on 2 cores; "
        "on a slower machine the wall clock ends the run first)",
    )
    p.add_argument("--data-dir", default=str(default_data_dir()), help="Kaggle-layout folder")
    p.add_argument("--out", default=str(REPO / "outputs" / "benchmarks" / "quality"), help="output folder")
    p.add_argument("--candidates", default=CANDIDATES, help="sources of the ranked submission (comma-separated)")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides of the training config")
    return p.parse_args(argv)


def compose(config: str, overrides: list[str]) -> Any:
    """A composed and resolved-on-access config, as the entry point would see it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from rna_hpc.config import CONFIG_DIR, register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = hydra_compose(config, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def train(cfg: Any, minutes: float, out: Path) -> dict[str, Any]:
    """Fit for ``minutes`` of wall clock; the best checkpoint by ``val/tm`` and what the run did."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger

    from rna_hpc.checkpoint.lightning_io import AtomicCheckpointIO
    from rna_hpc.job.run import build_module

    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data, seed=cfg.seed, _convert_="object")
    module = build_module(cfg)
    best = ModelCheckpoint(dirpath=out / "ckpt", filename="best", monitor="val/tm", mode="max", save_last=True)
    t = cfg.trainer
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_time={"seconds": int(minutes * 60)},
        max_epochs=t.max_epochs,
        gradient_clip_val=t.gradient_clip_val,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        val_check_interval=t.val_check_interval,
        log_every_n_steps=t.log_every_n_steps,
        num_sanity_val_steps=0,
        logger=CSVLogger(str(out), name="train"),
        callbacks=[best],
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=False,
        use_distributed_sampler=False,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    return {
        "seconds": round(time.perf_counter() - start, 1),
        "steps": int(trainer.global_step),
        "epochs": int(trainer.current_epoch),
        "stopped_by": "time" if trainer.current_epoch < cfg.trainer.max_epochs else "max_epochs",
        "best_val_tm": float(best.best_model_score) if best.best_model_score is not None else None,
        "best_ckpt": best.best_model_path,
        "last_val": metrics,
    }


def predict_and_score(ckpt: str, data_dir: str, candidates: str, out: Path) -> dict[str, Any]:
    """Predict the validation sequences from ``ckpt`` with ``candidates`` and score them (mean best-of-5)."""
    from rna_hpc.config import validate as check_predict_config  # noqa: F401
    from rna_hpc.evaluate import evaluate
    from rna_hpc.job.predict import predict

    templates = f"templates_dir={data_dir}" if "template" in candidates else "templates_dir=null"
    cfg = compose(
        "predict",
        [
            f"ckpt={ckpt}",
            f"input={Path(data_dir) / 'val_sequences.csv'}",
            f"candidates=[{candidates}]",
            templates,
            f"out_dir={out}",
        ],
    )
    check_predict_config(cfg, "predict")
    submission = predict(cfg)
    result = evaluate(submission, Path(data_dir) / "val_labels.csv", out / "eval", templates_dir=data_dir)
    return {"candidates": candidates, "mean": result["mean"], "n_targets": result["n_targets"]}


def summary(report: dict[str, Any]) -> str:
    """The figures as a small table."""
    model_only, ranked = report["model_only"]["mean"], report["ranked"]["mean"]
    rows = [
        ("model samples only", model_only["model"]),
        (f"ranked [{report['ranked']['candidates']}]", ranked["model"]),
    ]
    rows += [(f"baseline {name}", ranked[name]) for name in ("helix", "ss", "template")]
    lines = [f"{'method':<58} {'TM':>6} {'RMSD':>7}", "-" * 73]
    lines += [f"{name:<58} {m['tm']:6.3f} {m.get('rmsd', float('nan')):7.1f}" for name, m in rows]
    t = report["train"]
    lines += [
        "-" * 73,
        f"budget {report['minutes']} min on {report['threads']} thread(s): {t['steps']} steps, {t['epochs']} epoch(s)"
        f" (stopped by {t['stopped_by']}, {t['seconds']:.0f} s),"
        f" best val/tm {t['best_val_tm']:.3f}; config: {' '.join(report['overrides'])}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from rna_hpc.config import validate
    from rna_hpc.evaluation.structure_io import atomic_write

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    torch.set_num_threads(args.threads)
    out = Path(args.out).resolve()
    max_epochs = max(1, round(args.minutes * args.epochs_per_minute))
    overrides = [
        *TRAIN_DEFAULTS,
        f"trainer.max_epochs={max_epochs}",
        f"data.dir={args.data_dir}",
        f"paths.shared_dir={out / 'shared'}",
        *args.overrides,
    ]
    cfg = compose("train", overrides)
    validate(cfg)
    report: dict[str, Any] = {"minutes": args.minutes, "threads": args.threads, "overrides": overrides}
    report["train"] = train(cfg, args.minutes, out)
    ckpt = report["train"]["best_ckpt"]
    report["model_only"] = predict_and_score(ckpt, args.data_dir, "model", out / "model_only")
    report["ranked"] = predict_and_score(ckpt, args.data_dir, args.candidates, out / "ranked")
    atomic_write(out / "quality.json", json.dumps(report, indent=2) + "\n")
    print(summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
