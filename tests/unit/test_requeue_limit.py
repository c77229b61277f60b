"""Every app's Slurm job stops once requeued too often, and says so in ``error.json``; a finished job ignores its
time-limit signal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rna_hpc import compat
from rna_hpc.errors import RequeueLimitReached
from rna_hpc.launch.node_side import within_requeue_limit

SLURM_TASK = {"SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_JOB_ID": "77", "SLURM_JOB_NAME": "my_app"}


def app_config(run_dir: Path):
    """A job config of an app without rna_hpc's run layout (no ``paths.shared_dir``)."""
    return OmegaConf.create(
        {"x": 1, "hydra": {"runtime": {"output_dir": str(run_dir)}, "job": {"name": "my_app", "num": 3}}}
    )


@pytest.mark.parametrize("restarts, limit, runs", [(3, 2, False), (2, 2, True), (9, None, True)])
def test_a_job_requeued_more_often_than_allowed_stops_before_its_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restarts: int, limit: int | None, runs: bool
) -> None:
    for key, value in {**SLURM_TASK, "SLURM_RESTART_COUNT": str(restarts)}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    cfg = app_config(tmp_path / "run")
    called = []
    task = within_requeue_limit(lambda c: called.append(c.x) or 0.5, limit)
    with compat.current_hydra_config(cfg):
        if runs:
            assert task(cfg) == 0.5 and called == [1]
            assert not (tmp_path / "run" / "error.json").exists()
            return
        with pytest.raises(RequeueLimitReached, match=rf"requeued {restarts} times .*max_num_preemptions={limit}"):
            task(cfg)
    assert called == []
    error = json.loads((tmp_path / "run" / "error.json").read_text())
    assert error["type"] == "RequeueLimitReached" and error["restart_count"] == restarts
    assert error["slurm_job_id"] == "77" and error["run_id"].endswith("/3")


FINISHED_JOB = """
import os, signal, sys
caught = []
signal.signal(signal.SIGUSR2, lambda *_: caught.append("requeue"))  # as submitit's handler on the node
from rna_hpc.launch.node_side import ignore_time_limit_signal
if sys.argv[1] == "done":
    ignore_time_limit_signal()
os.kill(os.getpid(), signal.SIGUSR2)
print(caught)
"""


@pytest.mark.parametrize("state, printed", [("running", "['requeue']"), ("done", "[]")])
def test_the_time_limit_signal_is_ignored_once_the_task_is_done(state: str, printed: str) -> None:
    out = subprocess.run([sys.executable, "-c", FINISHED_JOB, state], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == printed
