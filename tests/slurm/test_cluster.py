"""The local cluster itself: nodes idle, a batch job runs, accounting records it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm


def test_nodes_are_up() -> None:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True, timeout=30, check=True)
    states = dict(line.split() for line in out.stdout.splitlines())
    assert states, "sinfo lists no node"
    assert set(states.values()) <= {"idle", "mix", "alloc", "comp"}, states


def test_sbatch_wrap_completes_in_sacct(tmp_path: Path, wait_final: Callable[..., dict[str, str]]) -> None:
    out = subprocess.run(
        ["sbatch", "--parsable", "-o", str(tmp_path / "%j.out"), "--wrap", "echo hello-from-$SLURMD_NODENAME"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    job_id = out.stdout.strip().split(";")[0]
    jobs = wait_final(tmp_path, 1, timeout=60)
    assert jobs == {job_id: "COMPLETED"}
    assert (tmp_path / f"{job_id}.out").read_text().startswith("hello-from-")
