"""Which GPU each task of a Slurm job uses, read from what Slurm made visible; no CUDA call.

Slurm sets ``CUDA_VISIBLE_DEVICES`` for every task. Bound per node (``--gpus-per-node``) each task sees all of its
node's GPUs and Lightning uses ``cuda:<local rank>`` (``DDPStrategy.root_device`` is ``parallel_devices[local_rank]``);
bound per task (``--gpus-per-task=1``) each task sees exactly one GPU, which is ``cuda:0`` inside the process. A task
that sees no GPU, or another count than its binding gives, fails here with one line, before Lightning starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from rna_hpc.errors import ConfigError
from rna_hpc.launch.env import JobContext


@dataclass(frozen=True)
class DeviceAssignment:
    """The GPU of one task: its index inside the process and the physical id Slurm made visible."""

    global_rank: int
    local_rank: int
    binding: str  # node | task
    visible: tuple[str, ...]  # CUDA_VISIBLE_DEVICES of the task
    index: int  # cuda:<index> in the process, as Lightning picks it

    @property
    def device(self) -> str:
        return f"cuda:{self.index}"

    @property
    def physical(self) -> str:
        """The node's GPU id behind ``cuda:<index>``."""
        return self.visible[self.index]

    def as_dict(self) -> dict:
        return {**asdict(self), "device": self.device, "physical": self.physical}


def visible_gpus(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The GPU ids in ``CUDA_VISIBLE_DEVICES`` (empty when unset or empty)."""
    env = os.environ if environ is None else environ
    return tuple(d.strip() for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip())


def assign_device(
    ctx: JobContext, devices: int, binding: str | None = None, environ: Mapping[str, str] | None = None
) -> DeviceAssignment:
    """The GPU this task uses; ``binding`` None infers it from the visible count. Raises ConfigError when the task
    sees no GPU, or a count that neither binding gives for ``trainer.devices``."""
    visible = visible_gpus(environ)
    where = f"task rank {ctx.global_rank} (local rank {ctx.local_rank}) on {ctx.hostname or 'this node'}"
    if not visible:
        raise ConfigError(
            f"trainer.accelerator: gpu, but {where} sees no GPU (CUDA_VISIBLE_DEVICES is empty); the job requested "
            "none: leave hydra.launcher.gpus_per_node / gpus_per_task to their resolvers"
        )
    if binding is None:
        binding = "task" if len(visible) == 1 else "node"
    expected = 1 if binding == "task" else devices
    if len(visible) != expected:
        raise ConfigError(
            f"hydra.launcher.gpu_binding: {binding}, so {where} should see {expected} GPU(s), but it sees "
            f"{len(visible)} (CUDA_VISIBLE_DEVICES={','.join(visible)}) with trainer.devices={devices}"
        )
    index = 0 if binding == "task" else ctx.local_rank
    if index >= len(visible):
        raise ConfigError(
            f"trainer.devices: {devices}, but {where} has local rank {ctx.local_rank} and sees only "
            f"{len(visible)} GPU(s) (CUDA_VISIBLE_DEVICES={','.join(visible)})"
        )
    return DeviceAssignment(ctx.global_rank, ctx.local_rank, binding, visible, index)


def inference_device(accelerator: str, cuda_available: bool, ctx: JobContext | None = None) -> str:
    """The one device a prediction job computes on: ``cpu``, or its GPU (checked as a training task's under Slurm).

    ``auto`` takes a GPU when torch sees one; ``gpu``/``cuda`` without one is a ConfigError.
    """
    if accelerator == "cpu" or (accelerator == "auto" and not cuda_available):
        return "cpu"
    if not cuda_available:
        raise ConfigError(f"trainer.accelerator: {accelerator}, but torch sees no CUDA device on this machine")
    ctx = ctx or JobContext.from_env()
    return assign_device(ctx, 1).device if ctx.is_slurm else "cuda:0"


def check_precision(precision: str, accelerator: str, cuda: object | None = None) -> None:
    """A bf16 precision on a GPU without bf16 (before Ampere) is a ConfigError, before the first step fails."""
    if not str(precision).startswith("bf16") or accelerator == "cpu":
        return
    if cuda is None:
        import torch

        cuda = torch.cuda
    if cuda.is_available() and not cuda.is_bf16_supported():
        raise ConfigError(
            f"trainer.precision: {precision}, but {cuda.get_device_name()} has no bfloat16; "
            "use 16-mixed or 32-true on this GPU"
        )
