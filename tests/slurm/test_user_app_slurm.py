"""A Hydra app that is not rna_hpc's (``examples/user_app``) on the Slurm launcher: DDP jobs, its own checks, and a
sweep larger than the cluster's MaxArraySize queued as several arrays."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import run_command

from rna_hpc.checkpoint.manifest import read_manifest, verify_manifest
from rna_hpc.launch.launchers import max_array_size

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "examples" / "user_app" / "my_app.py"


def _app(cwd: Path, *overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return run_command(
        [sys.executable, str(APP), "-m", "hydra/launcher=slurm", "hydra.sweep.dir=sweep", *overrides], cwd, timeout
    )


def test_user_app_sweep_runs_two_task_ddp_jobs(tmp_path: Path, wait_final: Callable) -> None:
    out = _app(
        tmp_path,
        "hydra.launcher.tasks_per_node=2",
        "hydra.launcher.timeout_min=5",
        "lr=0.1,0.01",
        'hydra.launcher.consolidate=[".hydra/config.yaml","*.log"]',  # what this app declares for shared storage
        f"hydra.launcher.consolidate_to={tmp_path / 'shared'}",
    )
    assert out.returncode == 0, out.stdout[-3000:]
    assert "rna_hpc: 2 job(s) in 1 submission(s) to slurm" in out.stdout
    assert "2 task(s)" in out.stdout
    for num in ("0", "1"):
        job = tmp_path / "sweep" / num
        assert (job / ".hydra" / "config.yaml").is_file()  # rank 0 writes Hydra's snapshot
        assert (job / "my_app.log").is_file() and (job / "my_app.rank1.log").is_file()  # each rank its own log
        assert not (job / ".hydra" / "config.yaml.rank1").exists()
        manifest = read_manifest(tmp_path / "shared" / num)  # rank 0 copied the declared files, verified
        assert manifest is not None and manifest["status"] == "COMPLETED", manifest
        assert sorted(manifest["artifacts"]) == [".hydra/config.yaml", "my_app.log", "my_app.rank1.log"]
        assert verify_manifest(tmp_path / "shared" / num) == []
    assert sorted(wait_final(tmp_path, 2).values()) == ["COMPLETED", "COMPLETED"]


def test_user_app_checks_refuse_the_sweep_before_submission(tmp_path: Path, sacct: Callable) -> None:
    out = _app(tmp_path, "lr=0.1,-1", "steps=0", "hydra.launcher.consolidate=[my_app.log]")
    assert out.returncode != 0
    assert "lr: must be positive, is -1 [job #1]" in out.stdout and "steps: must be >= 1, is 0" in out.stdout
    assert "hydra.launcher.consolidate_to: not set" in out.stdout
    assert "Traceback" not in out.stdout
    assert sacct(tmp_path) == {}


def _queued(name: str) -> list[str]:
    out = subprocess.run(["squeue", "-r", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True, timeout=30)
    return out.stdout.split()


def test_sweep_above_max_array_size_is_split_into_arrays(tmp_path: Path) -> None:
    """MaxArraySize + 1 jobs to the parked partition (they never start): two arrays, every task queued."""
    limit = max_array_size()
    assert limit is not None and limit > 1
    n, name = limit + 1, f"rna-hpc-split-{os.getpid()}"
    start = time.monotonic()
    out = _app(
        tmp_path,
        f"steps=range(1,{n + 1})",
        "hydra.launcher.partition=parked",
        f"hydra.launcher.name={name}",
        "hydra.launcher.detach=true",
        "hydra.launcher.array_parallelism=7",
        timeout=600,
    )
    try:
        assert out.returncode == 0, out.stdout[-3000:]
        queued = _queued(name)
        print(f"{n} jobs queued in {time.monotonic() - start:.1f} s from the command's start")
        arrays = {task.split("_")[0] for task in queued}
        assert len(queued) == n and len(arrays) == 2, (len(queued), arrays)
        spec = subprocess.run(
            ["squeue", "-h", "-n", name, "-o", "%i %r"], capture_output=True, text=True, timeout=30
        ).stdout
        assert "%7]" in spec  # array_parallelism holds for each array
    finally:
        subprocess.run(["scancel", "-n", name], timeout=60, check=False)
