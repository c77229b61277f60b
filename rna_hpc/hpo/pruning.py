"""Pruning across jobs: a trial job reports intermediate values to the shared study and stops when told to.

The sweeper starts each trial job with ``trial.study_name=... trial.storage=... trial.number=... trial.stage=...``.
The job calls :func:`report_and_should_prune` once per epoch (the Lightning :class:`OptunaPruningCallback` does it
after each validation). When the stage's pruner (stored by the sweeper in the study's user attrs) says so, the call
records the trial as PRUNED, with its last reported value, and returns True; the job then stops early and returns
normally. The sweeper never overwrites a trial that its job has already finished, so the PRUNED state stays.

``OptunaPruningCallback`` subclasses ``pytorch_lightning.Callback``; it is built on first access so that jobs which
only report (and the sweeper) do not pay Lightning's import.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from rna_hpc import compat
from rna_hpc.errors import ConfigError
from rna_hpc.hpo.trial_job import hydra_output_dir, identity, load_study

log = logging.getLogger(__name__)


def report_and_should_prune(trial_cfg: Any, step: int, value: float, last: bool = False) -> bool:
    """Report ``value`` at ``step`` for the trial named by ``trial_cfg``; True when the job must stop now.

    True means the stage's pruner pruned the trial (now recorded as PRUNED) or the trial was already finished
    by someone else (a previous attempt of a requeued job, or a restarted sweeper that gave it up). The ``last``
    report of a run is never pruned: the trial has done its work and completes with it. A trial of a
    multi-objective study reports nothing and is never pruned.
    """
    import optuna
    from optuna.trial import TrialState

    study_name, storage_spec, number = identity(trial_cfg)
    study = load_study(storage_spec, study_name)
    if len(study.directions) > 1:  # optuna reports and prunes single-objective trials only
        return False
    try:
        trial = optuna.trial.Trial(study, compat.trial_id(study, number))
    except KeyError as e:
        raise ConfigError(f"trial.number: study '{study_name}' has no trial {number}") from e
    state = compat.trial_state(trial)
    if state.is_finished():
        log.warning("trial %s #%d is already %s: stopping", study_name, number, state.name)
        return True
    try:
        trial.report(float(value), int(step))
    except optuna.exceptions.UpdateFinishedTrialError:
        return True
    if last or not trial.should_prune():
        return False
    run_dir = hydra_output_dir()
    if run_dir is not None:  # the sweeper cannot add it once the trial is finished
        trial.set_user_attr("run_dir", run_dir)
    study.tell(number, state=TrialState.PRUNED, skip_if_finished=True)
    log.info("trial %s #%d pruned at step %d (value %.6g)", study_name, number, step, value)
    return True


def _make_callback_class() -> type:
    import pytorch_lightning as pl

    class OptunaPruningCallback(pl.Callback):
        """After each validation, report ``monitor`` to the trial's study; stop the fit when it is pruned.

        Only global rank 0 talks to the storage; its decision is broadcast to every rank, so all of them stop
        at the same epoch. ``pruned`` tells the task afterwards whether the fit ended this way.
        """

        def __init__(self, trial_cfg: Any, monitor: str = "val/tm") -> None:
            super().__init__()
            identity(trial_cfg)
            self.trial_cfg = trial_cfg
            self.monitor = monitor
            self.pruned = False

        def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if trainer.sanity_checking:
                return
            value = trainer.callback_metrics.get(self.monitor)
            if value is None:
                logged = ", ".join(sorted(trainer.callback_metrics)) or "nothing"
                raise ConfigError(f"trial pruning: metric '{self.monitor}' was not logged in validation ({logged})")
            stop = False
            if trainer.is_global_zero:
                last = 0 < (trainer.max_epochs or 0) <= trainer.current_epoch + 1  # the run's final validation
                stop = report_and_should_prune(self.trial_cfg, trainer.current_epoch, float(value), last)
            stop = bool(trainer.strategy.broadcast(stop, src=0))
            if stop:
                self.pruned = True
                trainer.should_stop = True

    return OptunaPruningCallback


@functools.lru_cache(maxsize=1)
def _callback_class() -> type:
    return _make_callback_class()


def __getattr__(name: str) -> Any:
    if name == "OptunaPruningCallback":
        return _callback_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
