"""Which GPU each Slurm task uses, from CUDA_VISIBLE_DEVICES and its local rank; one-line errors otherwise."""

from __future__ import annotations

import pytest

from rna_hpc.data.datamodule import loader_settings
from rna_hpc.errors import ConfigError
from rna_hpc.job.devices import assign_device, inference_device
from rna_hpc.launch.env import JobContext


def ctx(local_rank: int = 0, global_rank: int = 0, cpus: int | None = None) -> JobContext:
    return JobContext(
        global_rank=global_rank, local_rank=local_rank, hostname="node1", is_slurm=True, cpus_per_task=cpus
    )


@pytest.mark.parametrize(
    ("visible", "local_rank", "binding", "device", "physical"),
    [
        ("0,1", 0, "node", "cuda:0", "0"),
        ("0,1", 1, "node", "cuda:1", "1"),
        ("1", 1, "task", "cuda:0", "1"),  # --gpus-per-task=1: each task's one GPU is cuda:0 inside it
        ("1", 1, None, "cuda:0", "1"),  # binding inferred from the visible count
        ("2,3", 1, None, "cuda:1", "3"),
    ],
)
def test_local_rank_maps_to_one_visible_device(
    visible: str, local_rank: int, binding: str | None, device: str, physical: str
) -> None:
    got = assign_device(ctx(local_rank), 2, binding, {"CUDA_VISIBLE_DEVICES": visible})
    assert (got.device, got.physical) == (device, physical)


def test_a_task_without_gpu_fails_with_one_line() -> None:
    with pytest.raises(ConfigError) as err:
        assign_device(ctx(0, 3), 2, "node", {"CUDA_VISIBLE_DEVICES": ""})
    (line,) = err.value.problems
    assert line.startswith("trainer.accelerator: gpu, but task rank 3 (local rank 0) on node1 sees no GPU")


@pytest.mark.parametrize(
    ("visible", "binding", "message"),
    [
        ("0", "node", "hydra.launcher.gpu_binding: node, so task rank 0 (local rank 0) on node1 should see 2 GPU(s), "),
        ("0,1", "task", "hydra.launcher.gpu_binding: task, so task rank 0 (local rank 0) on node1 should see 1 GPU(s)"),
        ("0,1,2", None, "but it sees 3 (CUDA_VISIBLE_DEVICES=0,1,2) with trainer.devices=2"),
    ],
)
def test_the_wrong_gpu_count_fails(visible: str, binding: str | None, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        assign_device(ctx(), 2, binding, {"CUDA_VISIBLE_DEVICES": visible})
    assert message in str(err.value)


def test_inference_device() -> None:
    assert inference_device("cpu", True) == "cpu"
    assert inference_device("auto", False) == "cpu"
    assert inference_device("gpu", True, JobContext()) == "cuda:0"
    with pytest.raises(ConfigError, match="trainer.accelerator: gpu, but torch sees no CUDA device"):
        inference_device("gpu", False)


def test_loader_workers_follow_cpus_per_task() -> None:
    assert loader_settings(None, None, ctx(cpus=8), on_gpu=True) == (7, True)
    assert loader_settings(None, None, ctx(cpus=None), on_gpu=False) == (0, False)
    assert loader_settings(2, False, ctx(cpus=8), on_gpu=True) == (2, False)


def test_ddp_strategy_carries_the_configured_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from omegaconf import OmegaConf

    from rna_hpc.job.trainer import ddp_strategy

    ddp = {"timeout_min": 5, "find_unused_parameters": True, "bucket_cap_mb": 50, "nccl_env": {"NCCL_DEBUG": "INFO"}}
    monkeypatch.delenv("NCCL_DEBUG", raising=False)
    cpu = ddp_strategy(OmegaConf.create({"trainer": {"accelerator": "cpu"}, "ddp": ddp}))
    assert cpu.process_group_backend == "gloo" and "NCCL_DEBUG" not in __import__("os").environ
    gpu = ddp_strategy(OmegaConf.create({"trainer": {"accelerator": "gpu"}, "ddp": ddp}))
    assert gpu.process_group_backend == "nccl" and __import__("os").environ["NCCL_DEBUG"] == "INFO"
    assert gpu._timeout == timedelta(minutes=5)
    assert gpu._ddp_kwargs == {"find_unused_parameters": True, "bucket_cap_mb": 50}


def test_per_task_binding_gives_lightning_local_rank_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    from rna_hpc.job.trainer import OneGpuPerTaskSLURMEnvironment

    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "2")
    monkeypatch.setenv("SLURM_NNODES", "2")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    env = OneGpuPerTaskSLURMEnvironment(tasks_per_node=2)
    assert env.local_rank() == 0
    env.validate_settings(num_devices=1, num_nodes=2)  # Lightning runs devices=1 per task: no mismatch
    with pytest.raises(ValueError, match="num_nodes=1"):
        env.validate_settings(num_devices=1, num_nodes=1)


def test_bf16_on_a_gpu_without_it_is_one_line() -> None:
    from types import SimpleNamespace

    from rna_hpc.job.devices import check_precision

    def gpu(bf16: bool) -> SimpleNamespace:
        name = "V100"
        return SimpleNamespace(is_available=lambda: True, is_bf16_supported=lambda: bf16, get_device_name=lambda: name)

    with pytest.raises(ConfigError, match=r"trainer.precision: bf16-mixed, but V100 has no bfloat16; use 16-mixed"):
        check_precision("bf16-mixed", "gpu", gpu(False))
    check_precision("bf16-mixed", "gpu", gpu(True))
    check_precision("16-mixed", "gpu", gpu(False))
    check_precision("bf16-mixed", "cpu", gpu(False))  # on CPU Lightning runs bf16 itself
