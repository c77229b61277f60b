"""What the launchers do at the end of every app's job on its node: the requeue limit, ``error.json``, the
time-limit signal ignored once the task is done, and the consolidation of the files the app declares.

``error.json`` says what failed, where, and which log to read; rank 0 writes it atomically into the job's shared dir
(an app with rna_hpc's run layout) or else its run dir, where ``rna-hpc-status`` and the failure summary find it.
"""

from __future__ import annotations

import functools
import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from rna_hpc.errors import RequeueLimitReached
from rna_hpc.launch.env import JobContext, check_requeue_limit
from rna_hpc.launch.identity import RunIdentity, has_run_layout

log = logging.getLogger(__name__)


def record_failure(err: BaseException, identity: RunIdentity, ctx: JobContext) -> None:
    """Rank 0 leaves ``error.json`` in ``identity.shared_dir``; a problem writing it is logged, never raised."""
    from rna_hpc.checkpoint.io import atomic_write_json
    from rna_hpc.checkpoint.redact import redact

    log_files = sorted(str(p) for p in identity.run_dir.glob("*.log"))
    record = {
        "run_id": identity.run_id,
        "type": type(err).__name__,
        "message": str(err)[:2000],
        "traceback": traceback.format_exception(err)[-6:],
        "log": log_files[0] if log_files else None,
        "slurm_job_id": ctx.job_id,
        "node": ctx.hostname,
        "restart_count": ctx.restart_count,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        identity.shared_dir.mkdir(parents=True, exist_ok=True)  # a job can fail before its first consolidation
        atomic_write_json(identity.shared_dir / "error.json", redact(record))
    except OSError as write_err:  # never hide the original error behind a reporting problem
        log.error("could not record the failure in %s: %s", identity.shared_dir, write_err)


def job_identity(cfg: DictConfig, hydra_cfg: Any) -> RunIdentity:
    """The running job's identity: rna_hpc's run layout when the app has it, else its run dir for both dirs."""
    if has_run_layout(cfg):
        return RunIdentity.from_hydra(cfg, hydra_cfg)
    run_dir = Path(str(hydra_cfg.runtime.output_dir))
    num = hydra_cfg.job.get("num")
    return RunIdentity(str(hydra_cfg.job.name), run_dir.parent.name, int(num or 0), run_dir, run_dir)


def within_requeue_limit(task_function: Callable[[DictConfig], Any], max_num_preemptions: int | None) -> Callable:
    """``task_function`` that first stops (``RequeueLimitReached``, recorded in ``error.json``) when Slurm restarted
    the job more than ``max_num_preemptions`` times for other causes than its time limit."""

    @functools.wraps(task_function)
    def run(cfg: DictConfig) -> Any:
        from hydra.core.hydra_config import HydraConfig

        ctx = JobContext.from_env()
        try:
            check_requeue_limit(ctx, max_num_preemptions)
        except RequeueLimitReached as err:
            if ctx.is_global_zero:
                record_failure(err, job_identity(cfg, HydraConfig.get()), ctx)
            raise
        return task_function(cfg)

    return run


def ignore_time_limit_signal() -> None:
    """From now on submitit's time-limit signal (USR2) does nothing in this process: the task is done, so a requeue
    would run it again, and during interpreter shutdown (CPython then restores the default action of signals with
    Python handlers) the signal would kill the finished job and Slurm would record it FAILED."""
    import signal

    import submitit

    signal.signal(getattr(signal, f"SIG{submitit.JobEnvironment.USR_SIG}"), signal.SIG_IGN)


def consolidate_declared(ret: Any, include: list[str], to: str, umask: int) -> Path | None:
    """Copy the files ``include`` matches in the finished job's run dir to ``to/<its subfolder of the sweep dir>``,
    verified, with ``manifest.json`` written last; the manifest, or None when the copy failed (logged: the job's own
    outcome stands)."""
    from rna_hpc.checkpoint.consolidate import collect_artifacts, consolidate

    hydra_cfg = ret.hydra_cfg.hydra
    run_dir = Path(str(hydra_cfg.runtime.output_dir))
    try:
        sub = run_dir.relative_to(Path(str(hydra_cfg.sweep.dir)).absolute())
    except ValueError:
        sub = Path(str(hydra_cfg.job.get("num", 0)))
    fields = {"run_dir": str(run_dir), "job_num": hydra_cfg.job.get("num"), "status": ret.status.name}
    try:
        return consolidate(run_dir, Path(to) / sub, files=collect_artifacts(run_dir, include), manifest_fields=fields,
                           umask=umask)  # fmt: skip
    except Exception as err:
        log.error("could not consolidate %s to %s: %s: %s", run_dir, to, type(err).__name__, err)
        return None
