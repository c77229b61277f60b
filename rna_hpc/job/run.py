"""The per-task body of a training job: identity, resume point, build, fit, consolidate, objective.

Every rank runs this function (the launcher started one process per device); rank 0 alone writes shared outputs,
and its return value is the objective the sweeper sees.
"""

from __future__ import annotations

import hashlib
import logging
import math

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rna_hpc.config.validate import objective_names
from rna_hpc.errors import ConfigError, TrainingFailed
from rna_hpc.job.devices import assign_device, check_precision
from rna_hpc.job.lineage import apply_determinism, log_training_run
from rna_hpc.job.resume import check_config_compatible, find_resume_checkpoint, shape_config
from rna_hpc.job.trainer import build_trainer
from rna_hpc.launch.env import JobContext, check_world_size, export_torch_distributed_env
from rna_hpc.launch.identity import RunIdentity
from rna_hpc.launch.node_side import record_failure
from rna_hpc.launch.resources import GPU_ACCELERATORS

log = logging.getLogger(__name__)


def build_module(cfg: DictConfig) -> pl.LightningModule:
    """The LightningModule from plain containers (checkpoints must load with ``weights_only=True``)."""
    from rna_hpc.model.module import RNA3DModule

    def plain(node: DictConfig) -> dict:
        return OmegaConf.to_container(node, resolve=True, enum_to_str=True)

    shape = {k: v for k, v in shape_config(cfg).items() if k not in ("model", "lora")}
    return RNA3DModule(
        model=plain(cfg.model),
        lora=plain(cfg.lora),
        loss=plain(cfg.loss),
        optim=plain(cfg.optim),
        objective=plain(cfg.objective) if OmegaConf.is_list(cfg.objective) else cfg.objective,
        shape=shape,
    )


def parameters_digest(module: torch.nn.Module) -> str:
    """sha256 of every parameter's bytes: equal on all ranks when DDP kept them in sync."""
    digest = hashlib.sha256()
    for name, param in sorted(module.named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def resume_point(cfg: DictConfig, identity: RunIdentity) -> str | None:
    """The newest valid checkpoint of this run (scratch first, then shared), checked against the current config."""
    if cfg.resume == "never":
        return None
    ckpt = find_resume_checkpoint(identity.run_dir, identity.shared_dir)
    if ckpt is None:
        return None
    from rna_hpc.checkpoint.torch_load import safe_torch_load

    checkpoint = safe_torch_load(ckpt)
    check_config_compatible(checkpoint.get("rna_hpc", {}), shape_config(cfg), cfg.resume)
    log.info("resuming from %s (step %s)", ckpt, checkpoint.get("global_step"))
    return str(ckpt)


def objective_value(trainer: pl.Trainer, cfg: DictConfig) -> float | list[float]:
    """The configured objective: the best monitored score when it is the monitored metric, else its last value.

    A list of metric names (``objective=[val/tm,val/rmsd]``, a multi-objective search) gives one value each, all
    from the last validation, so the point on the Pareto front is one set of weights.
    """
    several = OmegaConf.is_list(cfg.objective)
    values = [_metric_value(trainer, cfg, name, best=not several) for name in objective_names(cfg.objective)]
    return values if several else values[0]


def _metric_value(trainer: pl.Trainer, cfg: DictConfig, name: str, best: bool = True) -> float:
    ckpt_cb = trainer.checkpoint_callback
    value = None
    if best and name == cfg.checkpoint.monitor and ckpt_cb is not None and ckpt_cb.best_model_score is not None:
        value = float(ckpt_cb.best_model_score)
    elif name in trainer.callback_metrics:
        value = float(trainer.callback_metrics[name])
    if value is None:
        logged = sorted(trainer.callback_metrics)
        raise ConfigError(f"objective: metric {name!r} was never logged (logged: {logged})")
    if not math.isfinite(value):
        raise TrainingFailed(f"objective {name} is {value}: the run diverged")
    return value


def best_val_tm(trainer: pl.Trainer, cfg: DictConfig) -> float | None:
    """The best validation TM-score of the run: the checkpoint's best score when it monitors TM, else the last."""
    ckpt_cb = trainer.checkpoint_callback
    if cfg.checkpoint.monitor == "val/tm" and ckpt_cb is not None and ckpt_cb.best_model_score is not None:
        return float(ckpt_cb.best_model_score)
    value = trainer.callback_metrics.get("val/tm")
    return None if value is None else float(value)


def check_above_helix(trainer: pl.Trainer, cfg: DictConfig) -> None:
    """A run whose best ``val/tm`` ends below the ideal A-form helix on the same residues has failed."""
    helix = trainer.callback_metrics.get("val/tm_helix")
    best = best_val_tm(trainer, cfg)
    if helix is None or best is None:
        log.warning("fail_below_baseline: no validation TM-score was logged, nothing to compare with the helix")
        return
    if best < float(helix):
        raise TrainingFailed(
            f"best val/tm {best:.4f} is below the A-form helix baseline val/tm_helix {float(helix):.4f}: "
            "the model learned less than an untrained helix (fail_below_baseline=true)"
        )


def run_training(cfg: DictConfig) -> float | list[float]:
    """Fit one model as configured and return the objective (the same float on every rank)."""
    ctx = JobContext.from_env()
    export_torch_distributed_env(ctx)
    check_world_size(ctx, cfg.trainer.devices, cfg.trainer.num_nodes)
    torch.set_num_threads(ctx.torch_threads)
    hydra_cfg = HydraConfig.get()
    binding = str(hydra_cfg.launcher.get("gpu_binding") or "node")
    identity = RunIdentity.from_hydra(cfg, hydra_cfg)
    if ctx.is_global_zero:
        (identity.shared_dir / "error.json").unlink(missing_ok=True)  # a requeued attempt starts clean
    try:
        if ctx.is_slurm and cfg.trainer.accelerator in GPU_ACCELERATORS:  # one line per task that sees the wrong GPUs
            log.info("GPU %s", assign_device(ctx, cfg.trainer.devices, binding).as_dict())
        check_precision(cfg.trainer.precision, cfg.trainer.accelerator)
        return fit(cfg, ctx, identity, binding)
    except Exception as err:
        if ctx.is_global_zero:
            record_failure(err, identity, ctx)
        raise


def fit(cfg: DictConfig, ctx: JobContext, identity: RunIdentity, gpu_binding: str = "node") -> float | list[float]:
    """Build data, model and trainer; fit from the resume point; return the objective."""
    apply_determinism(cfg.deterministic)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data, seed=cfg.seed, _convert_="object")
    module = build_module(cfg)
    trainer = build_trainer(cfg, identity, ctx, gpu_binding)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_point(cfg, identity))
    value = objective_value(trainer, cfg)
    if cfg.fail_below_baseline:
        check_above_helix(trainer, cfg)
    digest = parameters_digest(module)
    log.info("rank %d parameters sha256 %s", trainer.global_rank, digest)
    if trainer.is_global_zero:
        log_training_run(cfg, identity, trainer, datamodule, digest)
        log.info("%s = %s  (run dir %s, shared %s)", cfg.objective, value, identity.run_dir, identity.shared_dir)
    return value
