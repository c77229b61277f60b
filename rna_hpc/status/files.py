"""What the jobs of a sweep left on disk, for ``rna-hpc-status``: where they are and what they say.

A sweep's jobs come from its ``sweep.json`` (written by the submitit launchers) and from numbered job directories:
``<sweep dir>/<n>/`` (Hydra's run dirs; their ``.hydra`` config says where the shared copy is) or
``<shared sweep dir>/<n>/`` (consolidated copies). Nothing here writes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rna_hpc.checkpoint.manifest import MANIFEST_NAME, read_manifest, verify_manifest
from rna_hpc.errors import InputError
from rna_hpc.launch.record import RECORD_NAME, JobRecord, SweepRecord, find_sweep_record

DEFAULT_OBJECTIVE = "val/tm"
_VERIFIED: dict[tuple[str, int, int], bool] = {}  # (manifest path, mtime_ns, size) -> artifacts verified


@dataclass
class JobFiles:
    """The files of one job, read once per refresh."""

    manifest: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    started: bool = False
    consolidated: bool = False
    metrics_csv: Path | None = None
    objective: str = DEFAULT_OBJECTIVE
    mode: str = "max"
    log: str | None = None
    node: str | None = None
    restart_count: int | None = None
    slurm_job_id: str | None = None
    consolidates: bool = True  # consolidate.enabled: a finished run has a manifest with an end time

    @property
    def ended(self) -> bool:
        return self.manifest is not None and bool(self.manifest.get("ended_at"))


def _json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _yaml(path: Path) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def is_consolidated(shared_dir: Path) -> bool:
    """``manifest.json`` present and every artifact matching it; re-verified only when the manifest changes."""
    path = shared_dir / MANIFEST_NAME
    try:
        st = path.stat()
    except OSError:
        return False
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _VERIFIED:
        _VERIFIED[key] = not verify_manifest(shared_dir)
    return _VERIFIED[key]


def objective_and_mode(config: dict[str, Any] | None) -> tuple[str, str]:
    """The run's objective metric and whether larger is better (the checkpoint mode when it is the monitor)."""
    config = config or {}
    objective = str(config.get("objective") or DEFAULT_OBJECTIVE)
    ckpt = config.get("checkpoint") or {}
    if objective == ckpt.get("monitor") and ckpt.get("mode") in ("min", "max"):
        return objective, ckpt["mode"]
    return objective, "min" if any(w in objective for w in ("loss", "rmsd", "error")) else "max"


def _newest(paths: list[Path]) -> Path | None:
    existing = [p for p in paths if p.is_file()]
    return max(existing, key=lambda p: p.stat().st_mtime_ns) if existing else None


def _first_log(dirs: list[Path]) -> str | None:
    for d in dirs:
        logs = sorted(d.glob("*.log"))
        if logs:
            return str(logs[0])
    return None


def read_job_files(job: JobRecord) -> JobFiles:
    """Read one job's manifest, error record, config, metrics location and log."""
    run = Path(job.run_dir) if job.run_dir else None
    shared = Path(job.shared_dir) if job.shared_dir else None
    dirs = [d for d in (run, shared) if d is not None and d.is_dir()]
    files = JobFiles(started=bool(dirs))
    if shared is not None:
        files.manifest = read_manifest(shared)
        files.error = _json(shared / "error.json")
        files.consolidated = files.manifest is not None and is_consolidated(shared)
    config = next((c for c in (_yaml(d / ".hydra" / "config.yaml") for d in dirs) if c), None)
    config = config or (files.manifest or {}).get("config") or {}
    files.objective, files.mode = objective_and_mode(config)
    files.consolidates = bool((config.get("consolidate") or {}).get("enabled", True))
    files.metrics_csv = _newest([d / "csv" / "metrics.csv" for d in dirs])
    slurm = (files.manifest or {}).get("slurm") or {}
    error = files.error or {}
    files.log = error.get("log") or _first_log(dirs)
    files.node = error.get("node") or slurm.get("node_list")
    counts = [c for c in (slurm.get("restart_count"), error.get("restart_count")) if isinstance(c, int)]
    files.restart_count = max(counts) if counts else None
    files.slurm_job_id = error.get("slurm_job_id") or slurm.get("job_id")
    return files


def _shared_dir_of_run(run_dir: Path, sweep_id: str) -> str | None:
    """``<paths.shared_dir>/<experiment>/<sweep id>/<num>`` from a Hydra run dir's saved config."""
    from omegaconf import OmegaConf

    import rna_hpc.launch.config  # noqa: F401 - registers the rna_hpc.* resolvers used by env=cluster

    cfg_file, hydra_file = run_dir / ".hydra" / "config.yaml", run_dir / ".hydra" / "hydra.yaml"
    try:
        cfg = OmegaConf.load(cfg_file)
        cwd = OmegaConf.load(hydra_file).hydra.runtime.cwd if hydra_file.is_file() else os.getcwd()
        root = Path(str(OmegaConf.select(cfg, "paths.shared_dir", throw_on_missing=True)))
        experiment = str(cfg.experiment_name)
    except Exception:  # a config that no longer resolves (an unset variable): no shared dir to show
        return None
    root = root if root.is_absolute() else Path(str(cwd)) / root
    return str(root / experiment / sweep_id / run_dir.name)


def _job_from_dir(job_dir: Path, sweep_dir: Path) -> JobRecord:
    overrides = (_yaml_list(job_dir / ".hydra" / "overrides.yaml")) or []
    if (job_dir / ".hydra" / "hydra.yaml").is_file():  # a scratch run dir
        shared = _shared_dir_of_run(job_dir, sweep_dir.name)
        return JobRecord(num=int(job_dir.name), overrides=overrides, run_dir=str(job_dir), shared_dir=shared)
    return JobRecord(num=int(job_dir.name), overrides=overrides, shared_dir=str(job_dir))


def _yaml_list(path: Path) -> list[str] | None:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return [str(x) for x in data] if isinstance(data, list) else None


def locate_jobs(path: str | os.PathLike[str]) -> tuple[SweepRecord | None, list[JobRecord]]:
    """The sweep record (if any) and every job of the sweep in ``path`` (a sweep dir or a shared sweep dir)."""
    sweep_dir = Path(path)
    if sweep_dir.name == RECORD_NAME:
        sweep_dir = sweep_dir.parent
    if not sweep_dir.is_dir():
        raise InputError(f"{sweep_dir}: no such sweep directory")
    record = find_sweep_record(sweep_dir)
    jobs = {j.num: j for j in record.jobs} if record else {}
    for sub in sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()):
        if int(sub.name) not in jobs:
            jobs[int(sub.name)] = _job_from_dir(sub, sweep_dir)
    if not jobs:
        raise InputError(
            f"{sweep_dir}: no jobs found (no {RECORD_NAME} and no numbered job directories); "
            "give hydra.sweep.dir or <paths.shared_dir>/<experiment>/<sweep id>"
        )
    return record, [jobs[n] for n in sorted(jobs)]


def launcher_kind(record: SweepRecord | None, jobs: list[JobRecord]) -> str:
    """slurm, local or basic: from the record, else from a job's saved Hydra config; unknown when neither says."""
    if record is not None:
        return record.launcher
    for job in jobs:
        hydra = _yaml(Path(job.run_dir) / ".hydra" / "hydra.yaml") if job.run_dir else None
        target = str(((hydra or {}).get("hydra") or {}).get("launcher", {}).get("_target_", ""))
        if target:
            return "basic" if target.endswith("BasicLauncher") else "slurm" if "Slurm" in target else "local"
    return "unknown"
