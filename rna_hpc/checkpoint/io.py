"""Atomic writes, sha256 digests, checkpoint sidecars and safe loads: the one module that writes result files.

Every write goes to a temp file ``.<name>.tmp-<pid>`` in the target directory, is fsynced, renamed over the final
name with ``os.replace``, and the directory is fsynced. A reader, or a requeued job, sees the old file or the new
one, never a partial one. A writer killed mid-write leaves only its temp file; :func:`remove_stale_temps` cleans it.
A checkpoint ``<name>.ckpt`` is complete once its sidecar ``<name>.ckpt.sha256`` (``sha256sum`` format) exists.

``AtomicCheckpointIO`` (the Lightning plugin) lives in :mod:`rna_hpc.checkpoint.lightning_io`, so that this module
stays free of Lightning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from rna_hpc.errors import CheckpointError, ConfigError

CHUNK_SIZE = 4 << 20
SIDECAR_SUFFIX = ".sha256"
TEMP_NAME = re.compile(r"^\..+\.tmp-\d+(?:-\d+)?$")
_IN_PROGRESS: set[Path] = set()  # temp files this process is writing now (never removed as stale)


class HashingWriter:
    """A binary file wrapper that hashes and counts what is written through it."""

    def __init__(self, raw: BinaryIO, temp_path: Path) -> None:
        self.raw = raw
        self.temp_path = temp_path
        self.size = 0
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


def _create_temp(path: Path) -> tuple[int, Path]:
    """Open ``.<name>.tmp-<pid>`` exclusively; a re-entrant write of the same file (a signal handler) adds ``-<k>``."""
    base = f".{path.name}.tmp-{os.getpid()}"
    for k in range(100):
        temp = path.with_name(base if k == 0 else f"{base}-{k}")
        try:
            return os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temp
        except FileExistsError:
            continue
    raise CheckpointError(f"{path}: cannot create a temp file beside it (100 temp names in use)")


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry (a rename) to disk; a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: str | Path, *, verify: bool = False, mtime_ns: int | None = None) -> Iterator[HashingWriter]:
    """Yield a writer whose content replaces ``path`` atomically when the block ends without error.

    ``verify`` re-reads the fsynced temp file and compares its sha256 before the rename. ``mtime_ns`` sets the
    file's modification time. On any error (disk full, a signal's SystemExit) the temp file is removed and the
    final name is left untouched.
    """
    path = Path(path)
    fd, temp = _create_temp(path)
    _IN_PROGRESS.add(temp)
    try:
        with os.fdopen(fd, "wb") as raw:
            writer = HashingWriter(raw, temp)
            yield writer
            raw.flush()
            if mtime_ns is not None:
                os.utime(raw.fileno(), ns=(mtime_ns, mtime_ns))
            os.fsync(raw.fileno())
        if verify and sha256_file(temp) != writer.sha256:
            raise CheckpointError(f"{path}: written bytes do not read back (sha256 mismatch); not replacing it")
        os.replace(temp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    finally:
        _IN_PROGRESS.discard(temp)


def atomic_write_bytes(path: str | Path, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically; return its sha256."""
    with atomic_writer(path) as out:
        out.write(data)
    return out.sha256


def atomic_write(path: str | Path, data: str | bytes) -> str:
    """Write ``data`` (UTF-8 text or bytes) to ``path`` atomically, creating its folder; return its sha256."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)


def atomic_write_text(path: str | Path, text: str) -> str:
    """Write UTF-8 ``text`` to ``path`` atomically; return its sha256."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> str:
    """Write ``obj`` as indented, key-sorted strict JSON (no NaN) atomically; return its sha256."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def atomic_copy(src: str | Path, dst: str | Path, *, chunk_size: int = CHUNK_SIZE) -> str:
    """Copy ``src`` to ``dst`` atomically, keep its mtime, verify the copy's sha256; return the sha256."""
    src, dst = Path(src), Path(dst)
    mtime_ns = src.stat().st_mtime_ns if src.is_file() else None
    with open(src, "rb") as f, atomic_writer(dst, verify=True, mtime_ns=mtime_ns) as out:
        while chunk := f.read(chunk_size):
            out.write(chunk)
    return out.sha256


def atomic_link_or_copy(src: str | Path, dst: str | Path) -> None:
    """Make ``dst`` a hard link to ``src`` atomically (instant, no extra space), or an atomic copy without links."""
    src, dst = Path(src), Path(dst)
    base = f".{dst.name}.tmp-{os.getpid()}"
    for k in range(100):
        temp = dst.with_name(base if k == 0 else f"{base}-{k}")
        try:
            os.link(src, temp)
        except FileExistsError:
            continue
        except OSError:  # no hard links on this filesystem, or across filesystems
            atomic_copy(src, dst)
            return
        try:
            os.replace(temp, dst)
        except BaseException:
            remove_file(temp)
            raise
        fsync_dir(dst.parent)
        return
    raise CheckpointError(f"{dst}: cannot create a temp file beside it (100 temp names in use)")


def sha256_file(path: str | Path, *, chunk_size: int = CHUNK_SIZE) -> str:
    """The hex sha256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar_path(path: str | Path) -> Path:
    """``<name>.ckpt`` -> ``<name>.ckpt.sha256``."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def write_sidecar(path: str | Path, sha256: str) -> Path:
    """Mark ``path`` complete: write its digest in ``sha256sum`` format, atomically, after the file itself."""
    side = sidecar_path(path)
    atomic_write_text(side, f"{sha256}  {Path(path).name}\n")
    return side


def read_sidecar(path: str | Path) -> str | None:
    """The digest recorded beside ``path``, or None when there is no readable sidecar."""
    try:
        text = sidecar_path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    digest = text.split()[0] if text.split() else ""
    return digest if re.fullmatch(r"[0-9a-f]{64}", digest) else None


def remove_file(path: str | Path) -> None:
    """Remove a file if it exists."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def remove_checkpoint(path: str | Path) -> None:
    """Remove a checkpoint and its sidecar (sidecar first: the checkpoint stops counting as complete at once)."""
    remove_file(sidecar_path(path))
    remove_file(path)


def remove_stale_temps(directory: str | Path) -> list[Path]:
    """Remove the temp files that killed writers left in ``directory``; return them."""
    removed = []
    try:
        entries = list(Path(directory).iterdir())
    except FileNotFoundError:
        return removed
    for entry in entries:
        if TEMP_NAME.match(entry.name) and entry not in _IN_PROGRESS and entry.is_file():
            remove_file(entry)
            removed.append(entry)
    return removed


def secure_mkdir(path: str | Path, umask: int = 0o022) -> Path:
    """Create ``path`` and its missing parents without group/world write; refuse an existing world-writable dir."""
    path = Path(path)
    mode = 0o777 & ~(umask | 0o022)
    missing = []
    parent = path
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            continue
        os.chmod(directory, mode)  # os.mkdir's mode is narrowed by the process umask, never widened
    if not path.is_dir():
        raise ConfigError(f"{path}: exists and is not a directory")
    assert_not_world_writable(path)
    return path


def assert_not_world_writable(path: str | Path) -> None:
    """Raise ConfigError when ``path`` is writable by every user (anyone could plant a checkpoint there)."""
    mode = Path(path).stat().st_mode
    if mode & stat.S_IWOTH:
        raise ConfigError(
            f"{path}: directory is world-writable (mode {stat.S_IMODE(mode):o}); refusing to keep results there "
            "(run 'chmod o-w' on it or choose another paths.scratch_dir / paths.shared_dir)"
        )
