"""``python -m rna_hpc.train`` on the real cluster: DDP sweeps and a two-node job, on the real structures."""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sliver import SLIVER

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
TINY = ("debug=fast", *SLIVER)


def train(cwd: Path, data_dir: Path, *overrides: str, timeout: float = 540) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "rna_hpc.train", "-m", "launcher=slurm", f"paths.data_dir={data_dir}", *TINY]
    return subprocess.run(
        cmd + list(overrides),
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def rank_results(cwd: Path) -> dict[str, dict[int, object]]:
    """``{submitit job id: {rank: the JobReturn that rank produced}}`` from the result pickles."""
    found: dict[str, dict[int, object]] = {}
    for path in cwd.glob("outputs/shared/submitit/train/*/*/*_result.pkl"):
        job_id, rank = re.fullmatch(r"(.+)_(\d+)_result\.pkl", path.name).groups()
        outcome, value = pickle.loads(path.read_bytes())
        assert outcome == "success", f"{path}: {value}"
        found.setdefault(job_id, {})[int(rank)] = value
    return found


def rank_log(cwd: Path, job_id: str, rank: int) -> str:
    (folder,) = cwd.glob(f"outputs/shared/submitit/train/*/{job_id}")
    return "".join(p.read_text() for p in sorted(folder.glob(f"{job_id}_{rank}_log.*")))


def test_two_job_sweep_each_ddp_over_two_tasks(tmp_path: Path, rna3d_dir: Path, wait_final: Callable) -> None:
    out = train(tmp_path, rna3d_dir, "trainer=ddp", "trainer.devices=2", "lr=1e-3,2e-3")
    assert out.returncode == 0, out.stdout[-4000:]
    results = rank_results(tmp_path)
    assert len(results) == 2 and all(set(r) == {0, 1} for r in results.values()), results
    for job_id, by_rank in results.items():
        log0, log1 = rank_log(tmp_path, job_id, 0), rank_log(tmp_path, job_id, 1)
        assert "GLOBAL_RANK: 0, MEMBER: 1/2" in log0 and "GLOBAL_RANK: 1, MEMBER: 2/2" in log1
        values = {rank: ret.return_value for rank, ret in by_rank.items()}
        assert values[0] == values[1], values  # the objective is reduced across ranks
        digests = [re.findall(r"parameters sha256 ([0-9a-f]{64})", log) for log in (log0, log1)]
        assert digests[0] and digests[0][-1] == digests[1][-1], f"ranks diverged or no digest logged: {digests}"
    assert sorted(wait_final(tmp_path, 2).values()) == ["COMPLETED", "COMPLETED"]


def test_two_node_job(tmp_path: Path, rna3d_dir: Path, wait_final: Callable) -> None:
    out = train(tmp_path, rna3d_dir, "trainer=ddp", "trainer.num_nodes=2", "trainer.devices=1")
    assert out.returncode == 0, out.stdout[-4000:]
    ((job_id, by_rank),) = rank_results(tmp_path).items()
    assert set(by_rank) == {0, 1}
    logs = [rank_log(tmp_path, job_id, r) for r in (0, 1)]
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in logs[0] and "GLOBAL_RANK: 1, MEMBER: 2/2" in logs[1]
    state = wait_final(tmp_path, 1)
    assert list(state.values()) == ["COMPLETED"]
    nodes = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "NNodes,NodeList"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    assert nodes.startswith("2|"), nodes  # one task on each of two nodes
