"""Lightning callbacks of a job's lifecycle: periodic checkpoints, consolidation, preemption and timeout saves.

- ``PeriodicCheckpoint(dirpath, every_n_steps, every_minutes)``: ``step-<N>.ckpt`` plus ``last.ckpt`` (a hard link),
  each with its sha256 sidecar, keeping the newest ``keep`` step files; the final state is saved at train end. A
  save due at a step that Lightning validates after waits for that validation: resumed from a checkpoint taken
  before it, Lightning goes on with the next step and the validation is never run. It and ``GracefulPreemption``
  are `Checkpoint` callbacks, which Lightning runs after the others: listed after the ``ModelCheckpoint``, such a
  save holds the best-checkpoint state that has scored the validation.
- ``ConsolidateCallback(identity, every_checkpoint, manifest_fields)``: on rank 0, copies the run's artifacts to
  shared storage after checkpoint saves (when ``every_checkpoint``), after urgent saves, and at fit end.
- ``GracefulPreemption()``: on SIGTERM (preemption, ``scontrol requeue``) saves and consolidates at the next step
  boundary and lets training go on until Slurm's SIGKILL. It replaces Lightning's own SIGTERM handler during the
  fit (which would end the fit and let the task return a partial result) and chains the handler found at setup.
- ``RandomState()`` (:mod:`rna_hpc.job.random_state`) keeps the global random states in checkpoints.
- ``KeepEarlierCurve()``: a resumed fit logs the learning curve of its earlier attempts, up to the checkpoint's step,
  again through :class:`rna_hpc.loggers.resumable_csv.CSVLogger` (Lightning's CSV writer starts a new file).
- ``ValidateAtBudgetEnd()``: a budget of ``trainer.max_steps`` or ``trainer.max_time`` that ends in mid-epoch
  validates the final weights (Lightning would stop there without a validation, leaving the objective unlogged).
- :func:`checkpoint_now`: for the launcher's ``checkpoint()`` on submitit's USR2 (timeout): rank 0 saves and
  consolidates before submitit requeues the job.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pytorch_lightning as pl
from pytorch_lightning import Callback
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO

from rna_hpc import compat
from rna_hpc.checkpoint.consolidate import DEFAULT_INCLUDE, collect_artifacts, consolidate
from rna_hpc.checkpoint.io import (
    atomic_link_or_copy,
    read_sidecar,
    remove_checkpoint,
    remove_file,
    remove_stale_temps,
    secure_mkdir,
    sidecar_path,
    write_sidecar,
)
from rna_hpc.checkpoint.lightning_io import AtomicCheckpointIO
from rna_hpc.checkpoint.manifest import build_manifest, utc_now
from rna_hpc.errors import ConfigError
from rna_hpc.launch.identity import RunIdentity
from rna_hpc.launch.requeue import before_requeue
from rna_hpc.loggers.resumable_csv import CSVLogger

log = logging.getLogger(__name__)
_ACTIVE: list[pl.Trainer] = []  # trainers fitting in this process with a PeriodicCheckpoint (for checkpoint_now)
_STEP_FILE = re.compile(r"^step-(\d+)\.ckpt$")
STEP_CHECKPOINTS = ("ckpt/step-*.ckpt", "ckpt/step-*.ckpt.sha256")


def _atomic_io(trainer: pl.Trainer) -> AtomicCheckpointIO:
    """The trainer's AtomicCheckpointIO; the default TorchCheckpointIO is replaced by it, any other IO refused."""
    io = trainer.strategy.checkpoint_io
    if type(io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = io = AtomicCheckpointIO()
    if not isinstance(io, AtomicCheckpointIO):
        raise ConfigError(f"trainer plugins: checkpoints need AtomicCheckpointIO, the trainer uses {type(io).__name__}")
    return io


def _notify_saved(trainer: pl.Trainer, urgent: bool) -> None:
    for callback in trainer.callbacks:
        if isinstance(callback, ConsolidateCallback):
            callback.on_checkpoint_saved(trainer, urgent)


class _DeferredSave(NamedTuple):
    """A save waiting for the validation after its step: in ``on_train_epoch_end`` when the epoch ends there."""

    urgent: bool
    at_epoch_end: bool


class PeriodicCheckpoint(Checkpoint):
    """Save ``step-<N>.ckpt`` + ``last.ckpt`` every ``every_n_steps`` steps and/or ``every_minutes`` minutes.

    A `Checkpoint` callback: Lightning runs its hooks after those of every other callback, in list order among
    checkpoint callbacks, so one listed after the `ModelCheckpoint` saves once that has scored a validation.
    """

    def __init__(self, dirpath: str | Path, every_n_steps: int = 0, every_minutes: float = 0.0, keep: int = 2) -> None:
        if every_n_steps < 0 or every_minutes < 0 or keep < 1:
            raise ConfigError(
                f"checkpoint: every_n_steps ({every_n_steps}) and every_minutes ({every_minutes}) must be >= 0, "
                f"keep ({keep}) >= 1"
            )
        self.dirpath = Path(dirpath)
        self.every_n_steps = every_n_steps
        self.every_minutes = every_minutes
        self.keep = keep
        self._last_step = -1
        self._last_time = time.monotonic()
        self._deferred: _DeferredSave | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        _atomic_io(trainer)
        if trainer.is_global_zero:
            secure_mkdir(self.dirpath)
            remove_stale_temps(self.dirpath)
        if trainer not in _ACTIVE:
            _ACTIVE.append(trainer)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer in _ACTIVE:
            _ACTIVE.remove(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.teardown(trainer, pl_module, "fit")  # Lightning skips teardown hooks when the fit raises

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_step, self._last_time = trainer.global_step, time.monotonic()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step == self._last_step:
            return
        due = self.every_n_steps > 0 and step % self.every_n_steps == 0
        if self.every_minutes > 0:  # clocks differ between ranks: rank decisions are combined
            late = time.monotonic() - self._last_time >= 60 * self.every_minutes
            due = trainer.strategy.reduce_boolean_decision(due or late, all=False)
        if due:
            self.save_after_step(trainer)

    def save_after_step(self, trainer: pl.Trainer, urgent: bool = False) -> None:
        """In ``on_train_batch_end``: save now, or after the validation that follows this step (once the epoch's end
        hooks ran when the epoch ends there, so the best-checkpoint state has seen that validation)."""
        if not compat.validates_after_step(trainer):
            self.save_now(trainer, urgent=urgent)
            return
        urgent = urgent or (self._deferred is not None and self._deferred.urgent)
        self._deferred = _DeferredSave(urgent, at_epoch_end=compat.epoch_ends_after_step(trainer))

    def _save_deferred(self, trainer: pl.Trainer, at_epoch_end: bool) -> None:
        deferred = self._deferred
        if deferred is not None and (at_epoch_end or not deferred.at_epoch_end):
            self._deferred = None
            self.save_now(trainer, urgent=deferred.urgent)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._save_deferred(trainer, at_epoch_end=False)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save_deferred(trainer, at_epoch_end=True)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Save the final state as well: ``last.ckpt`` is where the fit ended (a finished run restarted is a no-op)."""
        self._deferred = None
        self.save_now(trainer, again=True)

    def save_now(self, trainer: pl.Trainer, urgent: bool = False, again: bool = False) -> Path:
        """Save on every rank together (rank 0 writes); then consolidation callbacks run.

        A step saved already is not saved again unless ``again`` (its state changed since: validation, epoch end).
        """
        path = self.dirpath / f"step-{trainer.global_step}.ckpt"
        if trainer.global_step == self._last_step and not again:
            _notify_saved(trainer, urgent)
            return path
        trainer.save_checkpoint(path, weights_only=False)  # full state: optimizer and loops, to resume
        self._after_save(trainer, path, urgent)
        return path

    def save_on_rank_zero(self, trainer: pl.Trainer) -> Path | None:
        """Save from rank 0 alone, without collectives (a signal handler); None on other ranks, and during a
        validation: Lightning resumes that state after the validation without running it, so the job resumes from
        the checkpoint before (consolidated now) and validates again."""
        if not trainer.is_global_zero:
            return None
        if trainer.validating and not trainer.sanity_checking:
            log.warning("signal during a validation: no checkpoint of it, the job resumes from the one before")
            _notify_saved(trainer, urgent=True)
            return None
        path = self.dirpath / f"step-{trainer.global_step}.ckpt"
        checkpoint = compat.dump_checkpoint(trainer)
        _atomic_io(trainer).save_checkpoint(checkpoint, path)
        self._after_save(trainer, path, urgent=True, collective=False)
        return path

    def _after_save(self, trainer: pl.Trainer, path: Path, urgent: bool, collective: bool = True) -> None:
        if trainer.is_global_zero:
            self._link_last(path)
            self._prune()
        if collective:  # every rank must keep the same schedule
            self._last_step, self._last_time = trainer.global_step, time.monotonic()
        _notify_saved(trainer, urgent)

    def _link_last(self, path: Path) -> None:
        last = self.dirpath / "last.ckpt"
        digest = read_sidecar(path)
        remove_file(sidecar_path(last))
        atomic_link_or_copy(path, last)
        if digest:
            write_sidecar(last, digest)

    def _prune(self) -> None:
        steps = sorted(
            (int(m.group(1)), p) for p in self.dirpath.iterdir() if (m := _STEP_FILE.match(p.name)) is not None
        )
        for _, path in steps[: -self.keep]:
            remove_checkpoint(path)


class ConsolidateCallback(Callback):
    """Consolidate the run dir to ``identity.shared_dir`` on rank 0: after saves and at fit end.

    ``manifest_fields`` are keyword arguments of :func:`rna_hpc.checkpoint.manifest.build_manifest`
    (``config``, ``job``, ``started_at``); metrics and the end time are added here.
    """

    def __init__(
        self,
        identity: RunIdentity,
        every_checkpoint: bool = True,
        manifest_fields: Mapping[str, Any] | None = None,
        include: tuple[str, ...] | list[str] = DEFAULT_INCLUDE,
        umask: int = 0o022,
    ) -> None:
        self.identity = identity
        self.every_checkpoint = every_checkpoint
        self.manifest_fields = dict(manifest_fields or {})
        self.include = tuple(include)
        self.umask = umask
        self._saves_seen = 0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.manifest_fields.setdefault("started_at", utc_now())

    def on_checkpoint_saved(self, trainer: pl.Trainer, urgent: bool) -> None:
        if urgent or self.every_checkpoint:
            self.consolidate_now(trainer)

    def _other_saves(self, trainer: pl.Trainer) -> None:
        """Consolidate after saves by other callbacks (ModelCheckpoint), noticed through the IO's save count."""
        saves = getattr(trainer.strategy.checkpoint_io, "saves", 0)
        if self.every_checkpoint and saves != self._saves_seen:
            self.consolidate_now(trainer)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._other_saves(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._other_saves(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.consolidate_now(trainer, ended=True)

    def consolidate_now(self, trainer: pl.Trainer, ended: bool = False) -> Path | None:
        """Consolidate now (rank 0 only); return the shared manifest's path, None on other ranks."""
        self._saves_seen = getattr(trainer.strategy.checkpoint_io, "saves", 0)
        if not trainer.is_global_zero:
            return None
        metrics = {k: v for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
        fields = build_manifest(
            self.identity.run_id, **self.manifest_fields, metrics=metrics, ended_at=utc_now() if ended else None
        )
        fields.pop("artifacts")
        files = collect_artifacts(self.identity.run_dir, self.include)
        return consolidate(
            self.identity.run_dir,
            self.identity.shared_dir,
            files=files,
            manifest_fields=fields,
            umask=self.umask,
            prune=STEP_CHECKPOINTS,  # shared storage keeps the step files scratch keeps
        )


class GracefulPreemption(Checkpoint):
    """On ``signum`` (SIGTERM), save and consolidate at the next step boundary, then keep training (a `Checkpoint`
    callback, as `PeriodicCheckpoint`)."""

    def __init__(self, signum: int = signal.SIGTERM, dirpath: str | Path | None = None) -> None:
        self.signum = signum
        self.dirpath = None if dirpath is None else Path(dirpath)
        self._requested = False
        self._previous: Any = None
        self._saver: PeriodicCheckpoint | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._previous = signal.getsignal(self.signum)  # before Lightning installs its own handler
        self._saver = _find_saver(trainer) or PeriodicCheckpoint(self.dirpath or _default_ckpt_dir(trainer))
        if self._saver not in trainer.callbacks:
            self._saver.setup(trainer, pl_module, stage)

    def _install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(self.signum, self._handle)

    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._install()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._install()

    def _handle(self, signum: int, frame: Any) -> None:
        log.warning("received signal %s: checkpoint at the next step, training continues", signum)
        self._requested = True
        if callable(self._previous):
            self._previous(signum, frame)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        requested = self._requested
        if trainer.world_size > 1:
            requested = trainer.strategy.reduce_boolean_decision(requested, all=False)
        if requested and self._saver is not None:
            self._requested = False
            self._saver.save_after_step(trainer, urgent=True)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._saver is not None and self._saver not in trainer.callbacks:
            self._saver.on_validation_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._saver is not None and self._saver not in trainer.callbacks:
            self._saver.on_train_epoch_end(trainer, pl_module)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.teardown(trainer, pl_module, "fit")  # Lightning skips teardown hooks when the fit raises

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if signal.getsignal(self.signum) == self._handle and threading.current_thread() is threading.main_thread():
            signal.signal(self.signum, self._previous if self._previous is not None else signal.SIG_DFL)
        if self._saver is not None and self._saver not in trainer.callbacks:
            self._saver.teardown(trainer, pl_module, stage)


def _find_saver(trainer: pl.Trainer) -> PeriodicCheckpoint | None:
    return next((c for c in trainer.callbacks if isinstance(c, PeriodicCheckpoint)), None)


def _default_ckpt_dir(trainer: pl.Trainer) -> Path:
    best = trainer.checkpoint_callback
    dirpath = getattr(best, "dirpath", None)
    return Path(dirpath) if dirpath else Path(trainer.default_root_dir) / "ckpt"


@before_requeue
def checkpoint_now(trainer: pl.Trainer | None = None) -> Path | None:
    """Save (rank 0, no collectives) and consolidate now; for the launcher's ``checkpoint()`` on USR2.

    ``trainer`` defaults to the one fitting in this process; returns the checkpoint, or None when nothing is
    fitting, this is not rank 0, a validation is running (see :meth:`PeriodicCheckpoint.save_on_rank_zero`), or the
    trainer has neither a PeriodicCheckpoint nor a GracefulPreemption.
    """
    trainer = trainer if trainer is not None else (_ACTIVE[-1] if _ACTIVE else None)
    if trainer is None:
        return None
    saver = _find_saver(trainer)
    if saver is None:
        preemption = next((c for c in trainer.callbacks if isinstance(c, GracefulPreemption)), None)
        saver = preemption._saver if preemption is not None else None
    return saver.save_on_rank_zero(trainer) if saver is not None else None


class KeepEarlierCurve(Callback):
    """A resumed fit keeps the ``metrics.csv`` rows its earlier attempts logged up to the resumed checkpoint's step."""

    def __init__(self) -> None:
        self.resumed_step: int | None = None

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        self.resumed_step = int(checkpoint.get("global_step", 0))

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger):
                logger.keep_earlier(self.resumed_step)


class ValidateAtBudgetEnd(Callback):
    """Validate once more when ``trainer.max_steps`` or ``trainer.max_time`` ends training in mid-epoch.

    Lightning stops at ``max_steps`` without validating unless the step ends an epoch, and at ``max_time`` only
    validates in an epoch that ``check_val_every_n_epoch`` selects. At the last step this asks the loop to stop and
    lifts the epoch interval, so the loop validates first (as early stopping does): the objective and the best
    checkpoint see the final weights.
    """

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        at_max_steps = 0 < trainer.max_steps <= trainer.global_step
        if at_max_steps or self._time_is_up(trainer):
            trainer.should_stop = True
            trainer.check_val_every_n_epoch = None  # the stopping step validates whatever the epoch

    @staticmethod
    def _time_is_up(trainer: pl.Trainer) -> bool:
        """Whether Lightning's ``max_time`` timer stops training after this step (the same answer on every rank).

        Within a second of the limit counts as up: the timer, which checks after this callback, must not be the
        first to see it (it would stop without lifting the epoch interval).
        """
        from pytorch_lightning.callbacks import Timer

        timers = [c for c in trainer.callbacks if isinstance(c, Timer)]
        remaining = timers[0].time_remaining() if timers else None
        if remaining is None:
            return False
        return bool(trainer.strategy.broadcast(remaining <= 1.0))
