"""Where this process runs: rank, world size, Slurm job and requeue count.

The job's rank, job and requeue variables (``SLURM_*``, ``SUBMITIT_*``) are read here alone; the one other reader is
``rna_hpc.data.cache``, which takes node-local disk from ``SLURM_TMPDIR`` (``launch.preflight`` sets
``SUBMITIT_FOLDER`` for the task it starts). Inside a submitit job the values come from ``submitit.JobEnvironment``;
in a plain ``srun`` task from the Slurm variables (detected as Lightning detects them); under torchrun-style
launchers from ``RANK``/``LOCAL_RANK``/``WORLD_SIZE``; otherwise it is one process.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rna_hpc import compat
from rna_hpc.errors import ConfigError, RequeueLimitReached

_INTERACTIVE_JOB_NAMES = ("bash", "interactive")  # Lightning treats these allocations as not-Slurm


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "")
    try:
        return int(value) if value != "" else default
    except ValueError:
        raise ConfigError(f"environment variable {name}: {value!r} is not an integer") from None


def _is_srun_task(env: Mapping[str, str]) -> bool:
    return "SLURM_NTASKS" in env and env.get("SLURM_JOB_NAME", "") not in _INTERACTIVE_JOB_NAMES


@dataclass(frozen=True)
class JobContext:
    """The job and rank of this process."""

    global_rank: int = 0
    local_rank: int = 0
    node_rank: int = 0
    world_size: int = 1
    num_nodes: int = 1
    job_id: str | None = None  # submitit's id: '<array job>_<task>' for array tasks
    array_job_id: str | None = None
    array_task_id: str | None = None
    restart_count: int = 0  # SLURM_RESTART_COUNT: how often Slurm requeued this job
    timeout_requeues: int = 0  # how many of those requeues submitit made at the time limit
    node_list: str | None = None
    hostname: str = ""
    is_slurm: bool = False
    is_submitit: bool = False
    cpus_per_task: int | None = None  # SLURM_CPUS_PER_TASK when Slurm set it

    @property
    def torch_threads(self) -> int:
        """Intra-op threads for this process: its Slurm CPUs, else this machine's cores shared by the local ranks."""
        if self.cpus_per_task:
            return self.cpus_per_task
        local_tasks = max(1, self.world_size // max(1, self.num_nodes))
        return max(1, (os.cpu_count() or 1) // local_tasks)

    @property
    def is_global_zero(self) -> bool:
        return self.global_rank == 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> JobContext:
        """Read the context of this process (or of ``environ``, which is then read as plain variables)."""
        if environ is None and os.environ.get("SUBMITIT_EXECUTOR"):
            return cls._from_submitit()
        env = os.environ if environ is None else environ
        if _is_srun_task(env):
            return cls._from_slurm_vars(env)
        return cls(
            global_rank=_int(env, "RANK", _int(env, "LOCAL_RANK", 0)),
            local_rank=_int(env, "LOCAL_RANK", 0),
            node_rank=_int(env, "NODE_RANK", _int(env, "GROUP_RANK", 0)),
            world_size=_int(env, "WORLD_SIZE", 1),
            hostname=socket.gethostname(),
        )

    @classmethod
    def _from_slurm_vars(cls, env: Mapping[str, str]) -> JobContext:
        array_job, array_task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
        job_id = f"{array_job}_{array_task}" if array_job and array_task else env.get("SLURM_JOB_ID")
        return cls(
            global_rank=_int(env, "SLURM_PROCID", 0),
            local_rank=_int(env, "SLURM_LOCALID", 0),
            node_rank=_int(env, "SLURM_NODEID", 0),
            world_size=_int(env, "SLURM_NTASKS", 1),
            num_nodes=_int(env, "SLURM_JOB_NUM_NODES", _int(env, "SLURM_NNODES", 1)),
            job_id=job_id,
            array_job_id=array_job,
            array_task_id=array_task,
            restart_count=_int(env, "SLURM_RESTART_COUNT", 0),
            node_list=env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST"),
            hostname=socket.gethostname(),
            is_slurm=True,
            cpus_per_task=_int(env, "SLURM_CPUS_PER_TASK", 0) or None,
        )

    @classmethod
    def _from_submitit(cls) -> JobContext:
        import submitit

        job = submitit.JobEnvironment()
        env = os.environ
        restarts = _int(env, "SLURM_RESTART_COUNT", 0)
        return cls(
            global_rank=job.global_rank,
            local_rank=job.local_rank,
            node_rank=job.node,
            world_size=job.num_tasks,
            num_nodes=job.num_nodes,
            job_id=job.job_id,
            array_job_id=job.array_job_id,
            array_task_id=job.array_task_id,
            restart_count=restarts,
            timeout_requeues=_timeout_requeues(job.paths.submitted_pickle) if restarts else 0,
            node_list=env.get("SLURM_JOB_NODELIST") or None,
            hostname=job.hostname,
            is_slurm=job.cluster == "slurm",
            is_submitit=True,
            cpus_per_task=_int(env, "SLURM_CPUS_PER_TASK", 0) or None,
        )


def _timeout_requeues(submitted_pickle: Path) -> int:
    """Time-limit requeues so far: submitit counts ``max_num_timeout`` down in the job's pickle at each one."""
    from submitit.core.utils import DelayedSubmission

    delayed = DelayedSubmission.load(submitted_pickle)
    allowed = getattr(delayed.function, "params", {}).get("max_num_timeout", 0)
    return max(0, allowed - compat.timeout_countdown(delayed))


def check_requeue_limit(ctx: JobContext, max_num_preemptions: int | None) -> None:
    """Raise RequeueLimitReached when Slurm restarted this job too often for other causes than its time limit.

    Preemption, ``scontrol requeue`` and a node failure each count; ``None`` allows any number.
    """
    preemptions = ctx.restart_count - ctx.timeout_requeues
    if max_num_preemptions is not None and preemptions > max_num_preemptions:
        raise RequeueLimitReached(
            f"job {ctx.job_id} was requeued {preemptions} times by preemption or scontrol requeue "
            f"(hydra.launcher.max_num_preemptions={max_num_preemptions}): not resuming; its checkpoints are kept "
            "on shared storage"
        )


def check_world_size(ctx: JobContext, devices: int, num_nodes: int) -> None:
    """Raise ConfigError when the job's tasks do not match ``trainer.devices * trainer.num_nodes``."""
    if not (ctx.is_slurm or ctx.is_submitit):
        return
    problems = []
    expected = devices * num_nodes
    if ctx.world_size != expected:
        problems.append(
            f"trainer.devices x trainer.num_nodes: {devices} x {num_nodes} = {expected} processes, but the job runs "
            f"{ctx.world_size} tasks (SLURM_NTASKS); set hydra.launcher.tasks_per_node=${{trainer.devices}}"
        )
    if ctx.num_nodes != num_nodes:
        problems.append(
            f"trainer.num_nodes: {num_nodes}, but the job has {ctx.num_nodes} nodes; "
            "set hydra.launcher.nodes=${trainer.num_nodes}"
        )
    if problems:
        raise ConfigError(problems)


def export_torch_distributed_env(ctx: JobContext) -> None:
    """Give torch.distributed its rendezvous variables in a multi-task local submitit job.

    Under Slurm, Lightning's SLURMEnvironment reads the ranks itself, and a single process needs nothing.
    """
    if not ctx.is_submitit or ctx.is_slurm or ctx.world_size < 2:
        return
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    os.environ["NODE_RANK"] = str(ctx.node_rank)


def node_local_dir() -> Path:
    """Node-local scratch: $SLURM_TMPDIR, else $TMPDIR, else the system temp dir."""
    import tempfile

    for var in ("SLURM_TMPDIR", "TMPDIR"):
        if os.environ.get(var):
            return Path(os.environ[var])
    return Path(tempfile.gettempdir())
