"""A tiny checkpoint of real training chains and a sequences file of real validation chains, for prediction tests."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rna_hpc.evaluation.structure_io import read_sequences

REPO = Path(__file__).resolve().parents[1]
TARGETS = ["6E8U_B", "7ELP_A", "7EOJ_A"]  # short validation chains
# the same data settings and cache folder as test_train_real.py: the real set is featurized once per session
DATA = ["data.max_length=48", "data.val_max_length=56", "data.batch_size=2", "data.val_batch_size=2"]
CACHE = "rna3d_feature_cache"


def run(module: str, *overrides: str, timeout: int = 240, cwd: Path = REPO) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", module, *overrides]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, rna3d_dir: Path) -> Path:
    """The best checkpoint of two optimizer steps of the tiny model on a few real training chains."""
    root = tmp_path_factory.mktemp("train")
    proc = run(
        "rna_hpc.train",
        "data=rna3d",
        f"data.dir={rna3d_dir}",
        f"data.cache_dir={tmp_path_factory.getbasetemp() / CACHE}",
        *DATA,
        "data.fraction=0.011",
        "model=tiny",
        "model.generator.n_steps=4",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={root}",
        f"paths.shared_dir={root}/shared",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "ckpt" / "best.ckpt"


@pytest.fixture(scope="session")
def inputs(tmp_path_factory, rna3d_dir: Path) -> Path:
    seqs = read_sequences(rna3d_dir / "val_sequences.csv")
    path = tmp_path_factory.mktemp("inputs") / "sequences.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["target_id", "sequence"])
        writer.writerows((t, seqs[t]) for t in TARGETS)
    return path


def assert_merged_equals_one_job(merged: Path, one: Path, shards: int) -> None:
    """A sharded prediction's merged results are byte for byte what one job wrote, with a manifest of them all."""
    assert (merged / "submission.csv").read_bytes() == (one / "submission.csv").read_bytes()
    for tid in TARGETS:
        assert (merged / "pdb" / f"{tid}.pdb").read_bytes() == (one / "pdb" / f"{tid}.pdb").read_bytes()
    manifest = json.loads((merged / "manifest.json").read_text())
    assert sorted(manifest["artifacts"]) == ["pdb/" + f"{t}.pdb" for t in sorted(TARGETS)] + ["submission.csv"]
    assert len(list((merged / "shards").glob(f"part-*-of-{shards:05d}.csv"))) == shards
