"""The state of every job of a sweep, from Slurm's accounting and the files the jobs wrote (for ``rna-hpc-status``).

Slurm's state wins, with two exceptions: a job that left ``error.json`` failed, and a job Slurm calls COMPLETED
that left no manifest with an end time failed too (Hydra caught its exception and returned). Without Slurm, the
files decide: ``error.json`` (FAILED), a manifest with an end time (COMPLETED), a run dir (RUNNING).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rna_hpc.launch.accounting import TERMINAL, SlurmState, query_slurm
from rna_hpc.launch.record import JobRecord, SweepRecord
from rna_hpc.status.files import JobFiles, launcher_kind, locate_jobs, read_job_files
from rna_hpc.status.hpo import StageCounts, stage_counts
from rna_hpc.status.plots import Curve, read_metrics

FAILED_STATES = TERMINAL - {"COMPLETED"}


@dataclass
class JobStatus:
    """One row of the table."""

    num: int
    overrides: str
    state: str
    slurm_job_id: str | None
    node: str | None
    requeues: int | None
    epoch: int | None
    step: int | None
    latest: float | None
    best: float | None
    consolidated: bool
    reason: str | None
    log: str | None
    curves: dict[str, Curve]
    objective: str
    shared_dir: Path | None
    trial: str | None = None  # an Optuna search's '<stage>#<trial> <STATE>'

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def failed(self) -> bool:
        return self.state in FAILED_STATES


def file_state(files: JobFiles, record: SweepRecord | None) -> str:
    """The state from the job's files alone (no Slurm): FAILED, COMPLETED, RUNNING, PENDING or UNKNOWN."""
    if files.error is not None:
        return "FAILED"
    if files.ended:
        return "COMPLETED"
    if files.manifest is not None or files.started:
        return "RUNNING"
    return "PENDING" if record is not None else "UNKNOWN"


def job_state(files: JobFiles, slurm: SlurmState | None, record: SweepRecord | None) -> str:
    """Slurm's state, except that a job that recorded an error, or ended without its manifest, failed."""
    if files.error is not None:
        return "FAILED"
    if slurm is not None:
        if slurm.state == "COMPLETED" and files.consolidates and not files.ended:
            return "FAILED"  # the task returned (Hydra catches its errors) without a result
        return slurm.state
    return file_state(files, record)


def objective_values(curves: dict[str, Curve], files: JobFiles) -> tuple[float | None, float | None]:
    """(latest, best) of the objective: from metrics.csv, else the manifest's final metrics."""
    values = [v for _, v in curves.get(files.objective, [])]
    if not values and files.manifest is not None:
        final = (files.manifest.get("metrics") or {}).get(files.objective)
        values = [final] if isinstance(final, (int, float)) else []
    if not values:
        return None, None
    return values[-1], (max(values) if files.mode == "max" else min(values))


def _last(curves: dict[str, Curve], key: str) -> int | None:
    curve = curves.get(key)
    return int(curve[-1][1]) if curve else None


def failure_reason(files: JobFiles, state: str, slurm: SlurmState | None) -> str | None:
    if files.error is not None:
        return f"{files.error.get('type', 'error')}: {' '.join(str(files.error.get('message', '')).split())}"
    if slurm is not None and slurm.state == "COMPLETED" and state == "FAILED":
        return "the Slurm job completed without a result (no manifest.json with an end time); see its log"
    if state in FAILED_STATES:
        code = f" (exit code {slurm.exit_code})" if slurm is not None else ""
        return f"Slurm state {state}{code}; see the submitit log"
    return None


def submitit_log_first(files: JobFiles, job: JobRecord, state: str) -> str | None:
    """The job's own log; submitit's rank-0 stderr when the job died without recording why, or has no log yet."""
    if files.log and not (state in FAILED_STATES and files.error is None):
        return files.log
    return job.stderr or files.log


def inspect_job(
    job: JobRecord, files: JobFiles, record: SweepRecord | None, slurm: dict[str, SlurmState] | None
) -> JobStatus:
    """Everything the table shows about one job."""
    job_id = job.slurm_job_id or files.slurm_job_id
    sl = slurm.get(job_id) if slurm and job_id else None
    state = job_state(files, sl, record)
    curves = read_metrics(files.metrics_csv) if files.metrics_csv else {}
    latest, best = objective_values(curves, files)
    requeues = sl.requeues if sl is not None else None
    if files.restart_count is not None:
        requeues = max(requeues or 0, files.restart_count)
    return JobStatus(
        num=job.num,
        overrides=" ".join(o for o in job.overrides if not o.startswith("++trial.")),
        state=state,
        slurm_job_id=job_id,
        node=sl.node_list if sl is not None and sl.node_list not in ("", "None assigned") else files.node,
        requeues=requeues,
        epoch=_last(curves, "epoch"),
        step=_last(curves, "step"),
        latest=latest,
        best=best,
        consolidated=files.consolidated,
        reason=failure_reason(files, state, sl),
        log=submitit_log_first(files, job, state),
        curves=curves,
        objective=files.objective,
        shared_dir=Path(job.shared_dir) if job.shared_dir else None,
    )


@dataclass
class SweepStatus:
    """One refresh: the sweep's record (if any), its jobs and, for an Optuna search, its stages."""

    sweep_dir: Path
    record: SweepRecord | None
    rows: list[JobStatus]
    stages: list[StageCounts]

    @property
    def done(self) -> bool:
        return all(r.terminal for r in self.rows)

    @property
    def failed(self) -> bool:
        return any(r.failed for r in self.rows)


def collect(sweep_dir: str | Path) -> SweepStatus:
    """The status of every job, with one sacct call for all Slurm jobs, and the search's stages."""
    sweep_dir = Path(sweep_dir)
    record, jobs = locate_jobs(sweep_dir)
    files = {j.num: read_job_files(j) for j in jobs}
    slurm = query_slurm([j.slurm_job_id or files[j.num].slurm_job_id for j in jobs])
    rows = [inspect_job(j, files[j.num], record, slurm) for j in jobs]
    stages = stage_counts(sweep_dir, record, jobs)
    trials = {num: label for s in stages for num, label in s.trials.items()}
    for row in rows:
        row.trial = trials.get(row.num)
    if launcher_kind(record, jobs) == "basic":
        mark_ended(rows, {j.num for j in jobs if files[j.num].started})
    return SweepStatus(sweep_dir, record, rows, stages)


def mark_ended(rows: Sequence[JobStatus], started: set[int]) -> None:
    """In a sweep run one job after another (the basic launcher), a job without a result whose successor has
    started has ended: it failed before it could record why (for instance in config validation)."""
    for row in rows:
        if row.state == "RUNNING" and any(n > row.num for n in started):
            row.state = "FAILED"
            row.reason = "ended without a result (no manifest.json, no error.json); a later job has started"
