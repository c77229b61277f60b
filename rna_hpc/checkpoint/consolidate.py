"""Copy a run's artifacts from scratch to shared storage, verified, with ``manifest.json`` written last.

Consolidation is idempotent: a file whose copy already has the same sha256 is not touched (not even its mtime),
and the manifest is rewritten only when its content changes. A consolidation killed mid-copy leaves no partial
file under a final name (only a temp file, removed by the next call), and the next call completes it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rna_hpc.checkpoint.io import (
    TEMP_NAME,
    atomic_copy,
    remove_file,
    remove_stale_temps,
    secure_mkdir,
    sha256_file,
)
from rna_hpc.checkpoint.manifest import MANIFEST_NAME, is_safe_relpath, read_manifest, write_manifest
from rna_hpc.errors import InputError

DEFAULT_INCLUDE = ("ckpt/*.ckpt", "ckpt/*.ckpt.sha256", "**/metrics.csv")


def collect_artifacts(run_dir: str | Path, include: Iterable[str] = DEFAULT_INCLUDE) -> list[Path]:
    """The files under ``run_dir`` matching any ``include`` glob, sorted, temp files and the manifest left out."""
    run_dir = Path(run_dir)
    found = {
        p
        for pattern in include
        for p in run_dir.glob(pattern)
        if p.is_file() and not TEMP_NAME.match(p.name) and p.name != MANIFEST_NAME
    }
    return sorted(found)


def _relpath(path: Path, run_dir: Path) -> str:
    full = path if path.is_absolute() else run_dir / path
    try:
        rel = full.resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        raise InputError(f"{path}: artifact is outside the run dir {run_dir}") from None
    if not is_safe_relpath(rel) or rel == MANIFEST_NAME:
        raise InputError(f"{path}: cannot be consolidated as {rel!r}")
    return rel


def _copy_if_changed(src: Path, dst: Path) -> dict[str, Any]:
    """Copy ``src`` over ``dst`` unless ``dst`` already holds the same bytes; return ``{sha256, size}``."""
    if dst.is_file() and src.is_file() and dst.stat().st_size == src.stat().st_size:
        digest = sha256_file(src)
        if sha256_file(dst) == digest:
            return {"sha256": digest, "size": dst.stat().st_size}
    try:
        digest = atomic_copy(src, dst)
    except FileNotFoundError:
        if not src.exists():
            raise InputError(f"{src}: artifact to consolidate disappeared") from None
        raise
    return {"sha256": digest, "size": dst.stat().st_size}


def _normalized(manifest: Mapping[str, Any]) -> Any:
    return json.loads(json.dumps(manifest, sort_keys=True, default=str))


def consolidate(
    run_dir: str | Path,
    shared_dir: str | Path,
    *,
    files: Iterable[str | Path],
    manifest_fields: Mapping[str, Any],
    umask: int = 0o022,
    prune: bool = False,
) -> Path:
    """Copy ``files`` (paths under ``run_dir``) to the same relative paths under ``shared_dir``; return the manifest.

    The manifest is ``manifest_fields`` plus ``artifacts``, written after every copy. ``prune`` then removes
    the files of the previous manifest that this one no longer lists (old periodic checkpoints).
    """
    run_dir, shared_dir = Path(run_dir), Path(shared_dir)
    relpaths = sorted({_relpath(Path(f), run_dir) for f in files})
    secure_mkdir(shared_dir, umask)
    for directory, _, _ in os.walk(shared_dir):
        remove_stale_temps(directory)
    previous = read_manifest(shared_dir)
    artifacts: dict[str, dict[str, Any]] = {}
    for rel in relpaths:
        dst = shared_dir / rel
        if not dst.parent.is_dir():
            secure_mkdir(dst.parent, umask)
        artifacts[rel] = _copy_if_changed(run_dir / rel, dst)
    manifest = {**manifest_fields, "artifacts": artifacts}
    if previous is None or _normalized(previous) != _normalized(manifest):
        write_manifest(shared_dir, manifest)
    if prune and previous and isinstance(previous.get("artifacts"), Mapping):
        for rel in set(previous["artifacts"]) - set(artifacts):
            if is_safe_relpath(rel):
                remove_file(shared_dir / rel)
    return shared_dir / MANIFEST_NAME
