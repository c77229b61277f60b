"""The validating local launcher: a 2-process gloo DDP job on this machine, without Slurm."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "tests" / "slurm" / "ddp_app.py"


def run_app(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(APP), "-m", f"hydra.searchpath=[file://{REPO / 'conf'}]", "hydra.sweep.dir=sweep"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        cmd + list(overrides),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=180,
    )


@pytest.mark.slow
def test_local_launcher_runs_one_process_per_device(tmp_path: Path) -> None:
    out = run_app(tmp_path, "launcher=local", "trainer.devices=2", "x=3")
    assert out.returncode == 0, out.stdout
    records = sorted((json.loads(p.read_text()) for p in (tmp_path / "sweep/0").glob("rank*.json")), key=str)
    assert sorted((r["rank"], r["world_size"], r["sum"]) for r in records) == [(0, 2, 9.0), (1, 2, 9.0)]
    assert len({r["checksum"] for r in records}) == 1


def test_local_launcher_rejects_a_mismatched_shape_before_running(tmp_path: Path) -> None:
    out = run_app(tmp_path, "launcher=local", "trainer.devices=2", "hydra.launcher.tasks_per_node=1", "x=1,2")
    assert out.returncode != 0
    assert "hydra.launcher.tasks_per_node: is 1, must equal trainer.devices=2 (one process per device)" in out.stdout
    assert "Traceback" not in out.stdout
    assert not (tmp_path / "sweep" / ".submitit").exists()


@pytest.mark.slow
def test_non_finite_objective_is_a_failure_and_the_launcher_summarises_it(tmp_path: Path) -> None:
    out = run_app(tmp_path, "launcher=local", "trainer.devices=1", "x=1.0,nan")
    assert out.returncode != 0
    summary = out.stdout[out.stdout.index("rna_hpc: 1 of 2 job(s) failed") :].splitlines()
    assert re.fullmatch(r"  #1 \(local job \d+\) x=nan: TrainingFailed: job #1 returned the objective nan", summary[1])
    assert summary[2].startswith("      log   ") and Path(summary[2].split()[-1]).is_file()
    assert json.loads((tmp_path / "sweep/0/rank0.json").read_text())["sum"] == 1.0  # the other job's result stands


@pytest.mark.parametrize("launcher", ["slurm", "local"])
def test_dry_run_writes_nothing_and_needs_no_slurm_command(tmp_path: Path, launcher: str) -> None:
    """Nothing on disk afterwards (no sweep dir, no multirun.yaml, no submitit folder), with no sinfo/sbatch on PATH."""
    cmd = [sys.executable, "-m", "rna_hpc.train", "-m", f"launcher={launcher}", "hydra.launcher.dry_run=true"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": str(Path(sys.executable).parent)}
    proc = subprocess.run([*cmd, "lr=1e-3,2e-3"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rna_hpc: 2 job(s) in 1 submission(s)" in proc.stdout
    assert ("#SBATCH --array=0-1" in proc.stdout) == (launcher == "slurm")
    assert sorted(tmp_path.rglob("*")) == []
