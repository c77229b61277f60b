"""Build the Lightning pieces of a job from config: loggers, callbacks, plugins and the Trainer."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.plugins.environments import SLURMEnvironment

from rna_hpc.checkpoint.lightning_io import AtomicCheckpointIO
from rna_hpc.config.validate import objective_names
from rna_hpc.launch.env import JobContext
from rna_hpc.launch.identity import RunIdentity

# Noise in every job log: Lightning 2.6 still builds torch's LeafSpec (deprecated in torch 2.13), on a host with
# Slurm a local run (the basic launcher) is told to prepend `srun`, which the Slurm launcher already does, and every
# Trainer advertises a hosted logger.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)
warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system but is not used")
logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(lambda record: "litlogger" not in str(record.msg))


def run_info(cfg: DictConfig, identity: RunIdentity) -> dict[str, Any]:
    """What identifies this run in a cross-sweep results table."""
    from hydra.core.hydra_config import HydraConfig

    from rna_hpc.checkpoint.manifest import config_hash

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    return {
        "run_id": identity.run_id,
        "sweep": identity.sweep_id,
        "experiment": cfg.experiment_name,
        "config_hash": config_hash(OmegaConf.to_container(cfg, resolve=True)),
        "overrides": overrides,
    }


def build_loggers(cfg: DictConfig, identity: RunIdentity) -> list[Any]:
    """Every logger whose ``enabled`` flag is set; Lightning loggers write on rank 0 only."""
    loggers = []
    for name, node in cfg.logger.items():
        if not node or not node.get("enabled", False):
            continue
        kwargs = OmegaConf.to_container(node, resolve=True)
        kwargs.pop("enabled")
        if name == "lancedb":
            kwargs["run_info"] = run_info(cfg, identity)
        if name == "csv" and isinstance(kwargs.get("version"), str):  # a fixed log dir, consolidated
            kwargs["earlier"] = shared_copy(identity, Path(kwargs["save_dir"], kwargs["name"], kwargs["version"]))
        loggers.append(instantiate(kwargs))
    return loggers


def shared_copy(identity: RunIdentity, log_dir: Path) -> str | None:
    """Where consolidation puts ``metrics.csv`` of a log dir in the run dir (the same relative path), for a resumed
    run whose scratch dir was wiped; None for a log dir outside the run dir."""
    try:
        return str(identity.shared_dir / log_dir.resolve().relative_to(identity.run_dir.resolve()) / "metrics.csv")
    except ValueError:
        return None


def build_callbacks(cfg: DictConfig, identity: RunIdentity, ctx: JobContext, logged: bool = True) -> list[Callback]:
    """Best/last checkpoints on the monitored metric, periodic checkpoints, consolidation, progress, pruning.

    ``logged``: the Trainer has a logger, so the learning rate is logged each step (``LearningRateMonitor`` raises
    without one).
    """
    from rna_hpc.job.callbacks import (
        ConsolidateCallback,
        GracefulPreemption,
        KeepEarlierCurve,
        PeriodicCheckpoint,
        ValidateAtBudgetEnd,
    )
    from rna_hpc.job.progress import PlainProgress
    from rna_hpc.job.random_state import RandomState

    ckpt_dir = identity.ckpt_dir
    callbacks: list[Callback] = [  # Lightning runs checkpoint callbacks last, in this order: best scores, then saves
        ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="best",
            monitor=cfg.checkpoint.monitor,
            mode=cfg.checkpoint.mode,
            save_top_k=cfg.checkpoint.save_top_k,
            save_last=True,
            enable_version_counter=False,
        ),
        ValidateAtBudgetEnd(),  # first: the savers ask at the same hook whether a validation follows the step
        GracefulPreemption(),
        RandomState(),
    ]
    if cfg.checkpoint.every_n_steps or cfg.checkpoint.every_minutes:
        callbacks.append(
            PeriodicCheckpoint(
                ckpt_dir, cfg.checkpoint.every_n_steps, cfg.checkpoint.every_minutes, keep=cfg.checkpoint.keep_steps
            )
        )
    if cfg.consolidate.enabled:
        callbacks.append(
            ConsolidateCallback(
                identity,
                every_checkpoint=cfg.consolidate.every_checkpoint,
                manifest_fields={"config": OmegaConf.to_container(cfg, resolve=True), "job": ctx},
                include=list(cfg.consolidate.include),
                umask=cfg.consolidate.umask,
            )
        )
    if logged:
        callbacks += [LearningRateMonitor(logging_interval="step"), KeepEarlierCurve()]
    if not sys.stderr.isatty():
        callbacks.append(PlainProgress(every_n_steps=cfg.trainer.log_every_n_steps))
    if cfg.trial.number is not None:
        from rna_hpc.hpo.pruning import OptunaPruningCallback

        callbacks.append(OptunaPruningCallback(cfg.trial, monitor=objective_names(cfg.objective)[0]))
    return callbacks


class OneGpuPerTaskSLURMEnvironment(SLURMEnvironment):
    """Slurm bound one GPU to each task (``--gpus-per-task=1``): it is ``cuda:0`` in every task.

    Lightning indexes its devices by local rank; here every task runs with ``devices=1`` and local rank 0, while
    global rank and world size still come from Slurm, and the tasks per node are checked against the launcher's.
    """

    def __init__(self, tasks_per_node: int) -> None:
        super().__init__(auto_requeue=False)
        self.tasks_per_node = tasks_per_node

    def local_rank(self) -> int:
        return 0

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        super().validate_settings(self.tasks_per_node, num_nodes)


def ddp_strategy(cfg: DictConfig) -> Any:
    """DDP with NCCL on a GPU accelerator (its ``ddp.nccl_env`` exported first), gloo on CPU."""
    import os
    from datetime import timedelta

    from pytorch_lightning.strategies import DDPStrategy

    backend = "gloo" if cfg.trainer.accelerator == "cpu" else "nccl"
    if backend == "nccl":
        os.environ.update({str(k): str(v) for k, v in cfg.ddp.nccl_env.items()})
    return DDPStrategy(
        process_group_backend=backend,
        timeout=timedelta(minutes=float(cfg.ddp.timeout_min)),
        find_unused_parameters=bool(cfg.ddp.find_unused_parameters),
        bucket_cap_mb=int(cfg.ddp.bucket_cap_mb),
    )


def cluster_environment(cfg: DictConfig, ctx: JobContext, gpu_binding: str = "node") -> tuple[list[Any], int]:
    """Lightning's cluster plugin for a process the launcher started, and the ``devices`` it trains on: one GPU
    per task under ``gpu_binding=task`` on Slurm, else ``trainer.devices``."""
    if not ctx.is_slurm:
        return [], int(cfg.trainer.devices)
    if gpu_binding == "task" and cfg.trainer.accelerator != "cpu":
        return [OneGpuPerTaskSLURMEnvironment(cfg.trainer.devices)], 1
    return [SLURMEnvironment(auto_requeue=False)], int(cfg.trainer.devices)  # submitit owns requeue


def build_trainer(cfg: DictConfig, identity: RunIdentity, ctx: JobContext, gpu_binding: str = "node") -> pl.Trainer:
    """A Trainer whose processes were started by the launcher: Lightning spawns nothing and never requeues."""
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    environment, kwargs["devices"] = cluster_environment(cfg, ctx, gpu_binding)
    plugins: list[Any] = [AtomicCheckpointIO(), *environment]
    strategy: Any = cfg.trainer.strategy
    world = cfg.trainer.devices * cfg.trainer.num_nodes
    if world > 1 and strategy in ("auto", "ddp"):
        strategy = ddp_strategy(cfg)
    loggers = build_loggers(cfg, identity)
    # from a plain container: `strategy` is typed str in the schema, and here it is a strategy object
    return instantiate(
        kwargs,
        strategy=strategy,
        plugins=plugins,
        logger=loggers or False,
        callbacks=build_callbacks(cfg, identity, ctx, logged=bool(loggers)),
        default_root_dir=str(identity.run_dir),
        enable_progress_bar=cfg.trainer.enable_progress_bar and sys.stderr.isatty(),
        use_distributed_sampler=False,  # the length-bucketing batch sampler shards by rank itself
    )
