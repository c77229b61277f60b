"""Run identity (stable across restarts) and the job context read from Slurm / submitit / plain processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import submitit
from omegaconf import OmegaConf

from rna_hpc.errors import ConfigError, RequeueLimitReached
from rna_hpc.launch.env import JobContext, _timeout_requeues, check_requeue_limit, check_world_size
from rna_hpc.launch.identity import RunIdentity

REPO = Path(__file__).resolve().parents[2]


def _hydra_cfg(mode: str, run_dir: str, sweep_dir: str = "/s/exp/2025-01-01_10-00-00", num: int = 3):
    return OmegaConf.create(
        {
            "mode": mode,
            "run": {"dir": run_dir},
            "sweep": {"dir": sweep_dir, "subdir": str(num)},
            "job": {"num": num},
            "runtime": {"output_dir": run_dir, "cwd": "/home/user/project"},
        }
    )


def test_multirun_identity_comes_from_the_sweep_dir_and_job_num() -> None:
    cfg = OmegaConf.create({"experiment_name": "exp", "paths": {"shared_dir": "/shared/results"}})
    hydra_cfg = _hydra_cfg("MULTIRUN", "/scratch/exp/2025-01-01_10-00-00/3")
    identity = RunIdentity.from_hydra(cfg, hydra_cfg)
    assert identity == RunIdentity(
        experiment="exp",
        sweep_id="2025-01-01_10-00-00",
        job_num=3,
        run_dir=Path("/scratch/exp/2025-01-01_10-00-00/3"),
        shared_dir=Path("/shared/results/exp/2025-01-01_10-00-00/3"),
    )
    assert identity.run_id == "exp/2025-01-01_10-00-00/3"
    assert identity.ckpt_dir == Path("/scratch/exp/2025-01-01_10-00-00/3/ckpt")
    assert RunIdentity.from_hydra(cfg, hydra_cfg) == identity  # nothing depends on when it is called


def test_single_run_identity_uses_the_run_dir_name_and_a_relative_shared_dir() -> None:
    cfg = OmegaConf.create({"experiment_name": "exp", "paths": {"shared_dir": "outputs/shared"}})
    identity = RunIdentity.from_hydra(cfg, _hydra_cfg("RUN", "/scratch/exp/run-7"))
    assert (identity.sweep_id, identity.job_num) == ("run-7", 0)
    assert identity.shared_dir == Path("/home/user/project/outputs/shared/exp/run-7/0")


def test_identity_rejects_names_that_are_not_one_directory() -> None:
    cfg = OmegaConf.create({"experiment_name": "a/b", "paths": {"shared_dir": "/shared"}})
    with pytest.raises(ConfigError, match="experiment_name: 'a/b' cannot name a directory"):
        RunIdentity.from_hydra(cfg, _hydra_cfg("RUN", "/scratch/run"))


APP = textwrap.dedent(
    """
    import json
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from rna_hpc.launch.identity import RunIdentity

    @hydra.main(version_base="1.3", config_path=None, config_name=None)
    def main(cfg):
        i = RunIdentity.from_hydra(cfg, HydraConfig.get())
        print("IDENTITY", json.dumps([i.run_id, str(i.run_dir), str(i.shared_dir)]), flush=True)

    main()
    """
)


def _identities(tmp_path: Path, *args: str) -> list[list[str]]:
    app = tmp_path / "app.py"
    app.write_text(APP)
    cmd = [sys.executable, str(app), *args, "+experiment_name=exp", "+paths.shared_dir=shared"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [line.split(" ", 1)[1] for line in result.stdout.splitlines() if line.startswith("IDENTITY ")]
    return sorted(json.loads(line) for line in lines)


def test_real_hydra_jobs_get_the_same_identity_on_every_start(tmp_path: Path) -> None:
    run = ["hydra.run.dir=scratch/exp/run-1"]
    first, again = _identities(tmp_path, *run), _identities(tmp_path, *run)
    expected = ["exp/run-1/0", str(tmp_path / "scratch/exp/run-1"), str(tmp_path / "shared/exp/run-1/0")]
    assert first == again == [expected]
    sweep = ["-m", "hydra.sweep.dir=scratch/exp/sweep-7", "+x=1,2"]
    jobs = _identities(tmp_path, *sweep)
    assert [j[0] for j in jobs] == ["exp/sweep-7/0", "exp/sweep-7/1"]
    assert jobs[1][1:] == [str(tmp_path / "scratch/exp/sweep-7/1"), str(tmp_path / "shared/exp/sweep-7/1")]
    assert _identities(tmp_path, *sweep) == jobs


SLURM_ENV = {
    "SLURM_JOB_ID": "105",
    "SLURM_ARRAY_JOB_ID": "104",
    "SLURM_ARRAY_TASK_ID": "1",
    "SLURM_NTASKS": "4",
    "SLURM_JOB_NUM_NODES": "2",
    "SLURM_PROCID": "3",
    "SLURM_LOCALID": "1",
    "SLURM_NODEID": "1",
    "SLURM_RESTART_COUNT": "2",
    "SLURM_JOB_NODELIST": "node[1-2]",
    "SLURM_JOB_NAME": "train",
}


def test_job_context_from_slurm_variables() -> None:
    ctx = JobContext.from_env(SLURM_ENV)
    assert (ctx.global_rank, ctx.local_rank, ctx.node_rank, ctx.world_size, ctx.num_nodes) == (3, 1, 1, 4, 2)
    assert (ctx.job_id, ctx.array_job_id, ctx.array_task_id) == ("104_1", "104", "1")
    assert (ctx.restart_count, ctx.node_list, ctx.is_slurm, ctx.is_submitit) == (2, "node[1-2]", True, False)
    assert not ctx.is_global_zero
    check_world_size(ctx, devices=2, num_nodes=2)
    with pytest.raises(ConfigError) as err:
        check_world_size(ctx, devices=1, num_nodes=1)
    assert "1 x 1 = 1 processes, but the job runs 4 tasks (SLURM_NTASKS)" in str(err.value)
    assert "hydra.launcher.nodes=${trainer.num_nodes}" in str(err.value)


def test_job_context_outside_slurm() -> None:
    interactive = JobContext.from_env({**SLURM_ENV, "SLURM_JOB_NAME": "bash"})
    assert not interactive.is_slurm and interactive.world_size == 1
    check_world_size(interactive, devices=4, num_nodes=1)  # nothing to compare with
    torchrun = JobContext.from_env({"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"})
    assert (torchrun.global_rank, torchrun.world_size, torchrun.is_slurm) == (1, 2, False)
    assert JobContext.from_env({}) == JobContext(hostname=JobContext.from_env({}).hostname)
    with pytest.raises(ConfigError, match="SLURM_PROCID: 'x' is not an integer"):
        JobContext.from_env({**SLURM_ENV, "SLURM_PROCID": "x"})


def test_job_context_inside_a_real_submitit_job(tmp_path: Path) -> None:
    executor = submitit.LocalExecutor(folder=tmp_path / "submitit")
    executor.update_parameters(tasks_per_node=2, nodes=1, timeout_min=2)
    job = executor.submit(JobContext.from_env)
    contexts = sorted(job.results(), key=lambda c: c.global_rank)
    assert [c.global_rank for c in contexts] == [0, 1]
    assert all(c.is_submitit and not c.is_slurm and c.world_size == 2 for c in contexts)
    assert contexts[0].job_id == job.job_id and contexts[1].local_rank == 1
    assert all(c.restart_count == c.timeout_requeues == 0 for c in contexts)
    check_world_size(contexts[0], devices=2, num_nodes=1)
    with pytest.raises(ConfigError, match="but the job runs 2 tasks"):
        check_world_size(contexts[0], devices=1, num_nodes=1)


class _Launcher:
    """What submitit pickles for a job of the Slurm launcher: a callable that keeps its executor parameters."""

    params = {"max_num_timeout": 3}

    def __call__(self) -> None:
        pass


def test_requeues_are_split_into_time_limit_and_preemption(tmp_path: Path) -> None:
    delayed = submitit.core.utils.DelayedSubmission(_Launcher())
    delayed._timeout_countdown = 1  # submitit counts down from max_num_timeout at each time-limit requeue
    delayed.dump(tmp_path / "7_submitted.pkl")
    assert _timeout_requeues(tmp_path / "7_submitted.pkl") == 2
    ctx = JobContext(job_id="7", restart_count=5, timeout_requeues=2, is_slurm=True)  # 3 preemptions
    for allowed in (3, 10, None):
        check_requeue_limit(ctx, allowed)
    with pytest.raises(RequeueLimitReached) as err:
        check_requeue_limit(ctx, 2)
    assert str(err.value).startswith("job 7 was requeued 3 times by preemption or scontrol requeue")
    assert "hydra.launcher.max_num_preemptions=2" in str(err.value)
