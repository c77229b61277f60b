"""On a real CUDA GPU (``-m gpu``; deselected in CI, run by ``benchmarks/gpu_check.sh``): the device Lightning
trains on is the one rna_hpc assigns, NCCL all-reduces, bf16-mixed training stays finite, and a prediction on GPU
matches the CPU one from the same checkpoint and seed."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.gpu

REPO = Path(__file__).resolve().parents[2]
TRAIN = ["trainer=gpu", "trainer.max_steps=3", "trainer.max_epochs=1", "trainer.enable_progress_bar=false"]


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_a_cuda_build_of_torch_sees_a_gpu() -> None:
    assert torch.cuda.is_available(), f"torch {torch.__version__} sees no CUDA device"
    assert torch.__version__.startswith("2.13.0"), torch.__version__


def test_lightning_trains_on_the_assigned_device() -> None:
    import pytorch_lightning as pl

    from rna_hpc.job.devices import inference_device
    from rna_hpc.launch.env import JobContext

    trainer = pl.Trainer(accelerator="gpu", devices=1, logger=False, enable_checkpointing=False)
    assert trainer.strategy.root_device == torch.device(inference_device("gpu", True, JobContext()))


def test_nccl_all_reduce_with_the_configured_settings() -> None:
    import torch.distributed as dist
    from omegaconf import OmegaConf

    from rna_hpc.config.schema import DDPConfig
    from rna_hpc.job.trainer import ddp_strategy

    cfg = OmegaConf.create({"trainer": {"accelerator": "gpu"}, "ddp": OmegaConf.structured(DDPConfig)})
    strategy = ddp_strategy(cfg)  # exports ddp.nccl_env
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group(strategy.process_group_backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        value = torch.ones(4, device="cuda")
        dist.all_reduce(value)
        assert value.sum().item() == 4.0
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three bf16-mixed optimizer steps of the tiny model on the synthetic set, through ``python -m rna_hpc.train``."""
    root = tmp_path_factory.mktemp("gpu_train")
    out = run("-m", "rna_hpc.train", *TRAIN, f"hydra.run.dir={root}", f"paths.shared_dir={root}/shared")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "bfloat16 Automatic Mixed Precision" in out.stderr + out.stdout
    return root / "ckpt" / "best.ckpt"


def test_bf16_training_on_gpu_gives_a_finite_objective(checkpoint: Path) -> None:
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_gpu_prediction_matches_the_cpu_one(checkpoint: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    prep = run("-m", "rna_hpc.prepare", f"+export_dir={data}", f"hydra.run.dir={tmp_path / 'prep'}")
    assert prep.returncode == 0, prep.stderr[-3000:]
    out = run(
        "benchmarks/gpu_agreement.py",
        f"--ckpt={checkpoint}",
        f"--input={data / 'val_sequences.csv'}",
        f"--out={tmp_path / 'agree'}",
        "--min-tm=0.99",
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "gpu vs cpu prediction:" in out.stdout
