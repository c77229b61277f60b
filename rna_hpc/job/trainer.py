"""Build the Lightning pieces of a job from config: loggers, callbacks, plugins and the Trainer."""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.plugins.environments import SLURMEnvironment

from rna_hpc.checkpoint.lightning_io import AtomicCheckpointIO
from rna_hpc.job.identity import RunIdentity
from rna_hpc.launch.env import JobContext

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
        loggers.append(instantiate(kwargs))
    return loggers


def build_callbacks(cfg: DictConfig, identity: RunIdentity, ctx: JobContext) -> list[Callback]:
    """Best/last checkpoints on the monitored metric, periodic checkpoints, consolidation, progress, pruning."""
    from rna_hpc.checkpoint.rng import RandomState
    from rna_hpc.job.callbacks import ConsolidateCallback, GracefulPreemption, PeriodicCheckpoint, ValidateAtBudgetEnd
    from rna_hpc.job.progress import PlainProgress

    ckpt_dir = identity.ckpt_dir
    callbacks: list[Callback] = [
        ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="best",
            monitor=cfg.checkpoint.monitor,
            mode=cfg.checkpoint.mode,
            save_top_k=cfg.checkpoint.save_top_k,
            save_last=True,
            enable_version_counter=False,
        ),
        GracefulPreemption(),
        RandomState(),
        ValidateAtBudgetEnd(),
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
    if not sys.stderr.isatty():
        callbacks.append(PlainProgress(every_n_steps=cfg.trainer.log_every_n_steps))
    if cfg.trial.number is not None:
        from rna_hpc.hpo.pruning import OptunaPruningCallback

        callbacks.append(OptunaPruningCallback(cfg.trial, monitor=cfg.objective))
    return callbacks


def build_trainer(cfg: DictConfig, identity: RunIdentity, ctx: JobContext) -> pl.Trainer:
    """A Trainer whose processes were started by the launcher: Lightning spawns nothing and never requeues."""
    plugins: list[Any] = [AtomicCheckpointIO()]
    if ctx.is_slurm:
        plugins.append(SLURMEnvironment(auto_requeue=False))  # submitit owns requeue
    strategy: Any = cfg.trainer.strategy
    world = cfg.trainer.devices * cfg.trainer.num_nodes
    if world > 1 and strategy in ("auto", "ddp"):
        from pytorch_lightning.strategies import DDPStrategy

        backend = "gloo" if cfg.trainer.accelerator == "cpu" else "nccl"
        strategy = DDPStrategy(process_group_backend=backend)
    # from a plain container: `strategy` is typed str in the schema, and here it is a strategy object
    return instantiate(
        OmegaConf.to_container(cfg.trainer, resolve=True),
        strategy=strategy,
        plugins=plugins,
        logger=build_loggers(cfg, identity) or False,
        callbacks=build_callbacks(cfg, identity, ctx),
        default_root_dir=str(identity.run_dir),
        enable_progress_bar=cfg.trainer.enable_progress_bar and sys.stderr.isatty(),
        use_distributed_sampler=False,  # the length-bucketing batch sampler shards by rank itself
    )
