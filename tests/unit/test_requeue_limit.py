"""Every app's Slurm job stops once requeued too often, and says so in ``error.json``."""

from __future__ import annotations

import json
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
