"""A detached sweep on the real cluster, followed with rna-hpc-status from its record until every job has finished."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
STATUS = str(Path(sys.executable).parent / "rna-hpc-status")


def _run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _status(cwd: Path, *args: str, timeout: float = 60) -> tuple[int, dict]:
    proc = _run([STATUS, *args, "--json"], cwd, timeout)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _wait_running(cwd: Path, sweep: Path, num: int, timeout: float = 240) -> str:
    """The Slurm id of job ``num`` once Slurm runs it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = _status(cwd, str(sweep), "--no-plots")[1]["jobs"][num]
        if job["state"] == "RUNNING":
            return job["slurm_job_id"]
        assert job["state"] in ("PENDING", "RUNNING"), job
        time.sleep(0.5)
    raise AssertionError(f"job #{num} did not start within {timeout}s")


def test_detached_sweep_followed_by_status(tmp_path: Path) -> None:
    """Job 0 trains two epochs and is requeued once while running; job 1 fails (too few targets)."""
    sweep = tmp_path / "sweep"
    submit = _run(
        [
            sys.executable,
            "-m",
            "rna_hpc.train",
            "-m",
            "launcher=slurm",
            "hydra.launcher.detach=true",
            "hydra.launcher.timeout_min=10",
            f"hydra.sweep.dir={sweep}",
            "debug=fast",
            "trainer.detect_anomaly=false",
            "trainer.max_epochs=3",
            "checkpoint.every_n_steps=1",
            "data.synthetic.n_targets=12,1",
        ],
        tmp_path,
        timeout=120,
    )
    assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
    record = json.loads((sweep / "sweep.json").read_text())
    assert record["detached"] is True and record["launcher"] == "slurm"
    assert [j["num"] for j in record["jobs"]] == [0, 1] and all(j["slurm_job_id"] for j in record["jobs"])

    job_id = _wait_running(tmp_path, sweep, 0)
    subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)

    watch = _run([STATUS, str(sweep), "--watch", "2", "--json"], tmp_path, timeout=480)
    assert watch.returncode == 1, watch.stdout[-3000:] + watch.stderr  # job 1 failed
    done, failed = json.loads(watch.stdout)["jobs"]
    assert done["state"] == "COMPLETED" and done["consolidated"] is True and done["requeues"] >= 1
    assert done["epoch"] == 2 and 0 < done["best"] <= 1 and done["node"].startswith("node")
    assert failed["state"] == "FAILED" and failed["slurm_job_id"] == record["jobs"][1]["slurm_job_id"]
    assert "n_targets" in failed["reason"] or "without a result" in failed["reason"]
    assert failed["log"]

    shared = Path(record["shared_sweep_dir"])
    code, from_shared = _status(tmp_path, str(shared))
    assert code == 1 and [j["state"] for j in from_shared["jobs"]] == ["COMPLETED", "FAILED"]
    assert (shared / "learning_curves.png").is_file() and (shared / "0" / "learning_curves.png").is_file()
