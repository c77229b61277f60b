"""Task functions written the way hydra-optuna-sweeper's examples are: the sphere, Binh and Korn's two objectives,
a ``custom_search_space`` hook; plus a sphere that reports one value per epoch, so the stages' pruners can act.

The configs in ``conf/`` use hydra-optuna-sweeper's documented vocabulary only (``override hydra/sweeper: ...``,
``hydra/sweeper/sampler``, ``direction``, ``params``, ``custom_search_space``), with ``staged_optuna`` as the sweeper.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from rna_hpc.hpo.pruning import report_and_should_prune
from rna_hpc.hpo.trial_job import is_trial_job


def sphere(cfg: DictConfig) -> float:
    return float(cfg.x) ** 2 + float(cfg.y) ** 2


def binh_and_korn(cfg: DictConfig) -> tuple[float, float]:
    x, y = float(cfg.x), float(cfg.y)
    if not (0 <= x <= 5 and 0 <= y <= 3):
        raise ValueError(f"out of the domain: x={x}, y={y}")
    return 4 * x**2 + 4 * y**2, (x - 5) ** 2 + (y - 5) ** 2


def configure(cfg: DictConfig, trial: Any) -> None:
    """The custom search space: ``z`` within ``max_z_difference_from_x`` of the sampled ``x``, and a new key ``w``."""
    x = trial.params["x"]
    trial.suggest_float("z", x - cfg.max_z_difference_from_x, x + cfg.max_z_difference_from_x)
    trial.suggest_float("+w", 0.0, 1.0)


def sphere_with_z(cfg: DictConfig) -> float:
    return sphere(cfg) + float(cfg.z) ** 2 + float(cfg.w)


def sphere_by_epoch(cfg: DictConfig) -> float:
    """The sphere 'trained' for ``epochs`` epochs: at each epoch it reports ``1 + |epoch - 2| / 3`` times the
    sphere (better for three epochs, then worse: it overfits) and stops when its trial is pruned."""
    final = sphere(cfg)
    value = final
    for epoch in range(int(cfg.epochs)):
        value = final * (1 + abs(epoch - 2) / 3)
        if is_trial_job(cfg.get("trial")) and report_and_should_prune(cfg.trial, epoch, value):
            return value
    return value
