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
from collections.abc import Mapping
from typing import Any

from rna_hpc import compat
from rna_hpc.errors import ConfigError

log = logging.getLogger(__name__)

_REQUIRED = ("study_name", "storage", "number")


def _field(cfg: Any, name: str) -> Any:
    if cfg is None:
        return None
    if isinstance(cfg, Mapping) or hasattr(cfg, "get"):
        return cfg.get(name)
    return getattr(cfg, name, None)


def is_trial_job(trial_cfg: Any) -> bool:
    """True when the sweeper started this job as a trial (``trial.number`` is set)."""
    return _field(trial_cfg, "number") is not None


def _identity(trial_cfg: Any) -> tuple[str, str, int]:
    missing = [f"trial.{k}" for k in _REQUIRED if _field(trial_cfg, k) is None]
    if missing:
        raise ConfigError([f"{k}: must be set on a trial job (the sweeper passes it)" for k in missing])
    return str(_field(trial_cfg, "study_name")), str(_field(trial_cfg, "storage")), int(_field(trial_cfg, "number"))


@functools.lru_cache(maxsize=8)
def _load_study(storage_spec: str, study_name: str) -> Any:
    import optuna
    from hydra.utils import instantiate

    from rna_hpc.hpo.storage import make_storage

    storage = make_storage(storage_spec)
    try:
        summary = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError as e:
        raise ConfigError(f"trial.study_name: no study '{study_name}' in '{storage_spec}'") from e
    pruner_cfg = summary.user_attrs.get("pruner")
    pruner = instantiate(pruner_cfg) if pruner_cfg else optuna.pruners.NopPruner()
    # The job never samples: a RandomSampler keeps Trial() construction cheap.
    return optuna.load_study(
        study_name=study_name, storage=storage, pruner=pruner, sampler=optuna.samplers.RandomSampler()
    )


def report_and_should_prune(trial_cfg: Any, step: int, value: float, last: bool = False) -> bool:
    """Report ``value`` at ``step`` for the trial named by ``trial_cfg``; True when the job must stop now.

    True means the stage's pruner pruned the trial (now recorded as PRUNED) or the trial was already finished
    by someone else (a previous attempt of a requeued job, or a restarted sweeper that gave it up). The ``last``
    report of a run is never pruned: the trial has done its work and completes with it. A trial of a
    multi-objective study reports nothing and is never pruned.
    """
    import optuna
    from optuna.trial import TrialState

    study_name, storage_spec, number = _identity(trial_cfg)
    study = _load_study(storage_spec, study_name)
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
    run_dir = _hydra_output_dir()
    if run_dir is not None:  # the sweeper cannot add it once the trial is finished
        trial.set_user_attr("run_dir", run_dir)
    study.tell(number, state=TrialState.PRUNED, skip_if_finished=True)
    log.info("trial %s #%d pruned at step %d (value %.6g)", study_name, number, step, value)
    return True


def _hydra_output_dir() -> str | None:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return None
    run_dir = OmegaConf.select(HydraConfig.get(), "runtime.output_dir", default=None, throw_on_missing=False)
    return None if run_dir is None else str(run_dir)


def _make_callback_class() -> type:
    import pytorch_lightning as pl

    class OptunaPruningCallback(pl.Callback):
        """After each validation, report ``monitor`` to the trial's study; stop the fit when it is pruned.

        Only global rank 0 talks to the storage; its decision is broadcast to every rank, so all of them stop
        at the same epoch. ``pruned`` tells the task afterwards whether the fit ended this way.
        """

        def __init__(self, trial_cfg: Any, monitor: str = "val/tm") -> None:
            super().__init__()
            _identity(trial_cfg)
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
