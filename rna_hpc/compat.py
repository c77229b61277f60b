"""Every private API of Hydra, OmegaConf, submitit, Lightning and Optuna that rna_hpc touches, in one place.

Each function wraps one private name and is covered by ``tests/unit/test_compat.py``, whose failures name the
dependency and its installed version: an upgrade that changes one of them breaks here, not in five modules. Nothing
here imports torch or Lightning (the Lightning helpers take the objects they reach into), so the submit side stays
light.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from omegaconf import DictConfig

# dependency -> the private names this module relies on (the contract test reads this table)
PRIVATE_APIS: dict[str, tuple[str, ...]] = {
    "hydra-core": (
        "hydra._internal.config_loader_impl.ConfigLoaderImpl._apply_overrides_to_config",
        "hydra._internal.config_loader_impl.get_overrides_dirname",
        "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
        "hydra.core.hydra_config.HydraConfig.cfg",
        "hydra.core.utils.JobReturn._return_value",
    ),
    "submitit": (
        "submitit.slurm.slurm._make_sbatch_string",
        "submitit.slurm.slurm.SlurmExecutor._submitit_command_str",
        "submitit.core.utils.DelayedSubmission._timeout_countdown",
        "submitit.core.submission.process_job",
        "submitit.slurm.slurm.SlurmExecutor.affinity",
    ),
    "pytorch-lightning": (
        "pytorch_lightning.trainer.trainer.Trainer._checkpoint_connector",
        "pytorch_lightning.loops.training_epoch_loop._TrainingEpochLoop._should_check_val_fx",
        "pytorch_lightning.loops.fit_loop._FitLoop._data_fetcher",
        "pytorch_lightning.loops.training_epoch_loop._TrainingEpochLoop.done",
        "pytorch_lightning.loggers.mlflow.MLFlowLogger._experiment_id",
        "pytorch_lightning.loggers.mlflow.MLFlowLogger._mlflow_client",
        "pytorch_lightning.loggers.mlflow.MLFlowLogger._experiment_name",
        "pytorch_lightning.loggers.mlflow.MLFlowLogger._artifact_location",
    ),
    "omegaconf": ("omegaconf.base.parse", "omegaconf.basecontainer.BaseContainer._content"),
    "optuna": (
        "optuna.study.Study._storage",
        "optuna.study.Study._study_id",
        "optuna.trial.Trial._cached_frozen_trial",
    ),
}


def version_of(distribution: str) -> str:
    """The installed version of a distribution, for messages; 'not installed' when absent."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# ---- Hydra ------------------------------------------------------------------------------------------------------


def apply_value_overrides(cfg: DictConfig, overrides: Sequence[Any]) -> None:
    """Apply parsed value overrides (``key=v``, ``+key=v``, ``++key=v``, ``~key``) to a composed config in place,
    exactly as Hydra's config loader does after composing the defaults list."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    ConfigLoaderImpl._apply_overrides_to_config(list(overrides), cfg)


def override_dirname(cfg: DictConfig, app_overrides: Sequence[Any]) -> str:
    """``hydra.job.override_dirname`` of a job with these parsed (non-Hydra) overrides, as Hydra computes it."""
    from hydra._internal.config_loader_impl import get_overrides_dirname

    conf = cfg.hydra.job.config.override_dirname
    return get_overrides_dirname(
        overrides=list(app_overrides), kv_sep=conf.kv_sep, item_sep=conf.item_sep, exclude_keys=conf.exclude_keys
    )


def returned_value(ret: Any) -> Any:
    """What a Hydra ``JobReturn`` holds, without raising when it holds the job's error."""
    return ret._return_value


def is_basic_launcher(launcher: Any) -> bool:
    """Whether ``launcher`` is Hydra's built-in in-process launcher."""
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher

    return isinstance(launcher, BasicLauncher)


@contextmanager
def current_hydra_config(cfg: DictConfig) -> Iterator[None]:
    """Make ``cfg`` (a composed job config) the current ``HydraConfig`` for ``${hydra:...}``, then restore the
    previous one. By reference: unlike ``set_config`` it neither copies the config nor makes its ``hydra`` node
    read-only (Hydra offers no way to put back an unset or earlier config)."""
    from hydra.core.hydra_config import HydraConfig

    instance = HydraConfig.instance()
    previous = instance.cfg
    instance.cfg = cfg
    try:
        yield
    finally:
        instance.cfg = previous


# ---- OmegaConf --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def _parse_once(value: str, parser_rule: str = "configValue", lexer_mode: str = "DEFAULT_MODE") -> Any:
    from omegaconf import grammar_parser

    return grammar_parser.parse(value, parser_rule, lexer_mode)


@contextmanager
def interpolations_parsed_once() -> Iterator[None]:
    """While planning a sweep, parse each interpolation string once, not once per job and access.

    OmegaConf parses ``${...}`` with ANTLR at every resolution; the jobs of a sweep resolve the same strings
    thousands of times. Parse trees are only read by OmegaConf's visitor, so sharing them is safe.
    """
    import omegaconf.base

    original = omegaconf.base.parse
    omegaconf.base.parse = _parse_once
    try:
        yield
    finally:
        omegaconf.base.parse = original


def missing_keys(cfg: DictConfig, skip: Sequence[str] = ()) -> list[str]:
    """The dotted keys of every ``???`` in ``cfg`` (top-level keys in ``skip`` left out), read from the nodes
    themselves: nothing resolved or converted, six times faster than walking ``OmegaConf.to_container``, which counts
    when every job of a thousand-job sweep is checked."""
    from omegaconf import ListConfig

    def walk(node: Any, prefix: str) -> Iterator[str]:
        content = node.__dict__["_content"]
        for key, child in content.items() if isinstance(node, DictConfig) else enumerate(content):
            if not prefix and key in skip:
                continue
            if child._is_missing():
                yield f"{prefix}{key}"
            elif isinstance(child, DictConfig | ListConfig) and not child._is_none() and not child._is_interpolation():
                yield from walk(child, f"{prefix}{key}.")

    return list(walk(cfg, ""))


# ---- Optuna -----------------------------------------------------------------------------------------------------


def trial_id(study: Any, number: int) -> int:
    """The storage id of trial ``number`` of ``study``; KeyError when the study has no such trial."""
    return study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)


def stored_trial(study: Any, number: int) -> Any:
    """Trial ``number`` of ``study`` as the storage has it now (a ``FrozenTrial``), without listing the study."""
    return study._storage.get_trial(trial_id(study, number))


def set_stored_user_attr(study: Any, number: int, key: str, value: Any) -> None:
    """Set a user attribute of trial ``number`` (unfinished) from outside its objective, as ``Trial.set_user_attr``."""
    study._storage.set_trial_user_attr(trial_id(study, number), key, value)


def trial_state(trial: Any) -> Any:
    """The state an ``optuna.trial.Trial`` was created with (read from the storage when it was constructed)."""
    return trial._cached_frozen_trial.state


# ---- submitit ---------------------------------------------------------------------------------------------------


def sbatch_script(executor: Any, count: int | None) -> str:
    """The exact sbatch script a ``submitit.AutoExecutor`` for Slurm submits; an array of ``count`` when given."""
    from submitit.slurm.slurm import _make_sbatch_string

    inner = executor._executor
    return _make_sbatch_string(
        command=inner._submitit_command_str, folder=inner.folder, map_count=count, **inner.parameters
    )


@contextmanager
def slurm_commands_optional() -> Iterator[None]:
    """Let submitit build a Slurm executor on a host without ``srun`` (for a dry run, which only prints scripts).

    submitit refuses ("Could not detect srun") through ``SlurmExecutor.affinity``; it is answered for the duration
    of the block only, and only when ``srun`` is missing.
    """
    import shutil

    from submitit.slurm.slurm import SlurmExecutor

    if shutil.which("srun") is not None:
        yield
        return
    original = SlurmExecutor.__dict__["affinity"]
    SlurmExecutor.affinity = classmethod(lambda cls: 1)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        SlurmExecutor.affinity = original  # type: ignore[method-assign]


def timeout_countdown(delayed: Any) -> int:
    """The time-limit requeues a ``DelayedSubmission`` has left (submitit counts them down in the job's pickle)."""
    return int(delayed._timeout_countdown)


def run_submitit_job(folder: str) -> None:
    """Run a submitted job in this process, as submitit's own ``python -m submitit.core._submit <folder>`` does."""
    from submitit.core.submission import process_job

    process_job(folder)


# ---- Lightning --------------------------------------------------------------------------------------------------


def dump_checkpoint(trainer: Any) -> dict[str, Any]:
    """The full checkpoint dict of a running fit, built without collectives (safe on rank 0 alone)."""
    return trainer._checkpoint_connector.dump_checkpoint(weights_only=False)


def validates_after_step(trainer: Any) -> bool:
    """Whether Lightning validates right after the training step that just ended (asked in ``on_train_batch_end``,
    with the answer the loop will give: an epoch's end, a ``val_check_interval``, a requested stop)."""
    return bool(trainer.fit_loop.epoch_loop._should_check_val_fx(trainer.fit_loop._data_fetcher))


def epoch_ends_after_step(trainer: Any) -> bool:
    """Whether the training epoch ends after the step that just ended (its last batch, ``max_steps``, a stop)."""
    return bool(trainer.fit_loop.epoch_loop.done)


def choose_mlflow_experiment(logger: Any, ensure: Callable[[Any, str, str | None], str]) -> None:
    """Before a Lightning ``MLFlowLogger`` creates its run, fix its experiment to ``ensure(client, name,
    artifact_location)`` (Lightning's own lookup-then-create races between the jobs of a sweep)."""
    if not logger._initialized and logger._experiment_id is None and logger._run_id is None:
        logger._experiment_id = ensure(logger._mlflow_client, logger._experiment_name, logger._artifact_location)
