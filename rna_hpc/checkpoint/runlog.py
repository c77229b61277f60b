"""``runs.jsonl``: one JSON line per training run, prediction and evaluation, appended under an exclusive lock.

``<shared>/<experiment>/runs.jsonl`` is the experiment's lineage log: what ran (``kind``, ``run_id``), from which
config (``config_hash``), code (``git``) and data (``data_hash``), what it wrote (``outputs``: path -> sha256) and
what it scored (``metrics``). Concurrent jobs of a sweep append to the same file: each writer takes an exclusive
POSIX lock (``lockf``, which NFS clients share through the server) on ``runs.jsonl.lock``, writes its whole line
with one ``write`` call and fsyncs before unlocking, so lines never interleave and none is lost. A line is strict
JSON (non-finite numbers become null).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rna_hpc.checkpoint.io import fsync_dir, sha256_file
from rna_hpc.checkpoint.manifest import git_state, json_metric, utc_now
from rna_hpc.checkpoint.scrub import scrub_values

RUNLOG_NAME = "runs.jsonl"
LOCK_SUFFIX = ".lock"


@contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an exclusive POSIX lock on ``<path>.lock`` (created beside it) for the block."""
    lock_path = Path(path).with_name(Path(path).name + LOCK_SUFFIX)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def output_digests(paths: Mapping[str, str | Path]) -> dict[str, str]:
    """``{name: sha256}`` of the files given as ``{name: path}``."""
    return {name: sha256_file(path) for name, path in sorted(paths.items())}


def run_record(
    kind: str,
    run_id: str,
    *,
    config_hash: str | None,
    data_hash: str | None = None,
    outputs: Mapping[str, str] | None = None,
    metrics: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One log line: ``kind`` (train, predict, evaluate), identity, lineage, output digests and metrics."""
    return {
        "kind": kind,
        "run_id": run_id,
        "time": utc_now(),
        "config_hash": config_hash,
        "git": git_state(),
        "data_hash": data_hash,
        "outputs": dict(sorted((outputs or {}).items())),
        "metrics": {str(k): json_metric(v) for k, v in sorted((metrics or {}).items())},
        **extra,
    }


def append_record(path: str | Path, record: Mapping[str, Any]) -> Path:
    """Append ``record`` as one line to the JSONL file ``path`` (folder created), under the lock; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(scrub_values(dict(record)), sort_keys=True, allow_nan=False, default=str) + "\n").encode()
    with locked(path):
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
            while written < len(line):  # a short write (a signal, a full pipe buffer): finish the same line
                written += os.write(fd, line[written:])
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(path.parent)
    return path


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a ``runs.jsonl`` (an empty list when it does not exist)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]
