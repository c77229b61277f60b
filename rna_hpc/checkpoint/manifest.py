"""``manifest.json``: what a consolidated run contains and how to verify it; written last, atomically.

A manifest records the run id, the config (redacted) and its hash, the git revision, package versions, the Slurm
job, start and end times, final metrics, and ``artifacts``: ``{relpath: {sha256, size}}`` for every file copied.
A directory without a manifest, or whose files do not match it, is not a result.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from rna_hpc.checkpoint.io import atomic_write_json, sha256_file
from rna_hpc.checkpoint.redact import redact
from rna_hpc.checkpoint.scrub import scrub_values

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
PACKAGES = {
    "torch": "torch",
    "pytorch_lightning": "pytorch-lightning",
    "hydra": "hydra-core",
    "submitit": "submitit",
    "optuna": "optuna",
    "peft": "peft",
    "rna_hpc": "rna_hpc",
}


def utc_now() -> str:
    """The current time as ISO 8601 UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _plain(cfg: Any) -> Any:
    from omegaconf import OmegaConf

    if OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    return cfg


def config_hash(cfg_container: Any) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces) of a config container."""
    text = json.dumps(_plain(cfg_container), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """``{revision, dirty}`` of the repository the package runs from; nulls when it is not a git checkout."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return {"revision": None, "dirty": None}
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return {"revision": None, "dirty": None}
    revision = rev.stdout.strip() if rev.returncode == 0 else None
    dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    return {"revision": revision, "dirty": dirty}


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a result depends on."""
    versions: dict[str, str | None] = {}
    for name, dist in PACKAGES.items():
        try:
            versions[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


_JOB_FIELDS = {"job_id": None, "array_job_id": None, "array_task_id": None, "node_list": None, "restart_count": 0,
               "world_size": 1, "num_nodes": 1}  # fmt: skip


def _job_fields(job: Any) -> dict[str, Any]:
    """The Slurm fields of a ``rna_hpc.launch.env.JobContext`` (a plain process's defaults without one)."""
    return {key: getattr(job, key, default) for key, default in _JOB_FIELDS.items()}


def json_metric(value: Any) -> float | str | None:
    """A metric as strict JSON holds it: a finite float, None for NaN/inf, or its text when not a number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None  # strict JSON has no NaN/inf


def build_manifest(
    run_id: str,
    *,
    config: Any = None,
    job: Any = None,
    started_at: str | None = None,
    ended_at: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    artifacts: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The manifest of one run; ``config`` is hashed as given and stored redacted; non-finite metrics become null."""
    config = _plain(config)
    return {
        "format": FORMAT_VERSION,
        "run_id": run_id,
        "config_hash": config_hash(config) if config is not None else None,
        "config": redact(config),
        "git": git_state(),
        "versions": package_versions(),
        "slurm": _job_fields(job),
        "started_at": started_at,
        "ended_at": ended_at,
        "metrics": {str(k): json_metric(v) for k, v in sorted((metrics or {}).items())},
        "artifacts": {k: dict(v) for k, v in sorted((artifacts or {}).items())},
    }


def write_manifest(directory: str | Path, manifest: Mapping[str, Any]) -> Path:
    """Write ``<directory>/manifest.json`` atomically, secret values masked (callers write it after every artifact)."""
    path = Path(directory) / MANIFEST_NAME
    atomic_write_json(path, scrub_values(dict(manifest)))
    return path


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    """The manifest in ``directory``, or None when it is missing or not a JSON object."""
    try:
        data = json.loads((Path(directory) / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_safe_relpath(relpath: str) -> bool:
    """A relative POSIX path that stays inside its directory."""
    path = PurePosixPath(relpath)
    return bool(relpath) and not path.is_absolute() and ".." not in path.parts and "\\" not in relpath


def verify_artifact(directory: Path, relpath: str, entry: Any) -> str | None:
    """The problem with one manifest entry, or None when the file matches its size and sha256."""
    path = directory / relpath
    if not is_safe_relpath(relpath):
        return f"{relpath}: path leaves the result directory"
    if not isinstance(entry, Mapping) or not re.fullmatch(r"[0-9a-f]{64}", str(entry.get("sha256", ""))):
        return f"{path}: manifest entry has no sha256"
    if not path.is_file():
        return f"{path}: missing"
    size = path.stat().st_size
    if entry.get("size") is not None and size != entry["size"]:
        return f"{path}: size {size} bytes, the manifest records {entry['size']}"
    if sha256_file(path) != entry["sha256"]:
        return f"{path}: sha256 differs from the manifest"
    return None


def verify_manifest(directory: str | Path) -> list[str]:
    """Every problem of a consolidated directory (missing or unreadable manifest, missing or changed files)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest is None:
        state = "unreadable" if (directory / MANIFEST_NAME).exists() else "missing"
        return [f"{directory / MANIFEST_NAME}: {state}"]
    artifacts = manifest.get("artifacts")
    if not isinstance(artifacts, Mapping):
        return [f"{directory / MANIFEST_NAME}: no 'artifacts' mapping"]
    problems = [verify_artifact(directory, rel, entry) for rel, entry in sorted(artifacts.items())]
    return [p for p in problems if p]
