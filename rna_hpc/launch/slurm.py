"""Validating submitit launchers: nothing reaches sbatch until every job of the sweep is composed and checked.

``launch`` composes each job's config as the node will (``load_sweep_config``), runs ``validate`` and the launcher
checks of ``preflight`` on it, and raises one ``ConfigError`` listing every problem of every job. Jobs are grouped by
their resolved launcher parameters (a swept ``trainer.devices`` changes ``tasks_per_node``), one array per group.
Every task starts through ``python -m rna_hpc.launch.preflight``, which refuses to load its pickle from a folder
others can write to. A job that raises returns a FAILED ``JobReturn`` holding the error (Hydra's ``run_job``); a job
that dies without a result (killed, out of requeues) or returns a non-finite objective is FAILED too, so the other
jobs' results are still collected, and the launcher ends with a summary of the failures: which job, its Slurm id,
its error, its log and ``error.json``. Importing this module imports neither torch nor Lightning.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import sys
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

from rna_hpc.checkpoint.scrub import scrub_text
from rna_hpc.config.validate import validate
from rna_hpc.errors import ConfigError, TrainingFailed
from rna_hpc.job.identity import RunIdentity
from rna_hpc.launch import preflight, resources

log = logging.getLogger(__name__)


class SweepRejected(ConfigError, CompactHydraException):
    """A sweep with problems; Hydra prints its message without a traceback."""


@dataclass
class PlannedJob:
    """One job of the sweep: its Hydra job number, overrides and resolved launcher parameters."""

    num: int
    overrides: list[str]
    params: dict[str, Any]
    identity: RunIdentity | None = None  # a training job's run dir and shared dir (results, error.json)

    @property
    def shared_dir(self) -> Path | None:
        return self.identity.shared_dir if self.identity is not None else None

    @property
    def dirs(self) -> tuple[str, str] | None:
        """``(run dir, shared dir)`` for the sweep record."""
        return (str(self.identity.run_dir), str(self.identity.shared_dir)) if self.identity is not None else None


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
        save_before_requeue()
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
            shapes = [g.params for g in groups.values()]
            for message in preflight.partition_problems(shapes) + resources.node_limit_problems(shapes):
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
            identity = _identity(cfg, num, problems)
        return PlannedJob(num, overrides, params, identity)

    def _executor(self, params: dict[str, Any]) -> Any:
        import submitit

        python = self.python or shlex.quote(sys.executable)
        init: dict[str, Any] = {
            f"{self._EXECUTOR}_max_num_timeout": params.get("max_num_timeout", 0),
            f"{self._EXECUTOR}_python": f"{python} -u -m rna_hpc.launch.preflight",  # checks the folder, then submitit
        }
        executor = submitit.AutoExecutor(folder=params["submitit_folder"], cluster=self._EXECUTOR, **init)
        generic = set(OmegaConf.structured(BaseQueueConf).keys())
        update = {
            k if k in generic else f"{self._EXECUTOR}_{k}": v
            for k, v in params.items()
            if k not in ("submitit_folder", "max_num_timeout", "max_num_preemptions")
        }
        if self.srun_args:
            update[f"{self._EXECUTOR}_srun_args"] = self.srun_args
        executor.update_parameters(**update)
        return executor

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        groups = self.plan(job_overrides, initial_job_idx)
        print(sweep_summary(groups, self._EXECUTOR), flush=True)
        if self.dry_run:  # the local executor has no batch script: its plan is the summary above
            print(dry_run_scripts(groups) if self._SLURM else "# dry run: nothing started", flush=True)
            return []
        with _umask(int(self.umask, 8)):
            self._make_sweep_dir()
            submitted = [(job, sub) for group in groups for job, sub in zip(group.jobs, self._submit(group))]
            self._record(submitted)
        if self.detach:
            return [self._detached(job, sub) for job, sub in submitted]
        by_num = {job.num: (job, sub, self._collect(job, sub)) for job, sub in submitted}
        outcomes = [by_num[num] for num in sorted(by_num)]
        if any(ret.status is JobStatus.FAILED for _, _, ret in outcomes):
            print(failure_summary(outcomes, self._EXECUTOR), flush=True)
        return [ret for _, _, ret in outcomes]

    def _record(self, submitted: list[tuple[PlannedJob, Any]]) -> None:
        """``sweep.json``: jobs, Slurm ids, run dirs and logs, so the sweep can be followed after this process."""
        from rna_hpc.launch.record import record_submission, write_sweep_record

        try:
            record = record_submission(self._EXECUTOR, self.config, submitted, self.detach)  # type: ignore[attr-defined]
            write_sweep_record(str(self.config.hydra.sweep.dir), record)  # type: ignore[attr-defined]
        except Exception as err:  # the jobs are submitted: a missing record must not fail the sweep
            log.error(f"could not write the sweep record: {type(err).__name__}: {err}")

    def _make_sweep_dir(self) -> None:
        sweep = self.config.hydra.sweep  # type: ignore[attr-defined]
        Path(str(sweep.dir)).mkdir(parents=True, exist_ok=True)
        if "mode" in sweep and sweep.mode is not None:
            os.chmod(str(sweep.dir), int(str(sweep.mode), 8))

    def _submit(self, group: ShapeGroup) -> list[Any]:
        args = []
        for job in group.jobs:
            log.info(scrub_text(f"\t#{job.num} : {' '.join(filter_overrides(job.overrides))}"))
            args.append((job.overrides, "hydra.sweep.dir", job.num, f"job_id_for_{job.num}", Singleton.get_state()))
        return list(group.executor.map_array(self, *zip(*args)))

    def _collect(self, job: PlannedJob, submitted: Any) -> JobReturn:
        try:
            ret = submitted.results()[0]
        except Exception as err:  # died without a result: report it as this job's failure, collect the others
            log.error(f"job #{job.num} ({submitted.job_id}) failed: {' '.join(str(err).split())[:400]}")
            return JobReturn(overrides=job.overrides, status=JobStatus.FAILED, _return_value=err)
        value = ret._return_value if ret.status is JobStatus.COMPLETED else None
        if isinstance(value, float) and not math.isfinite(value):  # a diverged run is no result to compare
            ret.status = JobStatus.FAILED
            ret._return_value = TrainingFailed(f"job #{job.num} returned the objective {value}")
        return ret

    @staticmethod
    def _detached(job: PlannedJob, submitted: Any) -> JobReturn:
        log.info(f"job #{job.num} submitted as {submitted.job_id} (detached)")
        return JobReturn(overrides=job.overrides, status=JobStatus.COMPLETED, _return_value=submitted.job_id)


class RnaHpcSlurmLauncher(_ValidatingLauncher, SlurmLauncher):
    """hydra-submitit-launcher's Slurm launcher with pre-submission validation, dry runs and detached submission."""

    _SLURM = True


class RnaHpcLocalLauncher(_ValidatingLauncher, LocalLauncher):
    """hydra-submitit-launcher's local launcher (one process per task here) with pre-submission validation."""


def save_before_requeue() -> Path | None:
    """Save and consolidate the fit running in this process, if any; never raise, never import.

    It runs inside a signal handler, which may interrupt any line, an ``import`` included: importing Lightning there
    can meet it half-initialized. Without ``rna_hpc.job.callbacks`` loaded no fit is running and there is nothing to
    save; a failed save is logged and the job is requeued all the same (it resumes from an older checkpoint).
    """
    callbacks = sys.modules.get("rna_hpc.job.callbacks")
    checkpoint_now = getattr(callbacks, "checkpoint_now", None)
    if checkpoint_now is None:
        return None
    try:
        return checkpoint_now()
    except Exception as err:
        log.error(f"checkpoint before the requeue failed, resuming from an older one: {type(err).__name__}: {err}")
        return None


def _identity(cfg: DictConfig, num: int, problems: _Problems) -> RunIdentity | None:
    """The run identity of a training job (None for other task functions); a bad one is a problem of the sweep."""
    try:
        if OmegaConf.select(cfg, "paths.shared_dir") is None or OmegaConf.select(cfg, "experiment_name") is None:
            return None
        return RunIdentity.from_hydra(cfg, cfg.hydra)
    except ConfigError as err:
        for message in err.problems:
            problems.add(message, num)
    except Exception:  # an unresolvable path is reported by the path checks
        pass
    return None


def failure_summary(outcomes: Sequence[tuple[PlannedJob, Any, JobReturn]], executor: str = "slurm") -> str:
    """Which jobs failed, with their Slurm id, error, rank-0 log and ``error.json``: where to look first."""
    kind = "Slurm" if executor == "slurm" else executor
    failed = [(job, sub, ret) for job, sub, ret in outcomes if ret.status is JobStatus.FAILED]
    common = set.intersection(*(set(job.overrides) for job, _, _ in outcomes))
    lines = [f"rna_hpc: {len(failed)} of {len(outcomes)} job(s) failed"]
    for job, sub, ret in failed:
        err = ret._return_value
        message = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        swept = " ".join(o for o in filter_overrides(job.overrides) if o not in common)
        lines.append(scrub_text(f"  #{job.num} ({kind} job {sub.job_id}){' ' + swept if swept else ''}: {message}"))
        lines.append(f"      log   {sub.paths.stderr}")
        error_json = job.shared_dir / "error.json" if job.shared_dir is not None else None
        if error_json is not None and error_json.is_file():
            lines.append(f"      error {error_json}")
    return "\n".join(lines)


def _minutes(timeout_min: int) -> str:
    return f"{timeout_min // 60}:{timeout_min % 60:02d}:00"


def _requeues(params: dict[str, Any]) -> str:
    text = f"requeues {params.get('max_num_timeout', 0)}"
    if "max_num_preemptions" not in params:  # the local launcher: no Slurm to preempt it
        return text
    preemptions = params["max_num_preemptions"]
    return f"{text} on timeout / {'any' if preemptions is None else preemptions} on preemption"


def sweep_summary(groups: Sequence[ShapeGroup], executor: str) -> str:
    """One screen: jobs x nodes x tasks per array, time limits, and the core/GPU-hours if every job used its limit."""
    n_jobs = sum(len(g.jobs) for g in groups)
    lines = [f"rna_hpc: {n_jobs} job(s) in {len(groups)} submission(s) to {executor}"]
    core_h = gpu_h = 0.0
    for i, g in enumerate(groups, start=1):
        p = g.params
        nodes, tasks, cpus = p.get("nodes") or 1, p.get("tasks_per_node") or 1, p.get("cpus_per_task") or 1
        gpus, minutes = resources.gpus_per_node(p), p.get("timeout_min") or 0
        core_h += len(g.jobs) * nodes * tasks * cpus * minutes / 60
        gpu_h += len(g.jobs) * resources.job_gpus(p) * minutes / 60
        nums = ", ".join(f"#{j.num}" for j in g.jobs)
        where = f"partition {p['partition']}" if p.get("partition") else "default partition"
        lines.append(
            f"  [{i}] {len(g.jobs)} job(s) x {nodes} node(s) x {tasks} task(s) x {cpus} cpu(s), {gpus} gpu(s)/node, "
            f"time limit {_minutes(minutes)}, {_requeues(p)}, {where}: jobs {nums}"
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


__all__ = [
    "RnaHpcLocalLauncher",
    "RnaHpcSlurmLauncher",
    "SweepRejected",
    "dry_run_scripts",
    "failure_summary",
    "sweep_summary",
]
