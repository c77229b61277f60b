"""Atomic writes, digests, sidecars, directory permissions and safe checkpoint loads."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from rna_hpc.checkpoint.io import (
    assert_not_world_writable,
    atomic_copy,
    atomic_link_or_copy,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    read_sidecar,
    remove_checkpoint,
    remove_stale_temps,
    secure_mkdir,
    sha256_file,
    sidecar_path,
    write_sidecar,
)
from rna_hpc.checkpoint.torch_load import safe_torch_load
from rna_hpc.errors import CheckpointError, ConfigError

REPO = Path(__file__).resolve().parents[2]


def _hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_atomic_writes_replace_content_and_leave_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    digest = atomic_write_json(path, {"b": 1, "a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}
    assert digest == sha256_file(path)
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert atomic_write_bytes(tmp_path / "raw.bin", b"\x00\x01") == sha256_file(tmp_path / "raw.bin")
    assert _hidden(tmp_path) == []
    with pytest.raises(ValueError):
        atomic_write_json(path, {"loss": float("nan")})  # strict JSON
    assert path.read_text() == "second"
    assert _hidden(tmp_path) == []


def test_atomic_copy_verifies_and_keeps_mtime(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(300_000))
    os.utime(src, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    dst = tmp_path / "out" / "copy.bin"
    dst.parent.mkdir()
    digest = atomic_copy(src, dst, chunk_size=65536)
    assert digest == sha256_file(src) == sha256_file(dst)
    assert dst.stat().st_mtime_ns == src.stat().st_mtime_ns
    assert _hidden(dst.parent) == []


def test_failed_write_midway_keeps_the_old_file(tmp_path: Path) -> None:
    """A real write error mid-copy (file size limit, EFBIG, as a full disk would) leaves the final name as it was."""
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 << 20))
    dst = tmp_path / "out" / "big.bin"
    dst.parent.mkdir()
    dst.write_bytes(b"old")
    code = textwrap.dedent(
        f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        from rna_hpc.checkpoint.io import atomic_copy
        try:
            atomic_copy({str(src)!r}, {str(dst)!r}, chunk_size=1 << 18)
        except OSError as e:
            print("errno", e.errno)
            sys.exit(0)
        sys.exit(1)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"errno {errno.EFBIG}" in result.stdout
    assert dst.read_bytes() == b"old"
    assert sorted(p.name for p in dst.parent.iterdir()) == ["big.bin"]


def test_write_into_a_missing_directory_fails_cleanly(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        atomic_write_text(blocker / "out.txt", "data")
    assert blocker.read_text() == "x"


def test_link_or_copy_and_sidecars(tmp_path: Path) -> None:
    src = tmp_path / "step-4.ckpt"
    src.write_bytes(b"weights")
    last = tmp_path / "last.ckpt"
    last.write_bytes(b"older")
    atomic_link_or_copy(src, last)
    assert last.read_bytes() == b"weights" and last.stat().st_ino == src.stat().st_ino
    side = write_sidecar(src, sha256_file(src))
    assert side == sidecar_path(src) == tmp_path / "step-4.ckpt.sha256"
    assert side.read_text() == f"{sha256_file(src)}  step-4.ckpt\n"  # sha256sum format
    assert read_sidecar(src) == sha256_file(src)
    side.write_text("not a digest\n")
    assert read_sidecar(src) is None
    remove_checkpoint(src)
    assert not src.exists() and not side.exists() and last.read_bytes() == b"weights"
    assert _hidden(tmp_path) == []


def test_remove_stale_temps_only_removes_temp_files(tmp_path: Path) -> None:
    stale = [tmp_path / ".last.ckpt.tmp-4242", tmp_path / ".step-2.ckpt.tmp-17-1"]
    for p in stale:
        p.write_bytes(b"partial")
    keep = [tmp_path / ".hidden", tmp_path / "last.ckpt", tmp_path / "x.tmp-1"]
    for p in keep:
        p.write_bytes(b"keep")
    assert sorted(remove_stale_temps(tmp_path)) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in keep)


def test_secure_mkdir_never_grants_group_or_world_write(tmp_path: Path) -> None:
    made = secure_mkdir(tmp_path / "a" / "b", umask=0)
    assert (made.stat().st_mode & 0o777) == 0o755
    assert ((tmp_path / "a").stat().st_mode & 0o777) == 0o755
    private = secure_mkdir(tmp_path / "private", umask=0o077)
    assert (private.stat().st_mode & 0o777) == 0o700
    assert secure_mkdir(made) == made  # existing: fine


def test_world_writable_directory_is_refused(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    with pytest.raises(ConfigError, match="open: directory is world-writable"):
        assert_not_world_writable(open_dir)
    with pytest.raises(ConfigError, match="world-writable"):
        secure_mkdir(open_dir)


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # what a malicious checkpoint does: call os.system at load time
        return (os.system, (f"touch {self.marker}",))


def test_safe_torch_load_refuses_a_pickle_that_runs_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "payload": _RunsCode(str(marker))}, evil)
    with pytest.raises(CheckpointError, match=r"evil.ckpt: needs arbitrary code to load \(\S*system\); refusing"):
        safe_torch_load(evil)
    assert not marker.exists()


def test_safe_torch_load_reads_tensors_and_rejects_corrupt_files(tmp_path: Path) -> None:
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.arange(4.0)}, "global_step": 3}, good)
    loaded = safe_torch_load(good)
    assert loaded["global_step"] == 3 and torch.equal(loaded["state_dict"]["w"], torch.arange(4.0))
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.ckpt: unreadable checkpoint"):
        safe_torch_load(truncated)
    with pytest.raises(CheckpointError, match="missing.ckpt: checkpoint not found"):
        safe_torch_load(tmp_path / "missing.ckpt")
