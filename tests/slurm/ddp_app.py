"""A tiny Hydra app for the launcher tests: each job joins its ranks in a gloo all_reduce and records what it saw.

Every rank writes ``rank<k>.json`` into the job's output dir: rank, world size, node, the all_reduce sum, a
checksum of a seeded model broadcast from rank 0 (identical across ranks when DDP is wired right) and, on a GPU
trainer, the GPU the task would use (``rna_hpc.job.devices``) and the one Lightning picks for it.
"""

from __future__ import annotations

import json
import os

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import rna_hpc.launch.config  # noqa: F401  (launcher schemas and resolvers)
from rna_hpc.config import register_configs

register_configs()


def _gpu(cfg: DictConfig) -> dict | None:
    """On a GPU trainer: the device this task would train on, from what Slurm made visible, as rna_hpc checks it
    and as Lightning picks it for a Trainer built with rna_hpc's cluster plugin (CUDA answered by stand-ins)."""
    if cfg.trainer.accelerator not in ("gpu", "cuda"):
        return None
    from rna_hpc.job.devices import assign_device, visible_gpus
    from rna_hpc.launch.env import JobContext

    binding = HydraConfig.get().launcher.get("gpu_binding")
    ctx = JobContext.from_env()
    seen = assign_device(ctx, cfg.trainer.devices, binding).as_dict()
    return {**seen, **_lightning_device(cfg, ctx, binding or "node", len(visible_gpus()))}


def _lightning_device(cfg: DictConfig, ctx: object, binding: str, n_visible: int) -> dict:
    """Lightning's root device and world size for this task; torch and Lightning are told ``n_visible`` GPUs exist
    (the nodes' GPUs are stand-in devices), and nothing runs on them."""
    from unittest import mock

    import pytorch_lightning as pl

    from rna_hpc.job.trainer import cluster_environment

    plugins, devices = cluster_environment(cfg, ctx, binding)
    with (
        mock.patch("torch.cuda.is_available", return_value=True),
        mock.patch("torch.cuda.device_count", return_value=n_visible),
        mock.patch("lightning_fabric.accelerators.cuda.num_cuda_devices", return_value=n_visible),
        mock.patch("pytorch_lightning.accelerators.cuda.num_cuda_devices", return_value=n_visible),
    ):
        trainer = pl.Trainer(
            accelerator="gpu",
            devices=devices,
            num_nodes=cfg.trainer.num_nodes,
            strategy="ddp",
            plugins=plugins,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        return {"lightning_device": str(trainer.strategy.root_device), "lightning_world_size": trainer.world_size}


def _all_reduce(cfg: DictConfig) -> dict:
    import submitit
    import torch
    import torch.distributed as dist

    env = submitit.JobEnvironment()
    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    dist.init_process_group("gloo", rank=env.global_rank, world_size=env.num_tasks)
    try:
        value = torch.tensor([float(env.global_rank + 1) * cfg.x])
        dist.all_reduce(value)
        torch.manual_seed(env.global_rank)  # different on purpose: broadcast must make them equal
        weights = torch.nn.Linear(4, 4).weight.detach().clone()
        dist.broadcast(weights, src=0)
        return {
            "rank": dist.get_rank(),
            "world_size": dist.get_world_size(),
            "node": os.environ.get("SLURMD_NODENAME", "local"),
            "sum": value.item(),
            "checksum": float(weights.sum()),
            "job_id": env.job_id,
            "umask": oct(os.umask(0o022)),
            "gpu": _gpu(cfg),
        }
    finally:
        dist.destroy_process_group()


@hydra.main(version_base="1.3", config_path="app_conf", config_name="app")
def main(cfg: DictConfig) -> float:
    if cfg.fail:
        raise RuntimeError(f"job asked to fail (x={cfg.x})")
    if cfg.crash:
        os._exit(3)  # dies without a result, as a killed job does
    seen = _all_reduce(cfg)
    out = HydraConfig.get().runtime.output_dir
    with open(os.path.join(out, f"rank{seen['rank']}.json"), "w") as f:
        json.dump(seen, f)
    return seen["sum"]


if __name__ == "__main__":
    main()
