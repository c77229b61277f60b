"""Plan a sweep before anything is submitted: check every job, group the jobs by resource shape.

Each job's config is what the node will compose, built quickly (``rna_hpc.launch.compose``). Every job goes through
the launcher's checks (``preflight``) and the app's declared checks (``rna_hpc.config.checks``), with
``hydra.job.num`` and the run dir filled as on the node, as soon as it is composed (only the findings are kept, so a
sweep of any size plans in constant memory). One ``SweepRejected`` lists every problem of every job, tagged
``[job #n]``.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.errors import CompactHydraException
from omegaconf import DictConfig, OmegaConf, open_dict

from rna_hpc import compat
from rna_hpc.config.checks import Check, run_checks
from rna_hpc.errors import ConfigError
from rna_hpc.launch import preflight, resources
from rna_hpc.launch.identity import RunIdentity, has_run_layout


class SweepRejected(ConfigError, CompactHydraException):
    """A sweep with problems; Hydra prints its message without a traceback."""


@dataclass
class PlannedJob:
    """One job of the sweep: its Hydra job number, overrides and resolved launcher parameters."""

    num: int
    overrides: list[str]
    params: dict[str, Any]
    identity: RunIdentity | None = None  # a training job's run dir and shared dir (results, error.json)
    run_dir: str | None = None  # hydra.runtime.output_dir, for any app

    @property
    def shared_dir(self) -> Path | None:
        return self.identity.shared_dir if self.identity is not None else None

    @property
    def dirs(self) -> tuple[str, str | None] | None:
        """``(run dir, shared dir)`` for the sweep record (no shared dir for an app without rna_hpc's layout)."""
        if self.identity is not None:
            return str(self.identity.run_dir), str(self.identity.shared_dir)
        return (self.run_dir, None) if self.run_dir else None


@dataclass
class ShapeGroup:
    """Jobs with the same resolved launcher parameters: one executor, one or more Slurm arrays."""

    params: dict[str, Any]
    jobs: list[PlannedJob] = field(default_factory=list)
    executor: Any = None


class Problems:
    """``key: why`` lines, each with the jobs it concerns."""

    def __init__(self, n_jobs: int) -> None:
        self.n_jobs = n_jobs
        self.where: dict[str, list[int]] = {}

    def add(self, message: str, *nums: int) -> None:
        self.where.setdefault(message, []).extend(nums)

    def lines(self) -> list[str]:
        out = []
        for message, nums in self.where.items():
            nums = sorted(set(nums))
            if self.n_jobs > 1 and nums and len(nums) < self.n_jobs:
                message += " [job " + ", ".join(f"#{n}" for n in nums) + "]"
            out.append(message)
        return out


_RUN_KEYS = (("job", "num"), ("job", "id"), ("runtime", "output_dir"))


@contextmanager
def as_running_job(cfg: DictConfig, num: int) -> Iterator[None]:
    """Fill the job's ``hydra.job.num`` and ``hydra.runtime.output_dir`` as ``run_job`` will on the node, and make it
    the current ``HydraConfig`` (``${hydra:...}`` interpolations) while checking it; put them back afterwards."""
    hydra = cfg.hydra
    before = {(n, k): "???" if OmegaConf.is_missing(hydra[n], k) else hydra[n][k] for n, k in _RUN_KEYS}
    with open_dict(hydra):
        hydra.job.num = num
        hydra.job.id = f"job_id_for_{num}"
        hydra.runtime.output_dir = os.path.abspath(os.path.join(str(hydra.sweep.dir), str(hydra.sweep.subdir)))
    try:
        with compat.current_hydra_config(cfg):
            yield
    finally:
        with open_dict(hydra):
            for (n, k), value in before.items():
                hydra[n][k] = value


def _identity(cfg: DictConfig, problems: list[str]) -> RunIdentity | None:
    """The run identity of a job with rna_hpc's run layout (``paths.shared_dir``, ``experiment_name``), else None."""
    try:
        if not has_run_layout(cfg):
            return None
        return RunIdentity.from_hydra(cfg, cfg.hydra)
    except ConfigError as err:
        problems.extend(err.problems)
    except Exception:  # an unresolvable path is reported by the path checks
        pass
    return None


@dataclass
class CheckedJob:
    """One job after its checks: the planned job (None when it does not compose) and its ``key: why`` lines."""

    job: PlannedJob | None
    problems: list[str]


def not_composed(num: int, overrides: list[str], err: BaseException) -> CheckedJob:
    """The finding of a job whose overrides do not compose: named, so the plan goes on with the others."""
    return CheckedJob(None, [f"job #{num} {overrides}: does not compose: {preflight.one_line(err)}"])


class JobChecker:
    """The launcher's checks (``preflight``) and the app's declared ones on one composed job config."""

    def __init__(self, checks: Sequence[Check], slurm: bool) -> None:
        self.checks, self.slurm = tuple(checks), slurm
        self.unwritable = functools.lru_cache(maxsize=None)(preflight.unwritable)  # one probe per folder

    def __call__(self, cfg: DictConfig, num: int, overrides: list[str]) -> CheckedJob:
        with compat.interpolations_parsed_once():
            try:
                params = preflight.launcher_params(cfg)
            except Exception as err:
                return not_composed(num, overrides, err)
            with as_running_job(cfg, num):
                problems = [preflight.unwrap(message) for message in run_checks(self.checks, cfg)]
                problems += preflight.job_problems(cfg, params, slurm=self.slurm, unwritable=self.unwritable)
                identity = _identity(cfg, problems)
                run_dir = str(cfg.hydra.runtime.output_dir)
        return CheckedJob(PlannedJob(num, list(overrides), params, identity, run_dir), problems)


def plan_sweep(
    checked_job: Callable[[int, list[str]], CheckedJob],
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
    slurm: bool,
    make_executor: Callable[[dict[str, Any]], Any],
) -> list[ShapeGroup]:
    """Every job checked, grouped by resource shape; raise ``SweepRejected`` on any problem of any job."""
    problems = Problems(len(job_overrides))
    groups: dict[str, ShapeGroup] = {}
    for num, overrides in enumerate(job_overrides, start=initial_job_idx):
        checked = checked_job(num, list(overrides))
        for message in checked.problems:
            problems.add(message, num)
        if checked.job is not None:
            key = json.dumps(checked.job.params, sort_keys=True, default=str)
            groups.setdefault(key, ShapeGroup(checked.job.params)).jobs.append(checked.job)
    if slurm:
        shapes = [g.params for g in groups.values()]
        for message in preflight.partition_problems(shapes) + resources.node_limit_problems(shapes):
            problems.add(message)
    if not problems.where:  # executors only for a sound sweep: the local one creates its folder
        for group in groups.values():
            try:
                group.executor = make_executor(group.params)
            except Exception as err:  # submitit rejects a parameter: report it with the rest
                problems.add(f"hydra.launcher: submitit rejects the parameters: {preflight.one_line(err)}")
    if problems.where:
        raise SweepRejected(problems.lines())
    return list(groups.values())


def array_chunks(jobs: Sequence[PlannedJob], max_array_size: int | None) -> list[list[PlannedJob]]:
    """The jobs of one shape split into arrays of at most ``max_array_size`` tasks (Slurm's MaxArraySize)."""
    size = max_array_size or len(jobs) or 1
    return [list(jobs[k : k + size]) for k in range(0, len(jobs), size)]
