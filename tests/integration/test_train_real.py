"""`python -m rna_hpc.train` on the real structures: a few steps, overfitting two targets, and a LoRA cycle.

Every run is a subprocess with a tiny model and a small budget. All runs share one feature cache (the data overrides
are the same), so the real set is featurized once per session.
"""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rna_hpc.evaluation.structure_io import read_sequences, read_submission

REPO = Path(__file__).resolve().parents[2]
DATA = ["data.max_length=48", "data.val_max_length=56", "data.batch_size=2", "data.val_batch_size=2"]
TINY = ["model=tiny", "model.generator.n_steps=4", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1"]


def run_train(
    run_dir: Path, rna3d_dir: Path, cache_dir: Path, *overrides: str, timeout: int = 240
) -> subprocess.CompletedProcess:
    """Run ``python -m rna_hpc.train`` on the real data into ``run_dir``."""
    cmd = [
        sys.executable,
        "-m",
        "rna_hpc.train",
        "data=rna3d",
        f"data.dir={rna3d_dir}",
        f"data.cache_dir={cache_dir}",
        *DATA,
        *TINY,
        f"hydra.run.dir={run_dir}",
        f"paths.scratch_dir={run_dir}/scratch",
        f"paths.shared_dir={run_dir}/shared",
        *overrides,
    ]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def train(run_dir: Path, rna3d_dir: Path, cache_dir: Path, *overrides: str, timeout: int = 240) -> Path:
    """``run_train`` that fails with the run's stderr tail unless it succeeded."""
    proc = run_train(run_dir, rna3d_dir, cache_dir, *overrides, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def metric_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def series(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key)]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "rna3d_feature_cache"  # shared with test_predict.py


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory, rna3d_dir: Path, cache_dir: Path) -> Path:
    """A few optimizer steps of the tiny model on 6 real training chains, validated on the short val chains."""
    run = tmp_path_factory.mktemp("pretrain")
    return train(
        run,
        rna3d_dir,
        cache_dir,
        "data.fraction=0.011",
        "trainer.max_steps=4",
        "trainer.limit_val_batches=1",
    )


def test_a_few_steps_on_real_structures_give_finite_losses_and_val_scores(pretrained: Path) -> None:
    rows = metric_rows(pretrained)
    losses = series(rows, "train/loss")
    assert len(losses) >= 3 and all(math.isfinite(v) and v > 0 for v in losses)
    for key in ("val/tm", "val/tm_prior", "val/tm_helix", "val/rmsd"):
        values = series(rows, key)
        assert values and all(math.isfinite(v) for v in values), key
    assert 0.0 < series(rows, "val/tm")[-1] <= 1.0 and 0.0 < series(rows, "val/tm_helix")[-1] <= 1.0
    assert (pretrained / "ckpt" / "best.ckpt").is_file()


def test_a_run_below_the_helix_baseline_fails(tmp_path: Path, rna3d_dir: Path, cache_dir: Path) -> None:
    # without a prior, one optimizer step of the generator gives blobs far below the helix
    run = tmp_path / "blob"
    proc = run_train(
        run,
        rna3d_dir,
        cache_dir,
        "model.generator.prior=none",
        "fail_below_baseline=true",
        "data.fraction=0.011",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
    )
    rows = metric_rows(run)
    best, helix = max(series(rows, "val/tm")), series(rows, "val/tm_helix")[-1]
    print(f"best val/tm {best:.3f} vs helix {helix:.3f}")
    assert best < helix
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "is below the A-form helix baseline val/tm_helix" in proc.stderr.strip().splitlines()[-1]
    error = json.loads((run / "shared" / "default" / "blob" / "0" / "error.json").read_text())
    assert error["type"] == "TrainingFailed" and "helix" in error["message"]


def test_max_time_stops_a_run_in_mid_epoch_and_the_objective_is_logged(
    tmp_path: Path, rna3d_dir: Path, cache_dir: Path
) -> None:
    # 1000 epochs of 14 steps, validation only every 1000 epochs: only the wall clock can end this run, in mid-epoch,
    # and only the stop itself can validate it
    run = tmp_path / "timed"
    proc = run_train(
        run,
        rna3d_dir,
        cache_dir,
        "data.fraction=0.05",
        "trainer.max_epochs=1000",
        "trainer.check_val_every_n_epoch=1000",
        "trainer.limit_val_batches=1",
        "trainer.max_time=00:00:00:15",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = metric_rows(run)
    steps = [int(r["step"]) for r in rows if r.get("train/loss")]
    tm = series(rows, "val/tm")
    assert len(tm) == 1 and 0.0 < tm[0] <= 1.0, tm  # the validation at the stop
    assert steps and max(int(float(r["epoch"])) for r in rows if r.get("epoch")) < 999
    logged = re.search(r"val/tm = ([0-9.eE+-]+)", proc.stdout + proc.stderr)  # the objective, as the job logs it
    assert logged and float(logged.group(1)) == pytest.approx(tm[0], abs=1e-6), proc.stdout[-2000:]
    assert (run / "ckpt" / "best.ckpt").is_file()


def test_two_real_targets_are_overfitted(tmp_path: Path, rna3d_dir: Path, cache_dir: Path) -> None:
    run = train(
        tmp_path / "overfit",
        rna3d_dir,
        cache_dir,
        "debug=overfit",
        "data.fraction=0.0037",  # 2 of the 550 training chains
        "trainer.overfit_batches=1",
        "trainer.max_epochs=40",
        "trainer.check_val_every_n_epoch=40",
        "trainer.limit_val_batches=1",
        "lr=1e-2",
        "optim.warmup_steps=2",
        "optim.min_lr_ratio=1.0",
    )
    rows = metric_rows(run)
    for key, fall in (("train/loss", 0.75), ("train/distogram", 0.6), ("train/torsion", 0.6)):
        values = series(rows, key)
        assert len(values) >= 30, key
        first, last = sum(values[:5]) / 5, sum(values[-5:]) / 5
        assert last < fall * first, (key, first, last)


def test_lora_cycle_from_a_pretrained_checkpoint(
    pretrained: Path, tmp_path: Path, rna3d_dir: Path, cache_dir: Path
) -> None:
    base = pretrained / "ckpt" / "best.ckpt"
    run = train(
        tmp_path / "lora",
        rna3d_dir,
        cache_dir,
        "experiment=lora_finetune",
        f"model.init_from={base}",
        "data.fraction=0.011",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
    )
    lora_ckpt = run / "ckpt" / "best.ckpt"
    full, lora = torch.load(base, weights_only=True), torch.load(lora_ckpt, weights_only=True)
    assert lora["rna_hpc"]["lora"]["enabled"] and not full["rna_hpc"]["lora"]["enabled"]
    assert any(".lora_A." in k for k in lora["state_dict"]) and not any(
        "trunk" in k and ".lora_" not in k for k in lora["state_dict"]
    )
    assert lora_ckpt.stat().st_size < 0.7 * base.stat().st_size
    n_full = sum(v.numel() for v in full["state_dict"].values())
    n_lora = sum(v.numel() for v in lora["state_dict"].values())
    assert n_lora < 0.6 * n_full, (n_lora, n_full)

    # predict from the LoRA checkpoint alone: its frozen base comes from the stored model.init_from
    seq = read_sequences(rna3d_dir / "val_sequences.csv")["7ELP_A"]
    (tmp_path / "input.fa").write_text(f">7ELP_A\n{seq}\n")
    cmd = [sys.executable, "-m", "rna_hpc.predict", f"ckpt={lora_ckpt}", f"input={tmp_path / 'input.fa'}"]
    proc = subprocess.run([*cmd, f"hydra.run.dir={tmp_path / 'predict'}"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [(tid, (got, models))] = read_submission(tmp_path / "predict" / "submission.csv").items()
    assert tid == "7ELP_A" and got == seq and models.shape == (5, len(seq), 3) and np.isfinite(models).all()
