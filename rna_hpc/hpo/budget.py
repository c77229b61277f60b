"""Budget of a search before it starts: trials x epochs per stage, core-hours and GPU-hours.

A trial's time is ``max_epochs * epoch_seconds * data.fraction`` (read from the stage's overrides, else from the
composed config), at most its wall-clock budget ``trainer.max_time`` (which alone gives the estimate without
``epoch_seconds``); its resources are the launcher's (``nodes`` x ``tasks_per_node`` x ``cpus_per_task`` cores;
``gpus_per_node``/``gpus_per_task``/``gres`` GPUs; a GPU trainer without them counts ``trainer.devices`` per node).
Pruning only shortens trials, so the estimate is an upper bound. A launcher with a time limit (``timeout_min``, as
Slurm's) also bounds what each trial job can be charged: that bound, or ``trainer.max_time`` where it is shorter
(Lightning's timer counts across requeues), is printed beside the estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rna_hpc.config.validate import max_time_minutes
from rna_hpc.hpo.errors import SweepConfigError
from rna_hpc.hpo.space import override_key
from rna_hpc.launch.resources import job_gpus

EPOCHS_KEY = "trainer.max_epochs"
FRACTION_KEY = "data.fraction"
MAX_TIME_KEY = "trainer.max_time"


@dataclass
class JobResources:
    """What one trial job holds: ``nodes`` x ``tasks_per_node`` x ``cpus_per_task`` cores and ``gpus`` GPUs."""

    nodes: int = 1
    tasks_per_node: int = 1
    cpus_per_task: int = 1
    gpus: int = 0
    timeout_min: float | None = None  # the launcher's time limit per job (None: none)
    requeues: int = 0  # times a job that reached its time limit is requeued (``max_num_timeout``)
    launcher: str = "?"

    @property
    def cores(self) -> int:
        return self.nodes * self.tasks_per_node * self.cpus_per_task

    @property
    def max_job_minutes(self) -> float | None:
        """The most a trial job can run: its time limit, once more per requeue."""
        return self.timeout_min * (1 + self.requeues) if self.timeout_min else None

    def describe(self) -> str:
        limit = f", time limit {self.timeout_min:g} min x {1 + self.requeues} run(s)" if self.timeout_min else ""
        return (
            f"{self.nodes} node(s) x {self.tasks_per_node} task(s) x {self.cpus_per_task} cpu(s) = {self.cores} cores,"
            f" {self.gpus} GPUs ({self.launcher}{limit})"
        )


@dataclass
class BudgetLine:
    name: str
    trials: int
    epochs: int | None
    fraction: float
    core_hours: float | None  # estimated from epoch_seconds
    gpu_hours: float | None
    limit_core_hours: float | None = None  # every trial job running to the launcher's time limit (and requeues)
    limit_gpu_hours: float | None = None
    trial_minutes: float | None = None  # estimated minutes of one trial
    max_time_minutes: float | None = None  # the trial's wall-clock budget (trainer.max_time)


def _select(cfg: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key, default=None)
    except Exception:  # an interpolation that only resolves inside a job
        return None


def _int(node: Any, key: str) -> int:
    try:
        return int(node.get(key) or 0)
    except Exception:  # an interpolation that only resolves inside a job
        return 0


def job_resources(cfg: DictConfig) -> JobResources:
    """Cores and GPUs one trial job holds, from the launcher config (and the trainer for GPU counts)."""
    launcher = _select(cfg, "hydra.launcher") or {}
    nodes = _int(launcher, "nodes") or 1
    tasks = _int(launcher, "tasks_per_node") or 1
    counted = {key: _int(launcher, key) for key in ("nodes", "tasks_per_node", "gpus_per_node", "gpus_per_task")}
    gpus = job_gpus({**counted, "gres": _select(cfg, "hydra.launcher.gres")})
    if not gpus and str(_select(cfg, "trainer.accelerator")) in ("gpu", "cuda"):
        gpus = int(_select(cfg, "trainer.devices") or 1) * int(_select(cfg, "trainer.num_nodes") or 1)
    return JobResources(
        nodes=nodes,
        tasks_per_node=tasks,
        cpus_per_task=_int(launcher, "cpus_per_task") or 1,
        gpus=gpus,
        timeout_min=float(launcher.get("timeout_min")) if launcher.get("timeout_min") else None,
        requeues=_int(launcher, "max_num_timeout"),
        launcher=str(launcher.get("_target_", "?")).rsplit(".", 1)[-1],
    )


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


def trial_max_time(overrides: Sequence[str], cfg: DictConfig) -> float | None:
    """Minutes of one trial's ``trainer.max_time`` (overrides first, then the config); None when unset."""
    value = _override_value(overrides, MAX_TIME_KEY)
    if value is None:
        value = _select(cfg, MAX_TIME_KEY)
    if value in (None, "null", "None"):
        return None
    try:
        return max_time_minutes(value)
    except ValueError as e:
        raise SweepConfigError(f"{MAX_TIME_KEY}: not a wall-clock budget DD:HH:MM:SS ({e})") from e


def budget_line(
    name: str, trials: int, overrides: Sequence[str], cfg: DictConfig, epoch_seconds: float | None, res: JobResources
) -> BudgetLine:
    epochs, fraction = trial_budget(overrides, cfg)
    max_time = trial_max_time(overrides, cfg)
    line = BudgetLine(name, trials, epochs, fraction, None, None, max_time_minutes=max_time)
    limits = [m for m in (res.max_job_minutes, max_time) if m]
    if limits:
        hours = trials * min(limits) / 60.0
        line.limit_core_hours, line.limit_gpu_hours = hours * res.cores, hours * res.gpus
    if epoch_seconds is not None and epochs is not None:
        line.trial_minutes = epochs * epoch_seconds * fraction / 60.0
    if max_time is not None:
        line.trial_minutes = max_time if line.trial_minutes is None else min(line.trial_minutes, max_time)
    if line.trial_minutes is not None:
        hours = trials * line.trial_minutes / 60.0
        line.core_hours, line.gpu_hours = hours * res.cores, hours * res.gpus
    return line


def hours(value: float) -> str:
    """Hours with enough digits to tell a smoke search from nothing (``0.0021``, ``3.50``, ``1250``)."""
    if value == 0:
        return "0"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}" if value >= 1 else f"{value:.2g}"


def format_budget(lines: Sequence[BudgetLine], res: JobResources) -> str:
    rows = [f"search plan; each trial job holds {res.describe()}:"]
    for b in lines:
        cost = (
            "n/a (set hydra.sweeper.epoch_seconds)"
            if b.core_hours is None
            else f"{hours(b.core_hours)} core-h, {hours(b.gpu_hours or 0.0)} GPU-h"
        )
        if b.limit_core_hours is not None:
            cost += f" (at most {hours(b.limit_core_hours)} core-h at the time limits)"
        within = f" (max_time {b.max_time_minutes:g} min)" if b.max_time_minutes is not None else ""
        rows.append(f"  {b.name:<16} {b.trials:>4} trials x {b.epochs} epochs{within} x data {b.fraction:g}: {cost}")
        if res.timeout_min and b.trials and (b.trial_minutes or 0.0) > res.timeout_min:
            rows.append(
                f"  {'':<16} note: a trial needs ~{b.trial_minutes:.0f} min, above the {res.timeout_min:g} min time"
                f" limit; it goes on only through requeues ({res.requeues})"
            )
    total_c, total_g = total_hours(lines)
    if total_c is not None:
        rows.append(
            f"  {'total':<16} {hours(total_c)} core-hours, {hours(total_g or 0.0)} GPU-hours (upper bound: no pruning)"
        )
    limit_c, limit_g = limit_hours(lines)
    if limit_c is not None:
        rows.append(
            f"  {'time limits':<16} at most {hours(limit_c)} core-hours, {hours(limit_g or 0.0)} GPU-hours"
            " if every trial job ran to its time limits, requeues included"
        )
    return "\n".join(rows)


def total_hours(lines: Sequence[BudgetLine]) -> tuple[float | None, float | None]:
    if any(b.core_hours is None for b in lines if b.trials):
        return None, None
    return sum(b.core_hours or 0.0 for b in lines), sum(b.gpu_hours or 0.0 for b in lines)


def limit_hours(lines: Sequence[BudgetLine]) -> tuple[float | None, float | None]:
    if any(b.limit_core_hours is None for b in lines if b.trials):
        return None, None
    return sum(b.limit_core_hours or 0.0 for b in lines), sum(b.limit_gpu_hours or 0.0 for b in lines)


SWEEPER_KEYS = ("hydra.sweeper.max_gpu_hours", "hydra.sweeper.allow_over_budget")


def check_budget(
    lines: Sequence[BudgetLine],
    max_gpu_hours: float | None,
    allow_over_budget: bool,
    keys: tuple[str, str] = SWEEPER_KEYS,
) -> None:
    """Refuse a plan whose GPU-hours exceed ``max_gpu_hours`` (unless ``allow_over_budget``).

    The estimate from ``epoch_seconds`` is checked; without it, the time-limit bound. ``keys`` name the two settings
    in the message (``hpo.max_gpu_hours`` when the search config sets them there).
    """
    if max_gpu_hours is None or allow_over_budget:
        return
    max_key, allow_key = keys
    _, gpu_hours = total_hours(lines)
    what = "an estimated"
    if gpu_hours is None:
        _, gpu_hours = limit_hours(lines)
        what = "at its time limits up to"
    if gpu_hours is None:
        raise SweepConfigError(f"hydra.sweeper.epoch_seconds: needed to check {max_key}")
    if gpu_hours > max_gpu_hours:
        raise SweepConfigError(
            f"{max_key}: the plan needs {what} {gpu_hours:.1f} GPU-hours (> {max_gpu_hours:g});"
            f" lower n_trials or budgets, or set {allow_key}=true"
        )
