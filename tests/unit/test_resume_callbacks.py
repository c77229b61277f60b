"""Lifecycle callbacks on a real (tiny) Lightning fit: periodic saves, consolidation, SIGTERM, USR2, exact resume."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint, ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rna_hpc.checkpoint.io import read_sidecar, sha256_file
from rna_hpc.checkpoint.lightning_io import AtomicCheckpointIO
from rna_hpc.checkpoint.manifest import read_manifest, verify_manifest
from rna_hpc.checkpoint.torch_load import safe_torch_load
from rna_hpc.data.sampler import LengthBucketSampler, ResumableDataLoader, training_position
from rna_hpc.errors import ConfigError
from rna_hpc.job.callbacks import (
    ConsolidateCallback,
    GracefulPreemption,
    PeriodicCheckpoint,
    ValidateAtBudgetEnd,
    checkpoint_now,
)
from rna_hpc.job.random_state import RandomState
from rna_hpc.job.resume import find_resume_checkpoint
from rna_hpc.launch.env import JobContext
from rna_hpc.launch.identity import RunIdentity

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


def _trainer(run_dir: Path, callbacks: list, **kwargs) -> pl.Trainer:
    """A quiet one-process CPU trainer: no logger, no checkpoint callbacks but those given, atomic checkpoint IO."""
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=any(isinstance(c, Checkpoint) for c in callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
        plugins=[AtomicCheckpointIO()],
        callbacks=callbacks,
        default_root_dir=run_dir,
        **kwargs,
    )


def _fit(run_dir: Path, callbacks: list, max_steps: int, ckpt_path: Path | None = None) -> pl.Trainer:
    trainer = _trainer(run_dir, callbacks, max_steps=max_steps)
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
    assert names == [f"{n}{s}" for n in ("last.ckpt", "step-6.ckpt", "step-7.ckpt") for s in ("", ".sha256")]
    assert (ckpt / "last.ckpt").stat().st_ino == (ckpt / "step-7.ckpt").stat().st_ino  # the final state, saved at end
    assert read_sidecar(ckpt / "last.ckpt") == sha256_file(ckpt / "step-7.ckpt")
    assert safe_torch_load(ckpt / "last.ckpt")["global_step"] == 7
    assert verify_manifest(ident.shared_dir) == []
    manifest = read_manifest(ident.shared_dir)
    assert _shared_artifacts(ident) == [f"ckpt/{n}" for n in names]
    assert sorted(p.name for p in (ident.shared_dir / "ckpt").iterdir()) == names  # step-2, step-4 pruned there too
    assert manifest["run_id"] == "exp/sweep-1/0" and manifest["config"]["wandb"]["api_key"] == "***"
    assert manifest["ended_at"] is not None and manifest["started_at"] is not None
    assert manifest["metrics"]["train/loss"] >= 0

    resume = find_resume_checkpoint(ident.run_dir, ident.shared_dir)
    assert resume == ckpt / "last.ckpt"
    start = AtStep(7, lambda trainer: trainer.global_step)
    resumed = _fit(ident.run_dir, [start, PeriodicCheckpoint(ckpt, every_n_steps=2)], max_steps=10, ckpt_path=resume)
    assert start.seen == [7] and resumed.global_step == 10
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


class NoisyData(torch.utils.data.Dataset):
    """Items drawn with the global torch RNG, as random crops are."""

    def __init__(self) -> None:
        self.x = torch.randn(22, 4, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.x[index] + 0.01 * torch.randn(4)


class NoisyMLP(TinyMLP):
    """Training noise from the global torch RNG, as diffusion noise is."""

    def training_step(self, batch, batch_idx):
        return nn.functional.mse_loss(self.net(batch + torch.randn_like(batch)), batch.sum(1, keepdim=True))


class ResumableData(pl.LightningDataModule):
    def train_dataloader(self) -> ResumableDataLoader:
        def progress() -> tuple[int, float]:
            return training_position(self.trainer)[0], self.trainer.num_training_batches

        sampler = LengthBucketSampler([1] * 22, batch_size=3, seed=7)  # 8 batches per epoch
        return ResumableDataLoader(NoisyData(), sampler, progress=progress)


class Interrupt(Checkpoint):
    """Stop the fit at ``step``: after its periodic save (``batch_end``), or mid-step after a signal save. A
    `Checkpoint` callback, so Lightning runs it after the savers listed before it."""

    def __init__(self, step: int, where: str) -> None:
        self.step, self.where = step, where

    def _stop(self, trainer, where: str) -> None:
        if trainer.global_step == self.step and self.where == where:
            if where != "batch_end":
                checkpoint_now(trainer)  # as submitit's USR2 handler does, in the middle of a step
            raise RuntimeError("interrupted")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._stop(trainer, "batch_end")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._stop(trainer, "batch_start")

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._stop(trainer, "before_optimizer_step")


class NoisyValidatedMLP(NoisyMLP):
    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.net(batch).pow(2).mean())


class ValidatedData(ResumableData):
    def val_dataloader(self) -> DataLoader:
        return DataLoader(NoisyData(), batch_size=11)


def _fit_noisy(
    run_dir: Path, callbacks: list, ckpt_path: Path | None = None, limit: int | None = None, validate: bool = False
) -> nn.Module:
    pl.seed_everything(3, verbose=False)
    callbacks = [PeriodicCheckpoint(run_dir / "ckpt", every_n_steps=3), RandomState(), *callbacks]
    trainer = _trainer(run_dir, callbacks, max_epochs=3, limit_train_batches=limit, num_sanity_val_steps=0)
    model, data = (NoisyValidatedMLP(), ValidatedData()) if validate else (NoisyMLP(), ResumableData())
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    return trainer.global_step, model


@pytest.mark.parametrize(
    ("step", "where", "limit", "validate"),
    [
        (4, "batch_start", None, False),
        (6, "batch_end", None, False),
        (8, "before_optimizer_step", None, False),
        (3, "batch_end", 3, False),
        (4, "batch_end", 3, True),  # resumed from step 3, saved after epoch 0's validation
    ],
)
def test_interrupted_fit_resumes_exactly(
    tmp_path: Path, step: int, where: str, limit: int | None, validate: bool
) -> None:
    steps, uninterrupted = _fit_noisy(tmp_path / "a", [], limit=limit, validate=validate)
    with pytest.raises(RuntimeError, match="interrupted"):
        _fit_noisy(tmp_path / "b", [Interrupt(step, where)], limit=limit, validate=validate)
    assert checkpoint_now() is None  # the failed fit is no longer registered for signal saves
    resume = find_resume_checkpoint(tmp_path / "b", tmp_path / "none")
    assert safe_torch_load(resume)["global_step"] == (step // 3 * 3 if validate else step)
    resumed_steps, resumed = _fit_noisy(tmp_path / "b", [], ckpt_path=resume, limit=limit, validate=validate)
    print(f"interrupted at step {step} ({where}): {resumed_steps} steps, {steps} uninterrupted")
    assert resumed_steps == steps == 3 * (limit or 8)
    for a, b in zip(uninterrupted.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)  # same batches in the same order, same random numbers


def test_resumed_fit_without_saved_random_states_differs(tmp_path: Path) -> None:
    """The check above can fail: without the saved random states the resumed run draws other noise."""
    _, uninterrupted = _fit_noisy(tmp_path / "a", [])
    with pytest.raises(RuntimeError, match="interrupted"):
        _fit_noisy(tmp_path / "b", [Interrupt(6, "batch_end")])
    resume = find_resume_checkpoint(tmp_path / "b", tmp_path / "none")
    checkpoint = safe_torch_load(resume)
    checkpoint["callbacks"].pop("RandomState")
    torch.save(checkpoint, tmp_path / "no_rng.ckpt")
    _, resumed = _fit_noisy(tmp_path / "b", [], ckpt_path=tmp_path / "no_rng.ckpt")
    assert not all(torch.equal(a, b) for a, b in zip(uninterrupted.parameters(), resumed.parameters(), strict=True))


class ValidatedMLP(TinyMLP):
    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", nn.functional.mse_loss(self.net(x), y))


@pytest.mark.parametrize("validate_at_max_steps", [False, True])
def test_a_step_budget_ending_in_mid_epoch_validates_the_final_weights(
    tmp_path: Path, validate_at_max_steps: bool
) -> None:
    callbacks = [ValidateAtBudgetEnd()] if validate_at_max_steps else []
    trainer = _trainer(tmp_path, callbacks, max_steps=6, num_sanity_val_steps=0)  # 16 batches per epoch
    trainer.fit(ValidatedMLP(), train_dataloaders=_loader(), val_dataloaders=_loader())
    assert trainer.global_step == 6
    assert ("val/loss" in trainer.callback_metrics) is validate_at_max_steps  # Lightning alone skips it


class Validations(pl.Callback):
    """The epochs validated (sanity checks aside); raises in the validation of ``fail_in`` (a kill, say)."""

    def __init__(self, fail_in: int | None = None) -> None:
        self.fail_in, self.epochs = fail_in, []

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.fail_in:
            raise RuntimeError("interrupted")

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.epochs.append(trainer.current_epoch)


def _fit_validated(run_dir: Path, callbacks: list, ckpt_path: Path | None = None, limit_val_batches: int = 1) -> None:
    trainer = _trainer(run_dir, callbacks, max_epochs=3, limit_train_batches=3, limit_val_batches=limit_val_batches)
    trainer.fit(ValidatedMLP(), train_dataloaders=_loader(), val_dataloaders=_loader(), ckpt_path=ckpt_path)


@pytest.mark.parametrize("by", ["schedule", "sigterm"])
def test_a_save_due_before_a_validation_waits_for_it(tmp_path: Path, by: str) -> None:
    """Steps 3 and 6 end epochs. A save due at step 6 (every 2 steps, or asked for by SIGTERM during that step) is
    taken after epoch 1's validation; killed in that validation, the job resumes from step 4 and validates epoch 1.
    Resumed from a step-6 save taken before it, Lightning would go on with epoch 2 and never validate epoch 1."""
    saver = PeriodicCheckpoint(tmp_path / "ckpt", every_n_steps=2 if by == "schedule" else 4)
    callbacks: list = [saver, first := Validations(fail_in=1)]
    if by == "sigterm":
        send = AtStep(5, lambda trainer: os.kill(os.getpid(), signal.SIGTERM))
        callbacks += [send, GracefulPreemption()]
    with pytest.raises(RuntimeError, match="interrupted"):
        _fit_validated(tmp_path, callbacks)
    resume = find_resume_checkpoint(tmp_path, tmp_path / "none")
    assert first.epochs == [0] and safe_torch_load(resume)["global_step"] == 4
    _fit_validated(tmp_path, [PeriodicCheckpoint(tmp_path / "ckpt", every_n_steps=3), second := Validations()], resume)
    assert second.epochs == [1, 2]


class SignalInValidation(pl.Callback):
    """submitit's USR2 handler, in the second batch of epoch 1's validation, then the requeue's exit."""

    def __init__(self) -> None:
        self.saved: list = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.current_epoch == 1 and batch_idx == 1:
            self.saved.append(checkpoint_now(trainer))
            raise RuntimeError("interrupted")


def test_a_signal_save_during_a_validation_leaves_the_job_to_resume_from_the_checkpoint_before(
    tmp_path: Path,
) -> None:
    """Lightning resumes a state saved in mid-validation with the next epoch: epoch 1 would never be validated."""
    ident = _identity(tmp_path)
    signal_save = SignalInValidation()
    callbacks = [PeriodicCheckpoint(ident.ckpt_dir, every_n_steps=2), ConsolidateCallback(ident), signal_save]
    with pytest.raises(RuntimeError, match="interrupted"):
        _fit_validated(ident.run_dir, callbacks, limit_val_batches=3)
    assert signal_save.saved == [None]
    assert "ckpt/step-4.ckpt" in _shared_artifacts(ident)
    resume = find_resume_checkpoint(ident.run_dir, ident.shared_dir)
    assert safe_torch_load(resume)["global_step"] == 4
    second = Validations()
    _fit_validated(ident.run_dir, [PeriodicCheckpoint(ident.ckpt_dir, every_n_steps=2), second], resume)
    assert second.epochs == [1, 2]


class Scores(pl.Callback):
    """The ``val/loss`` of each validation, by the step it followed."""

    def __init__(self) -> None:
        self.by_step: dict[int, float] = {}

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.by_step[trainer.global_step] = float(trainer.callback_metrics["val/loss"])


def test_a_save_after_a_mid_epoch_validation_holds_the_best_checkpoint_state_that_scored_it(tmp_path: Path) -> None:
    """Validations every 2 steps; the step-4 save waits for step 4's and is taken once ModelCheckpoint has scored it,
    so a resumed fit compares its next scores with the right best."""
    best = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="best", monitor="val/loss")
    scores = Scores()
    callbacks = [best, PeriodicCheckpoint(tmp_path / "ckpt", every_n_steps=4), scores]
    trainer = _trainer(tmp_path, callbacks, max_steps=5, val_check_interval=2, limit_val_batches=1)
    trainer.fit(ValidatedMLP(), train_dataloaders=_loader(), val_dataloaders=_loader())
    state = safe_torch_load(tmp_path / "ckpt" / "step-4.ckpt")["callbacks"]
    saved = next(v for k, v in state.items() if k.startswith("ModelCheckpoint"))
    assert sorted(scores.by_step) == [2, 4]
    assert float(saved["current_score"]) == pytest.approx(scores.by_step[4])
    assert float(saved["best_model_score"]) == pytest.approx(min(scores.by_step.values()))


def test_a_save_taken_after_an_epochs_validation_resumes_into_the_next_epoch(tmp_path: Path) -> None:
    """The step-3 save waits for epoch 0's validation; the resumed fit neither repeats it nor skips epoch 1's."""
    first = Validations(fail_in=1)
    with pytest.raises(RuntimeError, match="interrupted"):
        _fit_validated(tmp_path, [PeriodicCheckpoint(tmp_path / "ckpt", every_n_steps=3), first])
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("step-*.ckpt")) == ["step-3.ckpt"]
    resume = find_resume_checkpoint(tmp_path, tmp_path / "none")
    second = Validations()
    _fit_validated(tmp_path, [PeriodicCheckpoint(tmp_path / "ckpt", every_n_steps=3), second], resume)
    assert first.epochs == [0] and second.epochs == [1, 2]
