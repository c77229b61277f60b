"""Fixtures for the tests against the real local Slurm cluster (``slurm/start.sh``): every wait is bounded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
APP = Path(__file__).resolve().parent / "ddp_app.py"
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL"}


def run_command(cmd: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``cmd`` in ``cwd`` with the repository importable; stdout and stderr together in ``.stdout``."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="session")
def run_app() -> Callable[..., subprocess.CompletedProcess]:
    """Run the tiny DDP app as a multirun in a directory of its own (a fresh submitit folder every time)."""

    def run(cwd: Path, *overrides: str, timeout: float = 240) -> subprocess.CompletedProcess:
        cmd = [sys.executable, str(APP), "-m", f"hydra.searchpath=[file://{REPO / 'conf'}]", "hydra.sweep.dir=sweep"]
        return run_command(cmd + list(overrides), cwd, timeout)

    return run


def sacct_jobs(workdir: Path) -> dict[str, str]:
    """``{job id: state}`` of the allocations submitted from ``workdir`` (array tasks as ``<array>_<k>``)."""
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-a", "-S", "now-1hour", "-o", "JobID,State,WorkDir"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    jobs = {}
    for line in out.splitlines():
        job_id, state, wd = line.split("|", 2)
        if Path(wd) == workdir:
            jobs[job_id] = state.split()[0]
    return jobs


def _wait_final(workdir: Path, count: int, timeout: float = 60) -> dict[str, str]:
    """Wait until sacct lists ``count`` jobs from ``workdir``, all in a final state; return them."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = sacct_jobs(workdir)
        if len(jobs) >= count and set(jobs.values()) <= FINAL_STATES:
            return jobs
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout}s sacct shows {jobs} for {workdir}, expected {count} final jobs")
        time.sleep(0.5)


@pytest.fixture
def wait_final() -> Callable[..., dict[str, str]]:
    """``wait_final(workdir, count, timeout)``: the final sacct states of the jobs submitted from ``workdir``."""
    return _wait_final


@pytest.fixture
def sacct() -> Callable[[Path], dict[str, str]]:
    """``sacct(workdir)``: ``{job id: state}`` of the jobs submitted from ``workdir`` so far."""
    return sacct_jobs
