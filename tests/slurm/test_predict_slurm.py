"""Prediction on the real local Slurm: ``-m hydra/launcher=slurm shards=3`` is one array of three jobs whose merged
submission, PDB files and manifest equal what one job on this machine writes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from predicting import assert_merged_equals_one_job, run

pytestmark = pytest.mark.slurm


def test_sharded_prediction_on_slurm_equals_one_local_job(
    checkpoint: Path,
    inputs: Path,
    tmp_path: Path,
    wait_final: Callable,  # noqa: F811
) -> None:
    common = [f"ckpt={checkpoint}", f"input={inputs}", "batch_size=1", "seed=11"]
    one = run("rna_hpc.predict", *common, f"hydra.run.dir={tmp_path / 'one'}")
    assert one.returncode == 0, one.stderr[-3000:]
    sweep = tmp_path / "sweep"
    sharded = run(
        "rna_hpc.predict",
        "-m",
        "hydra/launcher=slurm",
        *common,
        "shards=3",
        "hydra.launcher.timeout_min=10",
        f"hydra.sweep.dir={sweep}",
        f"paths.shared_dir={tmp_path / 'shared'}",
        cwd=tmp_path,
        timeout=600,
    )
    assert sharded.returncode == 0, sharded.stdout[-2000:] + sharded.stderr[-3000:]
    assert "rna_hpc: 3 job(s) in 1 submission(s) to slurm" in sharded.stdout
    assert_merged_equals_one_job(sweep / "results", tmp_path / "one", shards=3)
    states = wait_final(tmp_path, 3)
    assert sorted(states.values()) == ["COMPLETED"] * 3 and len({j.split("_")[0] for j in states}) == 1  # one array


def test_sharded_prediction_on_gpus_asks_one_gpu_per_job(checkpoint: Path, inputs: Path, tmp_path: Path) -> None:
    out = run(
        "rna_hpc.predict",
        "-m",
        "hydra/launcher=slurm",
        f"ckpt={checkpoint}",
        f"input={inputs}",
        "trainer=gpu",
        "shards=2",
        "hydra.launcher.dry_run=true",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        f"paths.shared_dir={tmp_path / 'shared'}",
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "#SBATCH --gpus-per-node=1\n" in out.stdout and "#SBATCH --ntasks-per-node=1\n" in out.stdout, out.stdout
    assert "#SBATCH --array=0-1" in out.stdout and "# dry run: nothing submitted" in out.stdout
