"""``sweep.json``: what a launcher submitted, so a sweep can be followed after the submitting process is gone.

The launcher writes the record right after submission (``write_sweep_record``), into the sweep dir and, when every
job shares one parent there, a copy into the shared sweep dir ``<paths.shared_dir>/<experiment>/<sweep id>/``.
``rna-hpc-status`` reads it from either place. Writes merge by job number under a file lock, so the staged sweeper's
one-job ``launch`` calls (from several threads) and a re-run of the same sweep add to one record. Every write is
atomic (temp file, fsync, ``os.replace``).
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rna_hpc.errors import InputError

RECORD_NAME = "sweep.json"
FORMAT_VERSION = 1
_THREAD_LOCK = threading.Lock()


@dataclass
class JobRecord:
    """One submitted job: its Hydra job number and overrides, Slurm id, directories and submitit logs."""

    num: int
    overrides: list[str] = field(default_factory=list)
    slurm_job_id: str | None = None  # '<array job>_<task>' for array tasks; None for local launchers
    run_dir: str | None = None  # scratch (hydra.runtime.output_dir)
    shared_dir: str | None = None  # <paths.shared_dir>/<experiment>/<sweep id>/<num>
    stdout: str | None = None  # submitit's rank-0 log files
    stderr: str | None = None


@dataclass
class SweepRecord:
    """A sweep as submitted: launcher kind, time, command-line overrides, detached flag and its jobs."""

    launcher: str  # slurm | local | basic
    sweep_dir: str
    created: str = ""
    overrides: list[str] = field(default_factory=list)
    detached: bool = False
    shared_sweep_dir: str | None = None
    jobs: list[JobRecord] = field(default_factory=list)
    format: int = FORMAT_VERSION

    def job(self, num: int) -> JobRecord | None:
        return next((j for j in self.jobs if j.num == num), None)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _from_dict(data: Any, where: Path) -> SweepRecord:
    if not isinstance(data, dict) or not isinstance(data.get("jobs", []), list):
        raise InputError(f"{where}: not a sweep record (expected a JSON object with a 'jobs' list)")
    names = {f.name for f in fields(SweepRecord)}
    job_names = {f.name for f in fields(JobRecord)}
    try:
        jobs = [JobRecord(**{k: v for k, v in j.items() if k in job_names}) for j in data.get("jobs", [])]
        return SweepRecord(**{k: v for k, v in data.items() if k in names and k != "jobs"}, jobs=jobs)
    except (TypeError, AttributeError) as err:
        raise InputError(f"{where}: not a sweep record ({err})") from None


def read_sweep_record(path: str | os.PathLike[str]) -> SweepRecord:
    """The record in ``path`` (a ``sweep.json`` or a directory holding one); InputError when unreadable."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no sweep record") from None
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: unreadable sweep record ({err})") from None
    return _from_dict(data, path)


def find_sweep_record(directory: str | os.PathLike[str]) -> SweepRecord | None:
    """The record of the sweep in ``directory``, or None when there is none."""
    path = Path(directory) / RECORD_NAME
    return read_sweep_record(path) if path.is_file() else None


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Exclusive across threads (one process) and processes (``flock`` on a lock file beside the record)."""
    with _THREAD_LOCK, open(directory / f".{RECORD_NAME}.lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def merge_records(old: SweepRecord | None, new: SweepRecord) -> SweepRecord:
    """``new`` with the jobs of ``old`` that it does not resubmit; the first creation time is kept."""
    if old is None:
        return new
    merged = copy.deepcopy(new)
    merged.created = old.created or new.created
    numbers = {j.num for j in new.jobs}
    merged.jobs = sorted([j for j in old.jobs if j.num not in numbers] + merged.jobs, key=lambda j: j.num)
    return merged


def _write(path: Path, record: SweepRecord) -> None:
    from rna_hpc.checkpoint.io import atomic_write_json

    atomic_write_json(path, asdict(record))


def write_sweep_record(sweep_dir: str | os.PathLike[str], record: SweepRecord) -> Path:
    """Merge ``record`` into ``<sweep dir>/sweep.json`` (and its shared copy) atomically; return the path."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / RECORD_NAME
    with _locked(sweep_dir):
        try:
            old = find_sweep_record(sweep_dir)
        except InputError:
            old = None  # a damaged record is replaced, not merged
        merged = merge_records(old, record)
        merged.created = merged.created or utc_now()
        merged.shared_sweep_dir = merged.shared_sweep_dir or common_parent(j.shared_dir for j in merged.jobs)
        _write(path, merged)
        shared = Path(merged.shared_sweep_dir) if merged.shared_sweep_dir else None
        if shared is not None and shared.resolve() != sweep_dir.resolve():
            with contextlib.suppress(OSError):  # a convenience copy; the sweep dir's record is the one that counts
                shared.mkdir(parents=True, exist_ok=True)
                _write(shared / RECORD_NAME, merged)
    return path


def common_parent(dirs: Iterable[str | None]) -> str | None:
    """The one parent directory of every given job dir, or None when they differ or none is known."""
    parents = {str(Path(d).parent) for d in dirs if d}
    return parents.pop() if len(parents) == 1 else None


def job_dirs(job_cfg: Any) -> tuple[str, str] | None:
    """``(run dir, shared dir)`` of one composed job config whose ``hydra`` node is filled as on the node."""
    from rna_hpc.launch.identity import RunIdentity

    try:
        identity = RunIdentity.from_hydra(job_cfg, job_cfg.hydra)
    except Exception:  # an unresolvable config has no directories to record
        return None
    return str(identity.run_dir), str(identity.shared_dir)


def _fallback_dirs(sweep_cfg: Any, num: int) -> tuple[str, str] | None:
    """The job's directories from the sweep's base config with ``hydra.job.num`` set (job overrides not applied)."""
    from omegaconf import open_dict

    cfg = copy.deepcopy(sweep_cfg)
    try:
        with open_dict(cfg):
            cfg.hydra.job.num = num
            cfg.hydra.runtime.output_dir = os.path.abspath(
                os.path.join(str(cfg.hydra.sweep.dir), str(cfg.hydra.sweep.subdir))
            )
    except Exception:  # a config without a usable hydra node
        return None
    return job_dirs(cfg)


def _submitit_logs(submitted: Any) -> tuple[str | None, str | None]:
    paths = getattr(submitted, "paths", None)
    if paths is None:
        return None, None
    try:
        return str(paths.stdout), str(paths.stderr)
    except Exception:  # submitit may not know the paths of a job it has not started
        return None, None


def record_submission(
    launcher: str, sweep_cfg: Any, submitted: Iterable[tuple[Any, Any]], detached: bool
) -> SweepRecord:
    """The record of one ``launch`` call: ``submitted`` pairs a planned job (``num``, ``overrides``, optionally
    ``shared_dir`` or ``dirs = job_dirs(job_cfg)``) with its submitit job (``job_id``, ``paths``)."""
    jobs = []
    for job, sub in submitted:
        dirs = getattr(job, "dirs", None) or _fallback_dirs(sweep_cfg, job.num)
        if getattr(job, "shared_dir", None) is not None:  # the launcher composed the job: its shared dir is exact
            dirs = (dirs[0] if dirs else None, str(job.shared_dir))
        stdout, stderr = _submitit_logs(sub)
        jobs.append(
            JobRecord(
                num=int(job.num),
                overrides=[str(o) for o in job.overrides],
                slurm_job_id=str(sub.job_id) if launcher == "slurm" and sub is not None else None,
                run_dir=dirs[0] if dirs else None,
                shared_dir=dirs[1] if dirs else None,
                stdout=stdout,
                stderr=stderr,
            )
        )
    hydra = sweep_cfg.hydra
    return SweepRecord(
        launcher=launcher,
        sweep_dir=os.path.abspath(str(hydra.sweep.dir)),
        created=utc_now(),
        overrides=[str(o) for o in hydra.overrides.task],
        detached=bool(detached),
        jobs=sorted(jobs, key=lambda j: j.num),
    )
