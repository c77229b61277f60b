"""Your own Hydra app on rna_hpc's launchers (see docs/own_app.md).

    python examples/user_app/my_app.py -m hydra/launcher=slurm lr=0.1,0.01                       # two Slurm jobs
    python examples/user_app/my_app.py -m hydra/launcher=slurm hydra.launcher.tasks_per_node=2    # 2-task DDP each

The app declares its own checks with ``validated_by``: every job of a sweep is checked before any is submitted.
In a job of several tasks the ranks join one gloo process group through submitit's environment; rank 0's return
value is what the sweeper sees.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from rna_hpc.launch import validated_by


def check(cfg: DictConfig) -> list[str]:
    """This app's rules, as ``key: why`` lines."""
    problems = []
    if cfg.lr <= 0:
        problems.append(f"lr: must be positive, is {cfg.lr}")
    if cfg.steps < 1:
        problems.append(f"steps: must be >= 1, is {cfg.steps}")
    return problems


def descend(lr: float, steps: int) -> float:
    """Gradient descent on (x - 3)^2 from x = 0; the final loss."""
    x = 0.0
    for _ in range(steps):
        x -= lr * 2 * (x - 3)
    return (x - 3) ** 2


def all_reduce_mean(value: float) -> float:
    """The mean of ``value`` over the job's tasks (1 task: ``value``)."""
    import submitit

    env = submitit.JobEnvironment()
    if env.num_tasks == 1:
        return value
    import torch
    import torch.distributed as dist

    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    dist.init_process_group("gloo", rank=env.global_rank, world_size=env.num_tasks)
    try:
        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor)
        return float(tensor.item()) / env.num_tasks
    finally:
        dist.destroy_process_group()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
@validated_by(check)
def main(cfg: DictConfig) -> float:
    loss = descend(cfg.lr, cfg.steps)
    try:
        loss = all_reduce_mean(loss)
    except RuntimeError:  # not inside a submitit job (python my_app.py without -m): one process
        pass
    print(f"lr={cfg.lr} steps={cfg.steps}: loss {loss:.6f}")
    return loss


if __name__ == "__main__":
    main()
