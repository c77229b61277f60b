"""The Sweeper class Hydra discovers; the work happens in ``_impl`` (imported on use, so discovery stays fast)."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from .config import StagedOptunaSweeperConf  # noqa: F401  (registers the configs when Hydra scans the plugin)


class StagedOptunaSweeper(Sweeper):
    """Staged Optuna search: each stage a study, narrowed from the previous one, then a multi-seed refit."""

    def __init__(self, **settings: Any) -> None:
        from ._impl import StagedOptunaSweeperImpl

        self.sweeper = StagedOptunaSweeperImpl(**settings)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.sweeper.sweep(arguments)
