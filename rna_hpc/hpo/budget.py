"""Budget of a search before it starts: trials x epochs per stage, core-hours and GPU-hours.

A trial's time is ``max_epochs * epoch_seconds * data.fraction`` (read from the stage's overrides, else from the
composed config); its resources are the launcher's (``nodes``, ``tasks_per_node``, ``cpus_per_task``,
``gpus_per_node``/``gpus_per_task``/``gres``; a GPU trainer without them counts ``trainer.devices`` per node).
Pruning only shortens trials, so the estimate is an upper bound.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rna_hpc.hpo.errors import SweepConfigError
from rna_hpc.hpo.space import override_key

EPOCHS_KEY = "trainer.max_epochs"
FRACTION_KEY = "data.fraction"


@dataclass
class JobResources:
    cores: int
    gpus: int


@dataclass
class BudgetLine:
    name: str
    trials: int
    epochs: int | None
    fraction: float
    core_hours: float | None
    gpu_hours: float | None


def _select(cfg: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key, default=None)
    except Exception:  # an interpolation that only resolves inside a job
        return None


def job_resources(cfg: DictConfig) -> JobResources:
    """Cores and GPUs one trial job holds, from the launcher config (and the trainer for GPU counts)."""
    launcher = _select(cfg, "hydra.launcher") or {}
    nodes = int(launcher.get("nodes") or 1)
    tasks = int(launcher.get("tasks_per_node") or 1)
    cores = nodes * tasks * int(launcher.get("cpus_per_task") or 1)
    gpus_per_node = launcher.get("gpus_per_node") or 0
    if not gpus_per_node and launcher.get("gpus_per_task"):
        gpus_per_node = int(launcher["gpus_per_task"]) * tasks
    match = re.search(r"gpu(?::[^:,]+)?:(\d+)", str(launcher.get("gres") or ""))
    if not gpus_per_node and match:
        gpus_per_node = int(match.group(1))
    gpus = nodes * int(gpus_per_node)
    if not gpus and str(_select(cfg, "trainer.accelerator")) in ("gpu", "cuda"):
        gpus = int(_select(cfg, "trainer.devices") or 1) * int(_select(cfg, "trainer.num_nodes") or 1)
    return JobResources(cores=cores, gpus=gpus)


def _override_value(overrides: Sequence[str], key: str) -> str | None:
    value = None
    for o in overrides:
        if override_key(o) == key:
            value = o.split("=", 1)[1].strip()
    return value


def trial_budget(overrides: Sequence[str], cfg: DictConfig) -> tuple[int | None, float]:
    """(epochs, data fraction) of one trial run with ``overrides`` on top of ``cfg``."""
    epochs = _override_value(overrides, EPOCHS_KEY) or _select(cfg, EPOCHS_KEY)
    fraction = _override_value(overrides, FRACTION_KEY) or _select(cfg, FRACTION_KEY) or 1.0
    try:
        return (None if epochs is None else int(float(epochs))), float(fraction)
    except ValueError as e:
        raise SweepConfigError(f"{EPOCHS_KEY} / {FRACTION_KEY}: not a number ({e})") from e


def budget_line(
    name: str, trials: int, overrides: Sequence[str], cfg: DictConfig, epoch_seconds: float | None, res: JobResources
) -> BudgetLine:
    epochs, fraction = trial_budget(overrides, cfg)
    if epoch_seconds is None or epochs is None:
        return BudgetLine(name, trials, epochs, fraction, None, None)
    hours = trials * epochs * epoch_seconds * fraction / 3600.0
    return BudgetLine(name, trials, epochs, fraction, hours * res.cores, hours * res.gpus)


def format_budget(lines: Sequence[BudgetLine], res: JobResources) -> str:
    rows = [f"search plan ({res.cores} cores, {res.gpus} GPUs per trial job):"]
    for b in lines:
        cost = (
            "n/a (set hydra.sweeper.epoch_seconds)"
            if b.core_hours is None
            else (f"{b.core_hours:.2f} core-h, {b.gpu_hours:.2f} GPU-h")
        )
        rows.append(f"  {b.name:<16} {b.trials:>4} trials x {b.epochs} epochs x data {b.fraction:g}: {cost}")
    total_c, total_g = total_hours(lines)
    if total_c is not None:
        rows.append(f"  {'total':<16} {total_c:.2f} core-hours, {total_g:.2f} GPU-hours (upper bound: no pruning)")
    return "\n".join(rows)


def total_hours(lines: Sequence[BudgetLine]) -> tuple[float | None, float | None]:
    if any(b.core_hours is None for b in lines if b.trials):
        return None, None
    return sum(b.core_hours or 0.0 for b in lines), sum(b.gpu_hours or 0.0 for b in lines)


def check_budget(lines: Sequence[BudgetLine], max_gpu_hours: float | None, allow_over_budget: bool) -> None:
    """Refuse a plan whose estimated GPU-hours exceed ``max_gpu_hours`` (unless ``allow_over_budget``)."""
    if max_gpu_hours is None or allow_over_budget:
        return
    _, gpu_hours = total_hours(lines)
    if gpu_hours is None:
        raise SweepConfigError("hydra.sweeper.epoch_seconds: needed to check hydra.sweeper.max_gpu_hours")
    if gpu_hours > max_gpu_hours:
        raise SweepConfigError(
            f"hydra.sweeper.max_gpu_hours: the plan needs an estimated {gpu_hours:.1f} GPU-hours (> {max_gpu_hours:g});"
            " lower n_trials or budgets, or set hydra.sweeper.allow_over_budget=true"
        )
