"""The rna_hpc launchers: hydra-submitit-launcher's Slurm and local launchers for any Hydra app, validating first.

``launch`` plans the sweep (``plan``: compose, check, group by resource shape), prints the plan (``report``), and
submits one array per shape (split at the cluster's ``MaxArraySize``), or prints the sbatch scripts of a dry run.
Each job runs the plugin's own ``__call__`` on its node, with these additions: the configured umask; ranks other than
0 write neither Hydra's config snapshot nor rank 0's log; on Slurm, the requeue limit before the task and the
time-limit signal ignored after it; the declared files consolidated; and a job whose task raised raises again, so
that Slurm records it FAILED. The launcher collects every job (a job that died without a result is a FAILED
``JobReturn``) and ends with a summary of the failures. Importing this module imports neither torch nor Lightning.
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher
from omegaconf import OmegaConf, open_dict

from rna_hpc import compat
from rna_hpc.checkpoint.scrub import scrub_text
from rna_hpc.config.checks import checks_of
from rna_hpc.errors import TrainingFailed
from rna_hpc.launch import preflight, requeue
from rna_hpc.launch.compose import SweepConfigLoader
from rna_hpc.launch.node_side import consolidate_declared, ignore_time_limit_signal, within_requeue_limit
from rna_hpc.launch.plan import JobChecker, PlannedJob, ShapeGroup, array_chunks, plan_sweep
from rna_hpc.launch.report import dry_run_scripts, failure_summary, sweep_summary, task_error
from rna_hpc.launch.shared_call import SharedCall

log = logging.getLogger(__name__)


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def new_dirs(paths: list[str]) -> list[Path]:
    """For each path, its top-most ancestor (or itself) that does not exist yet: what creating it would add."""
    tops = []
    for path in paths:
        current = Path(path).absolute()
        top = None
        while not current.exists():
            top, current = current, current.parent
        if top is not None:
            tops.append(top)
    return tops


def max_array_size() -> int | None:
    """The cluster's ``MaxArraySize`` (``scontrol show config``); None when it cannot be read."""
    if shutil.which("scontrol") is None:
        return None
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize" and value.strip().isdigit():
            return int(value.strip())
    return None


class RnaHpcLauncherBase:
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
        consolidate: list[str] | None = None,
        consolidate_to: str | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)  # type: ignore[call-arg]
        self.consolidate, self.consolidate_to = list(consolidate or []), consolidate_to
        self.dry_run, self.detach, self.umask = bool(dry_run), bool(detach), str(umask)
        self.python = python
        self.srun_args = list(srun_args) if srun_args else None

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        """As the plugin's, with the sweep's config loader made fast (``compose.SweepConfigLoader``)."""
        if not isinstance(hydra_context.config_loader, SweepConfigLoader):
            hydra_context.config_loader = SweepConfigLoader(hydra_context.config_loader)
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)  # type: ignore[misc]
        slurm = self._SLURM and (not self.dry_run or shutil.which("sinfo") is not None)
        hydra_context.config_loader.checker = JobChecker(checks_of(task_function), slurm)
        self._new_dirs = new_dirs([str(config.hydra.sweep.dir)]) if self.dry_run else []

    # ---- on the node ------------------------------------------------------------------------------------------

    def __call__(
        self, sweep_overrides: list[str], job_dir_key: str, job_num: int, job_id: str, singleton_state: dict
    ) -> JobReturn:
        """Run one job on its node (every rank): the plugin's ``__call__`` with the umask, quiet ranks > 0, and
        the task's error raised again (Slurm then records the job FAILED, the launcher still collects it)."""
        import submitit

        os.umask(int(self.umask, 8))
        rank = submitit.JobEnvironment().global_rank
        if rank != 0:
            self._quiet_rank(rank)
        if self._SLURM:  # every app's job stops once Slurm requeued it too often
            limit = self.params.get("max_num_preemptions")  # type: ignore[attr-defined]
            self.task_function = within_requeue_limit(self.task_function, limit)  # type: ignore[attr-defined]
        ret = super().__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)  # type: ignore[misc]
        if self._SLURM:
            ignore_time_limit_signal()
        if rank == 0 and self.consolidate and self.consolidate_to:
            consolidate_declared(ret, self.consolidate, self.consolidate_to, int(self.umask, 8))
        if ret.status is JobStatus.FAILED:  # (not ret.return_value: Hydra would print the overrides, secrets included)
            raise compat.returned_value(ret)
        return ret

    def _quiet_rank(self, rank: int) -> None:
        """Ranks > 0: no ``.hydra`` snapshot, and their own ``<job>.rank<k>.log`` beside rank 0's log."""
        extra = ["hydra.output_subdir=null"]
        if OmegaConf.select(self.config, "hydra.job_logging.handlers.file") is not None:  # type: ignore[attr-defined]
            name = f"${{hydra.runtime.output_dir}}/${{hydra.job.name}}.rank{rank}.log"
            extra.append(f"hydra.job_logging.handlers.file.filename='{name}'")
        with open_dict(self.config):  # type: ignore[attr-defined]
            self.config.hydra.overrides.hydra.extend(extra)  # type: ignore[attr-defined]

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's timeout signal (USR2, rank 0): run the requeue hooks (save, consolidate), then requeue."""
        requeue.run_hooks()
        return super().checkpoint(*args, **kwargs)  # type: ignore[misc]

    # ---- on the submit host -----------------------------------------------------------------------------------

    def plan(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[ShapeGroup]:
        """Compose and check every job, group them by resource shape; raise ``SweepRejected`` on any problem."""
        loader = self.hydra_context.config_loader  # type: ignore[attr-defined]

        def checked_job(num: int, overrides: list[str]) -> Any:
            return loader.checked_job(self.config, num, overrides)  # type: ignore[attr-defined]

        make_executor = self._executor if self._SLURM or not self.dry_run else (lambda params: None)
        try:
            return plan_sweep(checked_job, job_overrides, initial_job_idx, loader.checker.slurm, make_executor)
        finally:
            loader.launched(initial_job_idx + len(job_overrides))

    def _remove_sweep_dir(self) -> None:
        """A dry run leaves nothing behind: the sweeper's ``multirun.yaml`` and the folders made for it go."""
        sweep = Path(str(self.config.hydra.sweep.dir))  # type: ignore[attr-defined]
        (sweep / "multirun.yaml").unlink(missing_ok=True)
        for top in getattr(self, "_new_dirs", []):
            if top.is_dir() and not any(p.is_file() for p in top.rglob("*")):
                shutil.rmtree(top)

    def _executor(self, params: dict[str, Any]) -> Any:
        import submitit

        python = self.python or shlex.quote(sys.executable)
        init: dict[str, Any] = {
            f"{self._EXECUTOR}_max_num_timeout": params.get("max_num_timeout", 0),
            f"{self._EXECUTOR}_python": f"{python} -u -m rna_hpc.launch.preflight",  # checks the folder, then submitit
        }
        if self.dry_run:  # a dry run only prints: Slurm's commands need not be here
            with compat.slurm_commands_optional():
                executor = submitit.AutoExecutor(folder=params["submitit_folder"], cluster=self._EXECUTOR, **init)
        else:
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
        array_size = max_array_size() if self._SLURM else None
        print(sweep_summary(groups, self._EXECUTOR), flush=True)
        if self.dry_run:  # the local executor has no batch script: its plan is the summary above
            print(dry_run_scripts(groups, array_size) if self._SLURM else "# dry run: nothing started", flush=True)
            self._remove_sweep_dir()
            return []
        with _umask(int(self.umask, 8)):
            self._make_sweep_dir()
            submitted = [
                (job, sub)
                for group in groups
                for chunk in array_chunks(group.jobs, array_size)
                for job, sub in zip(chunk, self._submit(group.executor, chunk))
            ]
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

    def _submit(self, executor: Any, jobs: list[PlannedJob]) -> list[Any]:
        args = []
        for job in jobs:
            log.info(scrub_text(f"\t#{job.num} : {' '.join(filter_overrides(job.overrides))}"))
            args.append((job.overrides, "hydra.sweep.dir", job.num, f"job_id_for_{job.num}"))
        state = Singleton.get_state()
        if len(jobs) == 1:
            return [executor.submit(self, *args[0], state)]
        call = SharedCall(self, state, preflight.static_prefix(str(executor.folder)))  # one pickle per array
        return list(executor.map_array(call, *zip(*args)))

    def _collect(self, job: PlannedJob, submitted: Any) -> JobReturn:
        try:
            ret = submitted.results()[0]
        except Exception as err:  # failed or died without a result: this job's failure; collect the others
            return failed_return(job, submitted, err)
        value = compat.returned_value(ret)
        if ret.status is JobStatus.COMPLETED and isinstance(value, float) and not math.isfinite(value):
            ret.status = JobStatus.FAILED  # a diverged run is no result to compare
            ret.return_value = TrainingFailed(f"job #{job.num} returned the objective {value}")
        return ret

    @staticmethod
    def _detached(job: PlannedJob, submitted: Any) -> JobReturn:
        log.info(f"job #{job.num} submitted as {submitted.job_id} (detached)")
        ret = JobReturn(overrides=job.overrides, status=JobStatus.COMPLETED)
        ret.return_value = submitted.job_id
        return ret


def failed_return(job: PlannedJob, submitted: Any, err: Exception) -> JobReturn:
    """A FAILED ``JobReturn`` for a job whose result is an error; the error is the task's own when it raised."""
    error = task_error(err)
    log.error(f"job #{job.num} ({submitted.job_id}) failed: {' '.join(str(error).split())[:400]}")
    ret = JobReturn(overrides=job.overrides, status=JobStatus.FAILED)
    ret.return_value = error
    return ret


class RnaHpcSlurmLauncher(RnaHpcLauncherBase, SlurmLauncher):
    """hydra-submitit-launcher's Slurm launcher with pre-submission validation, dry runs and detached submission."""

    _SLURM = True


class RnaHpcLocalLauncher(RnaHpcLauncherBase, LocalLauncher):
    """hydra-submitit-launcher's local launcher (one process per task here) with pre-submission validation."""


__all__ = ["RnaHpcLauncherBase", "RnaHpcLocalLauncher", "RnaHpcSlurmLauncher", "max_array_size"]
