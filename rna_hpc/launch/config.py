"""Launcher schemas and config resolvers; light (no submitit, torch or Lightning), imported before composition.

``base_rna_hpc_slurm`` and ``base_rna_hpc_local`` extend hydra-submitit-launcher's schemas with the keys rna_hpc adds;
``hydra_plugins/rna_hpc_launcher/conf/hydra/launcher/{slurm,local}.yaml`` (on every app's search path) name them in
their defaults lists. The resolvers derive Slurm resources from the trainer (``rna_hpc.gpus_per_node``) and read
required site variables (``rna_hpc.require_env``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.errors import CompactHydraException
from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf
from omegaconf import OmegaConf
from omegaconf.errors import InterpolationResolutionError

from rna_hpc.launch.resources import bound_gpus


@dataclass
class RnaHpcSlurmQueueConf(SlurmQueueConf):
    """The submitit Slurm launcher plus pre-submission validation, dry runs and detached submission."""

    _target_: str = "hydra_plugins.rna_hpc_launcher.launchers.RnaHpcSlurmLauncher"
    # print the sbatch script of each distinct resource shape and submit nothing
    dry_run: bool = False
    # submit and return at once; each job's return value is its Slurm job id (basic sweeper only)
    detach: bool = False
    # octal umask applied while submitting and inside every job (files on shared storage)
    umask: str = "022"
    # command that starts python on the nodes (e.g. inside a container); None: this interpreter
    python: str | None = None
    # extra arguments of the srun line that starts the tasks
    srun_args: list[str] | None = None
    # restarts for other causes than the time limit (preemption, scontrol requeue, node failure) before a job stops
    # instead of resuming; None: no limit
    max_num_preemptions: int | None = 10
    # how a GPU job's tasks get their GPUs: node (--gpus-per-node=trainer.devices, each task picks its own by local
    # rank; Lightning's documented way) or task (--gpus-per-task=1, Slurm gives each task one GPU of its own)
    gpu_binding: str = "node"
    # files of each job's run dir copied to shared storage when the job ends, failed or not (rank 0; verified, with
    # manifest.json): globs relative to the run dir, and the folder they go to (one subfolder per job, as under the
    # sweep dir). rna_hpc's training consolidates its own files (consolidate.include): leave these empty for it
    consolidate: list[str] = field(default_factory=list)
    consolidate_to: str | None = None


@dataclass
class RnaHpcLocalQueueConf(LocalQueueConf):
    """The submitit local launcher (one process per task on this machine) plus pre-submission validation."""

    _target_: str = "hydra_plugins.rna_hpc_launcher.launchers.RnaHpcLocalLauncher"
    umask: str = "022"
    dry_run: bool = False  # validate and print the plan; start nothing
    detach: bool = False  # start the jobs, write the sweep record and return at once
    # files of each job's run dir copied to shared storage when the job ends, failed or not (rank 0; verified, with
    # manifest.json): globs relative to the run dir, and the folder they go to (one subfolder per job, as under the
    # sweep dir). rna_hpc's training consolidates its own files (consolidate.include): leave these empty for it
    consolidate: list[str] = field(default_factory=list)
    consolidate_to: str | None = None


class UnsetEnvironmentVariable(InterpolationResolutionError, CompactHydraException):
    """A variable the config requires is unset; OmegaConf passes it on unwrapped, Hydra prints its message alone."""


def gpus_per_node(accelerator: str, devices: int, binding: str = "node") -> int | None:
    """Slurm GPUs per node for a trainer: its device count on a GPU accelerator bound per node, none otherwise."""
    return bound_gpus(accelerator, devices, binding)[0]


def gpus_per_task(accelerator: str, binding: str = "node") -> int | None:
    """Slurm GPUs per task: one on a GPU accelerator bound per task, none otherwise."""
    return bound_gpus(accelerator, 1, binding)[1]


def require_env(name: str, *, _node_: Any = None) -> str:
    """The value of environment variable ``name``; a one-line error naming the variable and the key when unset."""
    value = os.environ.get(name)
    if not value:
        key = _node_._get_full_key(None) if _node_ is not None else "a config value"
        raise UnsetEnvironmentVariable(
            f"{key}: environment variable {name} is not set (export it, or choose another env=...)"
        )
    return value


def register_resolvers() -> None:
    """Register the ``rna_hpc.*`` resolvers (idempotent)."""
    resolvers = (
        ("rna_hpc.gpus_per_node", gpus_per_node),
        ("rna_hpc.gpus_per_task", gpus_per_task),
        ("rna_hpc.require_env", require_env),
    )
    for name, fn in resolvers:
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def register_launcher_configs() -> None:
    """Store the launcher schemas in Hydra's ConfigStore (idempotent) and register the resolvers."""
    cs = ConfigStore.instance()
    cs.store(group="hydra/launcher", name="base_rna_hpc_slurm", node=RnaHpcSlurmQueueConf, provider="rna_hpc")
    cs.store(group="hydra/launcher", name="base_rna_hpc_local", node=RnaHpcLocalQueueConf, provider="rna_hpc")
    register_resolvers()


register_launcher_configs()
