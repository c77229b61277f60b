"""Validating submitit launchers: nothing reaches sbatch until every job of the sweep is composed and checked.

``launch`` composes each job's config as the node will (``load_sweep_config``), runs ``validate`` and the launcher
checks of ``preflight`` on it, and raises one ``ConfigError`` listing every problem of every job. Jobs are grouped by
their resolved launcher parameters (a swept ``trainer.devices`` changes ``tasks_per_node``), one array per group.
A job that raises returns a FAILED ``JobReturn`` holding the error (Hydra's ``run_job``); a job that dies without a
result (killed, out of requeues) also becomes a FAILED ``JobReturn`` holding submitit's error, so the other jobs'
results are still collected. Importing this module imports neither torch nor Lightning.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.errors import CompactHydraException
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher
from omegaconf import DictConfig, OmegaConf, open_dict

from rna_hpc.config.validate import validate
from rna_hpc.errors import ConfigError
from rna_hpc.launch import preflight

log = logging.getLogger(__name__)


class SweepRejected(ConfigError, CompactHydraException):
    """A sweep with problems; Hydra prints its message without a traceback."""


@dataclass
class PlannedJob:
    """One job of the sweep: its Hydra job number, overrides and resolved launcher parameters."""

    num: int
    overrides: list[str]
    params: dict[str, Any]


@dataclass
class ShapeGroup:
    """Jobs with the same resolved launcher parameters: one executor, one Slurm array."""

    params: dict[str, Any]
    jobs: list[PlannedJob] = field(default_factory=list)
    executor: Any = None


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@contextmanager
def _as_running_job(cfg: DictConfig, num: int) -> Iterator[None]:
    """Fill the job's ``hydra.job.num`` and ``hydra.runtime.output_dir`` as ``run_job`` will on the node, and make it
    the current ``HydraConfig`` (``${hydra:...}`` interpolations), restoring the previous one afterwards."""
    with open_dict(cfg.hydra):
        cfg.hydra.job.num = num
        cfg.hydra.job.id = f"job_id_for_{num}"
        cfg.hydra.runtime.output_dir = os.path.abspath(
            os.path.join(str(cfg.hydra.sweep.dir), str(cfg.hydra.sweep.subdir))
        )
    previous = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)
    try:
        yield
    finally:
        HydraConfig.instance().cfg = previous


class _Problems:
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


class _ValidatingLauncher:
    """Shared by the Slurm and local launchers; mixed in before the plugin's class."""

    _EXECUTOR: str
    _SLURM = False

    def __init__(
        self,
        dry_run: bool = False,
        detach: bool = False,
        umask: str = "022",
        python: str | None = None,
        srun_args: list[str] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)  # type: ignore[call-arg]
        self.dry_run, self.detach, self.umask = bool(dry_run), bool(detach), str(umask)
        self.python = python
        self.srun_args = list(srun_args) if srun_args else None

    def __call__(
        self, sweep_overrides: list[str], job_dir_key: str, job_num: int, job_id: str, singleton_state: dict
    ) -> JobReturn:
        """Run one job on its node (every rank), with the configured umask.

        As the plugin's ``__call__``, except that ranks other than 0 write neither Hydra's config snapshot nor the job
        log of rank 0: each keeps its own ``<job>.rank<k>.log`` in the run dir.
        """
        import submitit
        from hydra.core.utils import run_job, setup_globals

        os.umask(int(self.umask, 8))
        Singleton.set_state(singleton_state)
        setup_globals()
        env = submitit.JobEnvironment()
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, sweep_overrides)  # type: ignore[attr-defined]
        with open_dict(cfg.hydra):
            cfg.hydra.job.id = env.job_id
            cfg.hydra.job.num = job_num
            if env.global_rank != 0:
                cfg.hydra.output_subdir = None
                handlers = cfg.hydra.job_logging.get("handlers", {})
                if "file" in handlers:
                    name = f"${{hydra.job.name}}.rank{env.global_rank}.log"
                    handlers.file.filename = f"${{hydra.runtime.output_dir}}/{name}"
        return run_job(
            hydra_context=self.hydra_context,  # type: ignore[attr-defined]
            task_function=self.task_function,  # type: ignore[attr-defined]
            config=cfg,
            job_dir_key=job_dir_key,
            job_subdir_key="hydra.sweep.subdir",
        )

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's timeout signal (USR2, rank 0): write and consolidate a checkpoint, then requeue the same call."""
        from rna_hpc.job.callbacks import checkpoint_now

        checkpoint_now()
        return super().checkpoint(*args, **kwargs)  # type: ignore[misc]

    def plan(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[ShapeGroup]:
        """Compose and check every job, group them by resource shape; raise ``SweepRejected`` on any problem."""
        problems = _Problems(len(job_overrides))
        groups: dict[str, ShapeGroup] = {}
        for num, overrides in enumerate(job_overrides, start=initial_job_idx):
            job = self._check_job(num, list(overrides), problems)
            if job is not None:
                key = json.dumps(job.params, sort_keys=True, default=str)
                groups.setdefault(key, ShapeGroup(job.params)).jobs.append(job)
        if self._SLURM:
            for message in preflight.partition_problems([g.params for g in groups.values()]):
                problems.add(message)
        if not problems.where:  # executors only for a sound sweep: the local one creates its folder
            for group in groups.values():
                try:
                    group.executor = self._executor(group.params)
                except Exception as err:  # submitit rejects a parameter: report it with the rest
                    problems.add(f"hydra.launcher: submitit rejects the parameters: {preflight.one_line(err)}")
        if problems.where:
            raise SweepRejected(problems.lines())
        return list(groups.values())

    def _check_job(self, num: int, overrides: list[str], problems: _Problems) -> PlannedJob | None:
        assert self.hydra_context is not None and self.config is not None  # type: ignore[attr-defined]
        try:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)  # type: ignore[attr-defined]
            params = preflight.launcher_params(cfg)
        except Exception as err:  # a job whose overrides do not compose: name it and go on with the others
            problems.add(f"job #{num} {overrides}: does not compose: {preflight.one_line(err)}", num)
            return None
        with _as_running_job(cfg, num):
            try:
                validate(cfg)
            except ConfigError as err:
                for message in err.problems:
                    problems.add(preflight.unwrap(message), num)
            for message in preflight.job_problems(cfg, params, slurm=self._SLURM):
                problems.add(message, num)
        return PlannedJob(num, overrides, params)

    def _executor(self, params: dict[str, Any]) -> Any:
        import submitit

        init: dict[str, Any] = {f"{self._EXECUTOR}_max_num_timeout": params.get("max_num_timeout", 0)}
        if self.python:
            init[f"{self._EXECUTOR}_python"] = self.python
        executor = submitit.AutoExecutor(folder=params["submitit_folder"], cluster=self._EXECUTOR, **init)
        generic = set(OmegaConf.structured(BaseQueueConf).keys())
        update = {
            k if k in generic else f"{self._EXECUTOR}_{k}": v
            for k, v in params.items()
            if k not in ("submitit_folder", "max_num_timeout")
        }
        if self.srun_args:
            update[f"{self._EXECUTOR}_srun_args"] = self.srun_args
        executor.update_parameters(**update)
        return executor

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        groups = self.plan(job_overrides, initial_job_idx)
        print(sweep_summary(groups, self._EXECUTOR), flush=True)
        if self.dry_run:
            print(dry_run_scripts(groups), flush=True)
            return []
        with _umask(int(self.umask, 8)):
            self._make_sweep_dir()
            submitted = [(job, sub) for group in groups for job, sub in zip(group.jobs, self._submit(group))]
        if self.detach:
            return [self._detached(job, sub) for job, sub in submitted]
        by_num = {job.num: self._collect(job, sub) for job, sub in submitted}
        return [by_num[num] for num in sorted(by_num)]

    def _make_sweep_dir(self) -> None:
        sweep = self.config.hydra.sweep  # type: ignore[attr-defined]
        Path(str(sweep.dir)).mkdir(parents=True, exist_ok=True)
        if "mode" in sweep and sweep.mode is not None:
            os.chmod(str(sweep.dir), int(str(sweep.mode), 8))

    def _submit(self, group: ShapeGroup) -> list[Any]:
        args = []
        for job in group.jobs:
            log.info(f"\t#{job.num} : {' '.join(filter_overrides(job.overrides))}")
            args.append((job.overrides, "hydra.sweep.dir", job.num, f"job_id_for_{job.num}", Singleton.get_state()))
        return list(group.executor.map_array(self, *zip(*args)))

    def _collect(self, job: PlannedJob, submitted: Any) -> JobReturn:
        try:
            return submitted.results()[0]
        except Exception as err:  # died without a result: report it as this job's failure, collect the others
            log.error(f"job #{job.num} ({submitted.job_id}) failed: {' '.join(str(err).split())[:400]}")
            return JobReturn(overrides=job.overrides, status=JobStatus.FAILED, _return_value=err)

    @staticmethod
    def _detached(job: PlannedJob, submitted: Any) -> JobReturn:
        log.info(f"job #{job.num} submitted as {submitted.job_id} (detached)")
        return JobReturn(overrides=job.overrides, status=JobStatus.COMPLETED, _return_value=submitted.job_id)


class RnaHpcSlurmLauncher(_ValidatingLauncher, SlurmLauncher):
    """hydra-submitit-launcher's Slurm launcher with pre-submission validation, dry runs and detached submission."""

    _SLURM = True


class RnaHpcLocalLauncher(_ValidatingLauncher, LocalLauncher):
    """hydra-submitit-launcher's local launcher (one process per task here) with pre-submission validation."""


def _minutes(timeout_min: int) -> str:
    return f"{timeout_min // 60}:{timeout_min % 60:02d}:00"


def sweep_summary(groups: Sequence[ShapeGroup], executor: str) -> str:
    """One screen: jobs x nodes x tasks per array, time limits, and the core/GPU-hours if every job used its limit."""
    n_jobs = sum(len(g.jobs) for g in groups)
    lines = [f"rna_hpc: {n_jobs} job(s) in {len(groups)} submission(s) to {executor}"]
    core_h = gpu_h = 0.0
    for i, g in enumerate(groups, start=1):
        p = g.params
        nodes, tasks, cpus = p.get("nodes") or 1, p.get("tasks_per_node") or 1, p.get("cpus_per_task") or 1
        gpus, minutes = p.get("gpus_per_node") or 0, p.get("timeout_min") or 0
        core_h += len(g.jobs) * nodes * tasks * cpus * minutes / 60
        gpu_h += len(g.jobs) * nodes * gpus * minutes / 60
        nums = ", ".join(f"#{j.num}" for j in g.jobs)
        where = f"partition {p['partition']}" if p.get("partition") else "default partition"
        lines.append(
            f"  [{i}] {len(g.jobs)} job(s) x {nodes} node(s) x {tasks} task(s) x {cpus} cpu(s), {gpus} gpu(s)/node, "
            f"time limit {_minutes(minutes)}, requeues {p.get('max_num_timeout', 0)}, {where}: jobs {nums}"
        )
        lines.append(f"      submitit folder {os.path.abspath(str(p.get('submitit_folder')))}")
    lines.append(f"  budget at the time limits: {core_h:.2f} core-hours, {gpu_h:.2f} GPU-hours")
    return "\n".join(lines)


def dry_run_scripts(groups: Sequence[ShapeGroup]) -> str:
    """The exact sbatch script submitit would submit for each resource shape (an array when it holds > 1 job)."""
    from submitit.slurm.slurm import _make_sbatch_string

    parts = []
    for i, g in enumerate(groups, start=1):
        inner = g.executor._executor
        count = len(g.jobs) if len(g.jobs) > 1 else None
        text = _make_sbatch_string(
            command=inner._submitit_command_str, folder=inner.folder, map_count=count, **inner.parameters
        )
        parts.append(f"# ---- dry run [{i}]: jobs {', '.join(f'#{j.num}' for j in g.jobs)} ----\n{text}")
    return "\n".join(parts) + "\n# dry run: nothing submitted"


__all__ = ["RnaHpcLocalLauncher", "RnaHpcSlurmLauncher", "SweepRejected", "dry_run_scripts", "sweep_summary"]
