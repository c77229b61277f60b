"""What a trial job knows of its study: who it is (``trial.*``), the study (loaded once), and its result.

The sweeper starts each trial job with ``trial.study_name=... trial.storage=... trial.number=... trial.stage=...``
and hands the launcher its task function wrapped in :class:`RecordsTrialResult`: rank 0 of the job stores the value
the task returned as the trial's ``job_result`` user attribute, so a sweeper started again after its predecessor
died tells that result instead of running the trial once more (``rna_hpc.hpo.resume``). No Lightning here: the
sweeper imports this module.
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


def identity(trial_cfg: Any) -> tuple[str, str, int]:
    """``(study name, storage, trial number)`` of a trial job; ConfigError naming what the sweeper did not set."""
    missing = [f"trial.{k}" for k in _REQUIRED if _field(trial_cfg, k) is None]
    if missing:
        raise ConfigError([f"{k}: must be set on a trial job (the sweeper passes it)" for k in missing])
    return str(_field(trial_cfg, "study_name")), str(_field(trial_cfg, "storage")), int(_field(trial_cfg, "number"))


@functools.lru_cache(maxsize=8)
def load_study(storage_spec: str, study_name: str) -> Any:
    """The trial's study, with the stage's pruner (from the study's user attrs), opened once per process."""
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


RESULT_ATTR = "job_result"


def record_result(trial_cfg: Any, value: Any) -> bool:
    """Store ``value`` (a number, or a list of numbers) as trial ``trial_cfg``'s ``job_result``; False when the
    trial already finished (the sweeper told it, or its job pruned it) or the value is not numeric."""
    import optuna
    from omegaconf import ListConfig

    try:
        stored = [float(v) for v in value] if isinstance(value, (list, tuple, ListConfig)) else float(value)
    except (TypeError, ValueError):
        return False
    study_name, storage_spec, number = identity(trial_cfg)
    study = load_study(storage_spec, study_name)
    run_dir = hydra_output_dir()
    try:
        if run_dir is not None:  # what the sweeper would set from the job's return, had it lived
            compat.set_stored_user_attr(study, number, "run_dir", run_dir)
        compat.set_stored_user_attr(study, number, RESULT_ATTR, stored)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    return True


class RecordsTrialResult:
    """A trial job's task function: the user's, then its result recorded in the study (rank 0; never fatal)."""

    def __init__(self, task_function: Any) -> None:
        self.task_function = task_function

    def __call__(self, cfg: Any) -> Any:
        result = self.task_function(cfg)
        trial_cfg = cfg.get("trial") if hasattr(cfg, "get") else None
        if is_trial_job(trial_cfg) and _is_rank_zero():
            try:
                record_result(trial_cfg, result)
            except Exception as e:  # the sweeper still tells the result it receives; only a resume would miss it
                log.warning("trial %s: result not recorded in its study: %s", _field(trial_cfg, "number"), e)
        return result


def _is_rank_zero() -> bool:
    from rna_hpc.launch.env import JobContext

    return JobContext.from_env().global_rank == 0


def hydra_output_dir() -> str | None:
    """The run dir of this job (Hydra's output dir), None outside a Hydra job."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return None
    run_dir = OmegaConf.select(HydraConfig.get(), "runtime.output_dir", default=None, throw_on_missing=False)
    return None if run_dir is None else str(run_dir)
