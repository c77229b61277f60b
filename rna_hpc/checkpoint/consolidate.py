"""Copy a run's artifacts from scratch to shared storage, verified, with ``manifest.json`` written last.

Consolidation is idempotent: a file whose copy already has the same sha256 is not touched (not even its mtime),
and the manifest is rewritten only when its content changes. A consolidation killed mid-copy leaves no partial
file under a final name (only a temp file, removed by the next call), and the next call completes it. Nor does it
leave a manifest entry that its file contradicts: before a listed file is replaced, the manifest is rewritten
without it (it is listed again, with its new sha256, at the end). Text files (configs, logs, metrics) are copied
with credentials masked (``rna_hpc.checkpoint.scrub``); the manifest records the sha256 of what is on shared
storage.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from rna_hpc.checkpoint.io import (
    TEMP_NAME,
    atomic_copy,
    atomic_writer,
    remove_file,
    remove_stale_temps,
    secure_mkdir,
    sha256_file,
)
from rna_hpc.checkpoint.manifest import MANIFEST_NAME, is_safe_relpath, read_manifest, write_manifest
from rna_hpc.checkpoint.scrub import is_text_artifact, scrub_bytes, scrub_values, secret_values
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


def _copy_if_changed(src: Path, dst: Path, secrets: list[str], before_write: Callable[[], None]) -> dict[str, Any]:
    """Copy ``src`` over ``dst`` unless ``dst`` already holds the same bytes; return ``{sha256, size}``.

    ``before_write`` runs before ``dst`` is written. A text artifact is copied with its credentials
    masked, so ``dst`` holds the masked bytes.
    """
    try:
        if is_text_artifact(src):
            return _write_scrubbed(src, dst, secrets, before_write)
        if dst.is_file() and src.is_file() and dst.stat().st_size == src.stat().st_size:
            digest = sha256_file(src)
            if sha256_file(dst) == digest:
                return {"sha256": digest, "size": dst.stat().st_size}
        before_write()
        digest = atomic_copy(src, dst)
    except FileNotFoundError:
        if not src.exists():
            raise InputError(f"{src}: artifact to consolidate disappeared") from None
        raise
    return {"sha256": digest, "size": dst.stat().st_size}


def _write_scrubbed(src: Path, dst: Path, secrets: list[str], before_write: Callable[[], None]) -> dict[str, Any]:
    data = scrub_bytes(src.read_bytes(), secrets)
    digest = hashlib.sha256(data).hexdigest()
    if not (dst.is_file() and dst.stat().st_size == len(data) and sha256_file(dst) == digest):
        before_write()
        with atomic_writer(dst, verify=True, mtime_ns=src.stat().st_mtime_ns) as out:
            out.write(data)
    return {"sha256": digest, "size": len(data)}


def _normalized(manifest: Mapping[str, Any]) -> Any:
    return json.loads(json.dumps(manifest, sort_keys=True, default=str))


def _kept_from_earlier(shared_dir: Path, entries: Mapping[str, Any], prune: tuple[str, ...]) -> dict[str, Any]:
    """Entries of the previous manifest to list again: not to be pruned, safe, and their file still has its size."""
    kept = {}
    for rel, entry in entries.items():
        if _matches(rel, prune) or not is_safe_relpath(rel) or not isinstance(entry, Mapping):
            continue
        path = shared_dir / rel
        if path.is_file() and path.stat().st_size == entry.get("size"):
            kept[rel] = dict(entry)
    return kept


def _withdrawal(shared_dir: Path, previous: Mapping[str, Any] | None) -> Callable[[str], None]:
    """``withdraw(rel)``: rewrite the manifest without ``rel``, a file about to be written, when it lists it; so a
    consolidation killed before its own manifest leaves no entry that its file contradicts, and keeps the rest."""
    artifacts = previous.get("artifacts") if previous else None
    listed = dict(artifacts) if isinstance(artifacts, Mapping) else {}

    def withdraw(rel: str) -> None:
        if listed.pop(rel, None) is not None:
            write_manifest(shared_dir, {**(previous or {}), "artifacts": listed})

    return withdraw


def _matches(rel: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(rel, pattern) for pattern in patterns)


def consolidate(
    run_dir: str | Path,
    shared_dir: str | Path,
    *,
    files: Iterable[str | Path],
    manifest_fields: Mapping[str, Any],
    umask: int = 0o022,
    prune: Iterable[str] = (),
) -> Path:
    """Copy ``files`` (paths under ``run_dir``) to the same relative paths under ``shared_dir``; return the manifest.

    The manifest is ``manifest_fields`` plus ``artifacts``, written after every copy. A file the previous manifest
    listed that is not copied now is removed when it matches a ``prune`` glob (old periodic checkpoints), and
    otherwise kept and listed (what an earlier attempt consolidated before its scratch dir was wiped).
    """
    run_dir, shared_dir, prune = Path(run_dir), Path(shared_dir), tuple(prune)
    relpaths = sorted({_relpath(Path(f), run_dir) for f in files})
    secure_mkdir(shared_dir, umask)
    for directory, _, _ in os.walk(shared_dir):
        remove_stale_temps(directory)
    previous = read_manifest(shared_dir)
    earlier = previous.get("artifacts") if previous else None
    earlier = {k: v for k, v in earlier.items() if k not in relpaths} if isinstance(earlier, Mapping) else {}
    artifacts: dict[str, dict[str, Any]] = _kept_from_earlier(shared_dir, earlier, prune)
    secrets = secret_values()
    withdraw = _withdrawal(shared_dir, previous)
    for rel in relpaths:
        dst = shared_dir / rel
        if not dst.parent.is_dir():
            secure_mkdir(dst.parent, umask)
        artifacts[rel] = _copy_if_changed(run_dir / rel, dst, secrets, functools.partial(withdraw, rel))
    manifest = scrub_values({**manifest_fields, "artifacts": dict(sorted(artifacts.items()))}, secrets)
    on_disk = read_manifest(shared_dir)  # the previous one, or what a withdrawal left
    if on_disk is None or _normalized(on_disk) != _normalized(manifest):
        write_manifest(shared_dir, manifest)
    for rel in earlier:
        if _matches(rel, prune) and is_safe_relpath(rel):
            remove_file(shared_dir / rel)
    return shared_dir / MANIFEST_NAME
