"""The lifecycle callbacks on a real (tiny) Lightning fit: periodic saves, consolidation, SIGTERM, USR2, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rna_hpc.checkpoint.io import AtomicCheckpointIO, read_sidecar, safe_torch_load, sha256_file
from rna_hpc.checkpoint.manifest import read_manifest, verify_manifest
from rna_hpc.errors import ConfigError
from rna_hpc.job.callbacks import ConsolidateCallback, GracefulPreemption, PeriodicCheckpoint, checkpoint_now
from rna_hpc.job.identity import RunIdentity
from rna_hpc.job.resume import find_resume_checkpoint
from rna_hpc.launch.env import JobContext

REPO = Path(__file__).resolve().parents[2]


class TinyMLP(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class AtStep(pl.Callback):
    """Run ``action(trainer)`` at the start of the batch that begins at ``step``."""

    def __init__(self, step: int, action) -> None:
        self.step, self.action, self.seen = step, action, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step and not self.seen:
            self.seen.append(self.action(trainer))


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


def _fit(run_dir: Path, callbacks: list, max_steps: int, ckpt_path: Path | None = None) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        plugins=[AtomicCheckpointIO()],
        callbacks=callbacks,
        default_root_dir=run_dir,
    )
    trainer.fit(TinyMLP(), train_dataloaders=_loader(), ckpt_path=ckpt_path)
    return trainer


def _identity(tmp_path: Path) -> RunIdentity:
    return RunIdentity("exp", "sweep-1", 0, tmp_path / "scratch" / "run", tmp_path / "shared" / "exp" / "sweep-1" / "0")


def _shared_artifacts(identity: RunIdentity) -> list[str]:
    manifest = read_manifest(identity.shared_dir)
    return sorted(manifest["artifacts"]) if manifest else []


def test_periodic_checkpoints_are_consolidated_and_resumed(tmp_path: Path) -> None:
    ident = _identity(tmp_path)
    fields = {"config": {"lr": 0.01, "wandb": {"api_key": "secret"}}, "job": JobContext()}
    saver = PeriodicCheckpoint(ident.ckpt_dir, every_n_steps=2)
    callbacks = [saver, ConsolidateCallback(ident, manifest_fields=fields)]
    assert _fit(ident.run_dir, callbacks, max_steps=7).global_step == 7
    ckpt = ident.ckpt_dir
    names = sorted(p.name for p in ckpt.iterdir())
    assert names == [f"{n}{s}" for n in ("last.ckpt", "step-4.ckpt", "step-6.ckpt") for s in ("", ".sha256")]
    assert (ckpt / "last.ckpt").stat().st_ino == (ckpt / "step-6.ckpt").stat().st_ino
    assert read_sidecar(ckpt / "last.ckpt") == sha256_file(ckpt / "step-6.ckpt")
    assert safe_torch_load(ckpt / "last.ckpt")["global_step"] == 6
    assert verify_manifest(ident.shared_dir) == []
    manifest = read_manifest(ident.shared_dir)
    assert _shared_artifacts(ident) == [f"ckpt/{n}" for n in names]  # step-2 pruned on shared storage too
    assert manifest["run_id"] == "exp/sweep-1/0" and manifest["config"]["wandb"]["api_key"] == "***"
    assert manifest["ended_at"] is not None and manifest["started_at"] is not None
    assert manifest["metrics"]["train/loss"] >= 0

    resume = find_resume_checkpoint(ident.run_dir, ident.shared_dir)
    assert resume == ckpt / "last.ckpt"
    start = AtStep(6, lambda trainer: trainer.global_step)
    resumed = _fit(ident.run_dir, [start, PeriodicCheckpoint(ckpt, every_n_steps=2)], max_steps=10, ckpt_path=resume)
    assert start.seen == [6] and resumed.global_step == 10
    assert safe_torch_load(find_resume_checkpoint(ident.run_dir, ident.shared_dir))["global_step"] == 10


def test_sigterm_saves_and_consolidates_then_training_goes_on(tmp_path: Path) -> None:
    ident = _identity(tmp_path)
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        before = signal.getsignal(signal.SIGTERM)
        send = AtStep(2, lambda trainer: os.kill(os.getpid(), signal.SIGTERM))
        probe = AtStep(4, lambda trainer: _shared_artifacts(ident))
        callbacks = [send, GracefulPreemption(), ConsolidateCallback(ident, every_checkpoint=False), probe]
        trainer = _fit(ident.run_dir, callbacks, max_steps=6)
        assert trainer.global_step == 6  # Lightning did not stop the fit
        assert received == [signal.SIGTERM]  # the handler found at setup was chained
        assert signal.getsignal(signal.SIGTERM) is before  # and is back in place
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert probe.seen == [["ckpt/last.ckpt", "ckpt/last.ckpt.sha256", "ckpt/step-3.ckpt", "ckpt/step-3.ckpt.sha256"]]
    assert safe_torch_load(ident.ckpt_dir / "step-3.ckpt")["global_step"] == 3


def test_checkpoint_now_saves_and_consolidates_before_the_requeue(tmp_path: Path) -> None:
    ident = _identity(tmp_path)
    saved: list = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: saved.append(checkpoint_now()))
    try:
        send = AtStep(3, lambda trainer: os.kill(os.getpid(), signal.SIGUSR2))
        probe = AtStep(4, lambda trainer: _shared_artifacts(ident))
        saver = PeriodicCheckpoint(ident.ckpt_dir, every_n_steps=100)
        _fit(ident.run_dir, [send, saver, ConsolidateCallback(ident, every_checkpoint=False), probe], max_steps=5)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert saved == [ident.ckpt_dir / "step-3.ckpt"]
    assert read_sidecar(saved[0]) == sha256_file(saved[0])
    assert "ckpt/step-3.ckpt" in probe.seen[0] and "ckpt/last.ckpt" in probe.seen[0]
    assert checkpoint_now() is None  # nothing is fitting any more


def test_invalid_schedule_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"every_n_steps \(-1\)"):
        PeriodicCheckpoint(tmp_path, every_n_steps=-1)


def test_checkpoint_now_needs_no_lightning_import() -> None:
    code = "import sys, rna_hpc.job.callbacks as c; assert c.checkpoint_now() is None; print(sorted(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pytorch_lightning" not in result.stdout and "'torch'" not in result.stdout
