"""What a launcher prints: the plan of a sweep, the sbatch scripts of a dry run, and the failures after it ran."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, filter_overrides

from rna_hpc import compat
from rna_hpc.checkpoint.scrub import scrub_text
from rna_hpc.launch import resources
from rna_hpc.launch.plan import PlannedJob, ShapeGroup, array_chunks


class JobFailed(Exception):
    """A job's task raised on its node: the error's type name and message, as the job's traceback ends."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind

    def __str__(self) -> str:
        return str(self.args[0])


_EXCEPTION_LINE = re.compile(r"([A-Za-z_][\w.]*): ?(.*)")


def task_error(err: Exception) -> Exception:
    """The task's own error behind submitit's ``FailedJobError`` (the end of its traceback), else ``err``."""
    text = str(err)
    if type(err).__name__ != "FailedJobError" or "Traceback" not in text:
        return err
    lines = text.split("\n----------------------\n")[1].splitlines() if "\n---" in text else text.splitlines()
    for k in range(len(lines) - 1, -1, -1):  # the traceback ends with the error's type and message (several lines)
        match = _EXCEPTION_LINE.fullmatch(lines[k])
        if match and not lines[k].startswith("Traceback"):
            message = "\n".join([match.group(2), *lines[k + 1 :]]).strip()
            return JobFailed(match.group(1).rsplit(".", 1)[-1], message)
    return err


def error_text(err: BaseException) -> str:
    """``Type: message`` of a job's error on one line (the task's own type for a job that raised)."""
    kind = err.kind if isinstance(err, JobFailed) else type(err).__name__
    return " ".join(f"{kind}: {err}".split())


def failure_summary(outcomes: Sequence[tuple[PlannedJob, Any, JobReturn]], executor: str = "slurm") -> str:
    """Which jobs failed, with their Slurm id, error, rank-0 log and ``error.json``: where to look first."""
    kind = "Slurm" if executor == "slurm" else executor
    failed = [(job, sub, ret) for job, sub, ret in outcomes if ret.status is JobStatus.FAILED]
    common = set.intersection(*(set(job.overrides) for job, _, _ in outcomes))
    lines = [f"rna_hpc: {len(failed)} of {len(outcomes)} job(s) failed"]
    for job, sub, ret in failed:
        message = error_text(compat.returned_value(ret))[:300]
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


def _jobs(jobs: Sequence[PlannedJob]) -> str:
    nums = [j.num for j in jobs]
    if len(nums) > 8 and nums == list(range(nums[0], nums[0] + len(nums))):
        return f"#{nums[0]}-#{nums[-1]}"
    return ", ".join(f"#{n}" for n in nums)


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
        where = f"partition {p['partition']}" if p.get("partition") else "default partition"
        lines.append(
            f"  [{i}] {len(g.jobs)} job(s) x {nodes} node(s) x {tasks} task(s) x {cpus} cpu(s), {gpus} gpu(s)/node, "
            f"time limit {_minutes(minutes)}, {_requeues(p)}, {where}: jobs {_jobs(g.jobs)}"
        )
        lines.append(f"      submitit folder {os.path.abspath(str(p.get('submitit_folder')))}")
    lines.append(f"  budget at the time limits: {core_h:.2f} core-hours, {gpu_h:.2f} GPU-hours")
    return "\n".join(lines)


def dry_run_scripts(groups: Sequence[ShapeGroup], max_array_size: int | None = None) -> str:
    """The exact sbatch script submitit would submit for each resource shape (an array when it holds > 1 job)."""
    parts = []
    for i, g in enumerate(groups, start=1):
        for chunk in array_chunks(g.jobs, max_array_size):
            count = len(chunk) if len(g.jobs) > 1 else None
            parts.append(f"# ---- dry run [{i}]: jobs {_jobs(chunk)} ----\n{compat.sbatch_script(g.executor, count)}")
    return "\n".join(parts) + "\n# dry run: nothing submitted"
