"""Model quality on the real validation split after a wall-clock training budget, beside the baselines.

    python benchmarks/quality.py --minutes 30 [--threads 1] [hydra overrides of the training config ...]

Runs the product only: ``python -m rna_hpc.train data=rna3d model=base trainer.max_time=<minutes>`` on the train split
of the Kaggle-layout folder (default ``../shared/data/rna3d``), then ``python -m rna_hpc.predict`` from the best
checkpoint (by ``val/tm``) on the validation sequences, twice (the model's samples alone, and the ranked pool of
``--candidates``), then ``python -m rna_hpc.evaluate`` on each submission. It reads their outputs (``metrics.csv``,
``evaluation.json``) and prints the per-target and mean best-of-5 TM-score beside the helix, secondary-structure and
template baselines, the ``val/tm`` curve, the budget and the command lines; ``quality.json`` in ``--out`` holds all.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import REPO, default_data_dir

TRAIN_DEFAULTS = ["data=rna3d", "model=base", "trainer.enable_progress_bar=false"]
CANDIDATES = "model,template"  # ranked: the two sources that are not near-copies of each other (docs/quality.md)
BASELINES = ("helix", "ss", "template")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0, help="trainer.max_time in minutes (30: the target)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="cores each step is pinned to (taskset: the first of those this process may use), OMP_NUM_THREADS",
    )
    p.add_argument(
        "--epochs-per-minute",
        type=float,
        default=1.2,
        help="sets trainer.max_epochs = minutes x this, the length of the LR schedule; the wall clock "
        "(trainer.max_time) ends the run first on a slower machine",
    )
    p.add_argument("--data-dir", default=str(default_data_dir()), help="Kaggle-layout folder")
    p.add_argument("--out", default=str(REPO / "outputs" / "benchmarks" / "quality"), help="output folder")
    p.add_argument("--candidates", default=CANDIDATES, help="sources of the ranked submission (comma-separated)")
    p.add_argument(
        "--predict", nargs="*", default=[], help="extra overrides of both predictions (e.g. template_search=structure)"
    )
    p.add_argument(
        "--skip-train",
        action="store_true",
        help="score the run already in <out>/train (its best.ckpt and metrics.csv) instead of training again",
    )
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides of the training config")
    return p.parse_args(argv)


def max_time(minutes: float) -> str:
    """``trainer.max_time`` (DD:HH:MM:SS) of a budget in minutes."""
    seconds = max(1, round(minutes * 60))
    days, rest = divmod(seconds, 86400)
    return f"{days:02d}:{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"


def run(cmd: list[str], threads: int, log: Path) -> float:
    """Run one entry point pinned to ``threads`` cores, its output in ``log``; the wall seconds it took."""
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    pin = ["taskset", "-c", ",".join(map(str, cores[:threads]))] if threads < len(cores) else []
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run([*pin, *cmd], cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = log.read_text().strip().splitlines()[-15:]
        sys.exit(f"{' '.join(cmd[:3])} failed (exit {proc.returncode}); last lines of {log}:\n" + "\n".join(tail))
    return seconds


def val_curve(metrics_csv: Path) -> list[dict[str, float]]:
    """One row per validation: epoch, step, val/tm, val/tm_prior, val/tm_helix (as the run's CSV logger wrote them)."""
    with open(metrics_csv, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("val/tm")]
    keys = ("val/tm", "val/tm_prior", "val/tm_helix")
    return [
        {"epoch": int(float(r["epoch"])), "step": int(float(r["step"]))} | {k: float(r[k]) for k in keys if r.get(k)}
        for r in rows
    ]


def train(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """``python -m rna_hpc.train`` for ``--minutes`` of wall clock; what the run did, from its outputs."""
    run_dir = out / "train"
    epochs = max(1, round(args.minutes * args.epochs_per_minute))
    overrides = [
        *TRAIN_DEFAULTS,
        f"trainer.max_time={max_time(args.minutes)}",
        f"trainer.max_epochs={epochs}",
        f"data.dir={args.data_dir}",
        f"hydra.run.dir={run_dir}",
        f"paths.scratch_dir={out / 'scratch'}",
        f"paths.shared_dir={out / 'shared'}",
        "resume=never",
        *args.overrides,
    ]
    cmd = [sys.executable, "-m", "rna_hpc.train", *overrides]
    seconds = math.nan if args.skip_train else run(cmd, args.threads, out / "train.log")
    curve = val_curve(run_dir / "csv" / "metrics.csv")
    best = max(curve, key=lambda r: r["val/tm"])
    last_epoch = curve[-1]["epoch"]
    return {
        "command": " ".join(["python", "-m", "rna_hpc.train", *overrides]),
        "seconds": round(seconds, 1),
        "steps": curve[-1]["step"],
        "epochs": last_epoch + 1,
        "max_epochs": epochs,
        "stopped_by": "max_time" if last_epoch + 1 < epochs else "max_epochs",
        "best_val_tm": best["val/tm"],
        "best_epoch": best["epoch"],
        "last_val_tm": curve[-1]["val/tm"],
        "val_curve": curve,
        "best_ckpt": str(run_dir / "ckpt" / "best.ckpt"),
    }


def predict_and_score(ckpt: str, args: argparse.Namespace, candidates: str, out: Path) -> dict[str, Any]:
    """``rna_hpc.predict`` of the validation sequences with ``candidates``, scored by ``rna_hpc.evaluate``."""
    data = Path(args.data_dir)
    predict = [
        sys.executable,
        "-m",
        "rna_hpc.predict",
        f"ckpt={ckpt}",
        f"input={data / 'val_sequences.csv'}",
        f"candidates=[{candidates}]",
        f"templates_dir={data}",  # its train split: the template sources, and a model trained on the template prior
        f"hydra.run.dir={out / 'predict'}",
        *args.predict,
    ]
    evaluate = [
        sys.executable,
        "-m",
        "rna_hpc.evaluate",
        f"predictions={out / 'predict' / 'submission.csv'}",
        f"labels={data / 'val_labels.csv'}",
        f"templates_dir={data}",
        "n_distance_maps=0",
        f"hydra.run.dir={out / 'eval'}",
    ]
    seconds = run(predict, args.threads, out / "predict.log")
    seconds += run(evaluate, args.threads, out / "evaluate.log")
    result = json.loads((out / "eval" / "evaluation.json").read_text())
    return {
        "candidates": candidates,
        "seconds": round(seconds, 1),
        "mean": result["mean"],
        "n_targets": result["n_targets"],
        "targets": {t["target_id"]: t for t in result["targets"]},
        "commands": [" ".join(["python", *c[1:]]) for c in (predict, evaluate)],
    }


def per_target(report: dict[str, Any]) -> list[str]:
    """Per-target best-of-5 TM-score: model samples, ranked pool and each baseline."""
    model, ranked = report["model_only"]["targets"], report["ranked"]["targets"]
    head = f"{'target':<10} {'L':>4} {'model':>6} {'pool':>6} " + " ".join(f"{b:>8}" for b in BASELINES)
    lines = [head, "-" * len(head)]
    for tid in sorted(ranked, key=lambda t: ranked[t]["length"]):
        row = ranked[tid]
        base = " ".join(f"{row[b]['tm']:8.3f}" if b in row else f"{'':>8}" for b in BASELINES)
        lines.append(f"{tid:<10} {row['length']:>4} {model[tid]['model']['tm']:6.3f} {row['model']['tm']:6.3f} {base}")
    return lines


def summary(report: dict[str, Any]) -> str:
    """The figures as small tables."""
    model_only, ranked = report["model_only"]["mean"], report["ranked"]["mean"]
    rows = [
        ("model samples only", model_only["model"]),
        (f"ranked [{report['ranked']['candidates']}]", ranked["model"]),
    ]
    rows += [(f"baseline {name}", ranked[name]) for name in BASELINES if name in ranked]
    lines = [f"{'method':<58} {'TM':>6} {'RMSD':>7}", "-" * 73]
    lines += [f"{name:<58} {m['tm']:6.3f} {m.get('rmsd', float('nan')):7.1f}" for name, m in rows]
    t = report["train"]
    curve = " ".join(f"{r['epoch']}:{r['val/tm']:.3f}" for r in t["val_curve"])
    lines += [
        "-" * 73,
        f"budget {report['minutes']} min on {report['threads']} core(s): {t['steps']} steps, {t['epochs']} epoch(s)"
        f" (stopped by {t['stopped_by']}, {t['seconds']:.0f} s with start-up); best val/tm {t['best_val_tm']:.3f}"
        f" at epoch {t['best_epoch']}, last {t['last_val_tm']:.3f}",
        f"val/tm by epoch: {curve}",
        f"train: {t['command']}",
        *(f"       {c}" for c in report["ranked"]["commands"]),
        "",
        *per_target(report),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from rna_hpc.checkpoint.io import atomic_write

    out = Path(args.out).resolve()
    report: dict[str, Any] = {"minutes": args.minutes, "threads": args.threads}
    report["train"] = train(args, out)
    ckpt = report["train"]["best_ckpt"]
    report["model_only"] = predict_and_score(ckpt, args, "model", out / "model_only")
    report["ranked"] = predict_and_score(ckpt, args, args.candidates, out / "ranked")
    atomic_write(out / "quality.json", json.dumps(report, indent=2) + "\n")
    print(summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
