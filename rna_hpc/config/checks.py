"""The checks an app declares for its own config, which the rna_hpc launchers run on every job before submitting any.

Any Hydra app can run under ``hydra/launcher=slurm`` or ``local``. The launchers always apply their own checks
(resources against the trainer where a trainer exists, paths, partition, injection, umask); the app adds its rules
by marking its task function::

    from rna_hpc.launch import validated_by

    def check(cfg: DictConfig) -> list[str]:
        return [] if cfg.lr > 0 else [f"lr: must be positive, is {cfg.lr}"]

    @hydra.main(version_base="1.3", config_path="conf", config_name="config")
    @validated_by(check)
    def main(cfg: DictConfig) -> float: ...

A check takes one composed job config and returns ``key: why`` lines (or raises ``rna_hpc.errors.ConfigError``).
The launcher collects the lines of every job of the sweep and submits nothing when there is any.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from omegaconf import DictConfig

from rna_hpc.errors import ConfigError

Check = Callable[[DictConfig], Iterable[str] | None]
F = TypeVar("F", bound=Callable[..., Any])
_ATTRIBUTE = "__rna_hpc_checks__"


def validated_by(*checks: Check) -> Callable[[F], F]:
    """Declare ``checks`` for a task function (apply it under ``@hydra.main``); the function itself is unchanged."""

    def mark(task_function: F) -> F:
        setattr(task_function, _ATTRIBUTE, (*checks_of(task_function), *checks))
        return task_function

    return mark


def checks_of(task_function: Any) -> tuple[Check, ...]:
    """The checks declared for ``task_function``; none for an app that declares nothing."""
    return tuple(getattr(task_function, _ATTRIBUTE, ()))


def run_checks(checks: Iterable[Check], cfg: DictConfig) -> list[str]:
    """Every ``key: why`` line of ``checks`` on ``cfg``; a check that fails itself is reported, not raised."""
    problems: list[str] = []
    for check in checks:
        try:
            problems.extend(check(cfg) or [])
        except ConfigError as err:
            problems.extend(err.problems)
        except Exception as err:  # a broken check must not hide the others' findings
            name = getattr(check, "__qualname__", repr(check))
            problems.append(f"{name}: {type(err).__name__}: {' '.join(str(err).split())}")
    return problems
