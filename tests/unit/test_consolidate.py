"""Consolidation scratch -> shared: verified copies, manifest last, idempotence, and writers killed mid-copy."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from rna_hpc.checkpoint.consolidate import collect_artifacts, consolidate
from rna_hpc.checkpoint.io import sha256_file
from rna_hpc.checkpoint.manifest import build_manifest, read_manifest, verify_manifest
from rna_hpc.errors import ConfigError, InputError

REPO = Path(__file__).resolve().parents[2]
FIELDS = build_manifest("demo/sweep-1/0", config={"lr": 0.001})


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "scratch" / "run"
    (run / "ckpt").mkdir(parents=True)
    (run / "ckpt" / "step-2.ckpt").write_bytes(os.urandom(200_000))
    (run / "ckpt" / "last.ckpt").write_bytes(os.urandom(200_000))
    (run / "csv" / "version_0").mkdir(parents=True)
    (run / "csv" / "version_0" / "metrics.csv").write_text("step,loss\n1,0.5\n")
    (run / "main.log").write_text("not consolidated\n")
    return run


def _state(directory: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every file: a rewrite changes the inode, a touch the mtime."""
    return {
        str(p.relative_to(directory)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_consolidate_copies_verified_files_and_writes_the_manifest_last(tmp_path: Path) -> None:
    run, shared = _run_dir(tmp_path), tmp_path / "shared" / "demo" / "sweep-1" / "0"
    files = collect_artifacts(run)
    assert [p.relative_to(run).as_posix() for p in files] == [
        "ckpt/last.ckpt",
        "ckpt/step-2.ckpt",
        "csv/version_0/metrics.csv",
    ]
    manifest_path = consolidate(run, shared, files=files, manifest_fields=FIELDS)
    assert manifest_path == shared / "manifest.json"
    assert verify_manifest(shared) == []
    manifest = read_manifest(shared)
    assert manifest["run_id"] == "demo/sweep-1/0" and manifest["config"] == {"lr": 0.001}
    assert manifest["artifacts"]["ckpt/last.ckpt"] == {
        "sha256": sha256_file(run / "ckpt" / "last.ckpt"),
        "size": 200_000,
    }
    assert not (shared / "main.log").exists()
    copied = [shared / rel for rel in manifest["artifacts"]]
    assert all(manifest_path.stat().st_ctime_ns >= p.stat().st_ctime_ns for p in copied)
    assert (shared.stat().st_mode & 0o022) == 0


def test_consolidate_twice_changes_nothing(tmp_path: Path) -> None:
    run, shared = _run_dir(tmp_path), tmp_path / "shared"
    consolidate(run, shared, files=collect_artifacts(run), manifest_fields=FIELDS)
    before = _state(shared)
    time.sleep(0.01)
    consolidate(run, shared, files=collect_artifacts(run), manifest_fields=FIELDS)
    assert _state(shared) == before  # no file rewritten, manifest included


def test_consolidate_updates_only_what_changed_and_prunes_dropped_files(tmp_path: Path) -> None:
    run, shared = _run_dir(tmp_path), tmp_path / "shared"
    consolidate(run, shared, files=collect_artifacts(run), manifest_fields=FIELDS)
    before = _state(shared)
    (run / "ckpt" / "last.ckpt").write_bytes(os.urandom(200_000))
    (run / "ckpt" / "step-2.ckpt").unlink()
    (run / "ckpt" / "step-4.ckpt").write_bytes(os.urandom(1000))
    consolidate(run, shared, files=collect_artifacts(run), manifest_fields=FIELDS, prune=["ckpt/step-*"])
    after = _state(shared)
    assert after["csv/version_0/metrics.csv"] == before["csv/version_0/metrics.csv"]
    assert after["ckpt/last.ckpt"] != before["ckpt/last.ckpt"]
    assert after["manifest.json"] != before["manifest.json"]
    assert "ckpt/step-2.ckpt" not in after and "ckpt/step-4.ckpt" in after
    assert verify_manifest(shared) == []


def test_consolidate_refuses_files_outside_the_run_and_open_directories(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("x")
    with pytest.raises(InputError, match="elsewhere.txt: artifact is outside the run dir"):
        consolidate(run, tmp_path / "shared", files=[outside], manifest_fields=FIELDS)
    with pytest.raises(InputError, match="gone.ckpt: artifact to consolidate disappeared"):
        consolidate(run, tmp_path / "shared", files=[run / "ckpt" / "gone.ckpt"], manifest_fields=FIELDS)
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o777)
    os.chmod(open_dir, 0o777)
    with pytest.raises(ConfigError, match="world-writable"):
        consolidate(run, open_dir, files=collect_artifacts(run), manifest_fields=FIELDS)


def _open_writer(fifo: Path, deadline: float) -> int:
    """Open the FIFO's write end once the child has opened it for reading (never blocks past the deadline)."""
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nobody opened {fifo} for reading") from None
            time.sleep(0.02)
            continue
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return fd


def _kill_mid_copy(code: str, fifo: Path, temp_dir: Path, data: bytes) -> None:
    """Run ``code`` (a copy reading ``fifo``), feed it ``data`` without EOF, and SIGKILL it mid-copy."""
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    try:
        fd = _open_writer(fifo, time.monotonic() + 60)
        os.write(fd, data)  # the copy reads 4 MiB chunks: the first is written, then it waits for more
        deadline = time.monotonic() + 60
        while not any(p.name.endswith(f".tmp-{child.pid}") and p.stat().st_size > 0 for p in temp_dir.iterdir()):
            assert child.poll() is None and time.monotonic() < deadline, "the copy never started"
            time.sleep(0.01)
        child.kill()
        child.wait(timeout=30)
        os.close(fd)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_atomic_copy_killed_mid_copy_keeps_the_old_file(tmp_path: Path) -> None:
    fifo = tmp_path / "source.fifo"
    os.mkfifo(fifo)
    dst = tmp_path / "out" / "big.bin"
    dst.parent.mkdir()
    dst.write_bytes(b"previous version")
    code = f"from rna_hpc.checkpoint.io import atomic_copy; atomic_copy({str(fifo)!r}, {str(dst)!r})"
    _kill_mid_copy(code, fifo, dst.parent, os.urandom(5 << 20))
    assert dst.read_bytes() == b"previous version"
    assert [p for p in dst.parent.iterdir() if p.name.startswith(".big.bin.tmp-")]  # the killed writer's temp


def test_consolidation_killed_mid_copy_is_completed_by_the_next_call(tmp_path: Path) -> None:
    run, shared = _run_dir(tmp_path), tmp_path / "shared"
    big = run / "ckpt" / "big.ckpt"
    os.mkfifo(big)
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from rna_hpc.checkpoint.consolidate import consolidate
        consolidate(Path({str(run)!r}), Path({str(shared)!r}), files=[Path({str(big)!r})], manifest_fields={{}})
        """
    )
    (shared / "ckpt").mkdir(parents=True)
    data = os.urandom(5 << 20)
    _kill_mid_copy(code, big, shared / "ckpt", data)
    assert not (shared / "ckpt" / "big.ckpt").exists()  # no partial file under the final name
    assert not (shared / "manifest.json").exists()
    big.unlink()
    big.write_bytes(data)
    consolidate(run, shared, files=collect_artifacts(run), manifest_fields=FIELDS)
    assert verify_manifest(shared) == []
    assert "ckpt/big.ckpt" in read_manifest(shared)["artifacts"]
    assert not [p for p in shared.rglob(".*") if ".tmp-" in p.name]  # the stale temp was cleaned


def test_consolidation_killed_after_replacing_a_listed_file_leaves_a_manifest_that_holds(tmp_path: Path) -> None:
    # a preempted job killed (KillWait) mid-consolidation: last.ckpt is replaced, the copy after it never ends
    run, shared = _run_dir(tmp_path), tmp_path / "shared"
    consolidate(run, shared, files=collect_artifacts(run), manifest_fields=FIELDS)
    (run / "ckpt" / "last.ckpt").write_bytes(os.urandom(200_000))
    newer = run / "ckpt" / "step-9.ckpt"  # sorted after last.ckpt: copied after it is replaced
    os.mkfifo(newer)
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from rna_hpc.checkpoint.consolidate import collect_artifacts, consolidate
        run = Path({str(run)!r})
        files = [*collect_artifacts(run), Path({str(newer)!r})]  # a FIFO is no file to collect_artifacts
        consolidate(run, Path({str(shared)!r}), files=files, manifest_fields={{}})
        """
    )
    data = os.urandom(5 << 20)
    _kill_mid_copy(code, newer, shared / "ckpt", data)
    assert sha256_file(shared / "ckpt" / "last.ckpt") == sha256_file(run / "ckpt" / "last.ckpt")  # replaced
    assert verify_manifest(shared) == []  # the manifest no longer vouches for the old last.ckpt
    listed = read_manifest(shared)["artifacts"]
    assert "ckpt/last.ckpt" not in listed and "ckpt/step-2.ckpt" in listed  # the unchanged step stays resumable
    newer.unlink()
    newer.write_bytes(data)
    consolidate(run, shared, files=collect_artifacts(run), manifest_fields=FIELDS)
    assert verify_manifest(shared) == []
    assert {"ckpt/last.ckpt", "ckpt/step-2.ckpt", "ckpt/step-9.ckpt"} <= set(read_manifest(shared)["artifacts"])


def test_consolidation_that_runs_out_of_space_leaves_no_partial_file_and_the_next_call_completes(
    tmp_path: Path,
) -> None:
    # the copying process may write at most 1 MiB per file (RLIMIT_FSIZE): its writes fail like a full disk's
    run, shared = _run_dir(tmp_path), tmp_path / "shared"
    big = run / "ckpt" / "big.ckpt"
    big.write_bytes(os.urandom(3 << 20))
    code = textwrap.dedent(
        f"""
        import resource, signal, sys
        from pathlib import Path
        from rna_hpc.checkpoint.consolidate import collect_artifacts, consolidate
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        run = Path({str(run)!r})
        try:
            consolidate(run, Path({str(shared)!r}), files=collect_artifacts(run), manifest_fields={{}})
        except OSError as err:
            sys.exit(f"consolidation failed: {{err}}")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "File too large" in proc.stderr, proc.stderr[-2000:]
    assert not (shared / "ckpt" / "big.ckpt").exists()  # no partial file under the final name
    assert not (shared / "manifest.json").exists()
    assert not [p for p in shared.rglob("*") if ".tmp-" in p.name]  # the failed writer removed its temp
    assert big.stat().st_size == 3 << 20  # the scratch copy is kept
    consolidate(run, shared, files=collect_artifacts(run), manifest_fields=FIELDS)
    assert verify_manifest(shared) == []
    assert sha256_file(shared / "ckpt" / "big.ckpt") == sha256_file(big)


def test_what_an_earlier_attempt_consolidated_stays_listed_and_old_steps_are_pruned(tmp_path: Path) -> None:
    run, shared = _run_dir(tmp_path), tmp_path / "shared"
    consolidate(run, shared, files=collect_artifacts(run), manifest_fields=FIELDS)
    wiped = tmp_path / "scratch" / "wiped"  # the job restarted elsewhere: a new run dir with only its new files
    (wiped / "ckpt").mkdir(parents=True)
    (wiped / "ckpt" / "step-6.ckpt").write_bytes(os.urandom(1000))
    consolidate(wiped, shared, files=collect_artifacts(wiped), manifest_fields=FIELDS, prune=["ckpt/step-*"])
    listed = read_manifest(shared)["artifacts"]
    assert sorted(listed) == ["ckpt/last.ckpt", "ckpt/step-6.ckpt", "csv/version_0/metrics.csv"]
    assert not (shared / "ckpt" / "step-2.ckpt").exists()  # pruned: scratch no longer keeps it
    assert verify_manifest(shared) == []


def test_text_artifacts_reach_shared_storage_without_credentials(tmp_path: Path, monkeypatch) -> None:
    token = "tok-" + os.urandom(8).hex()
    monkeypatch.setenv("RNA_HPC_SERVICE_TOKEN", token)
    run, shared = _run_dir(tmp_path), tmp_path / "shared"
    (run / ".hydra").mkdir()
    config_yaml = f"logger:\n  wandb:\n    api_key: hunter2hunter2\n    project: {token}\n"
    (run / ".hydra" / "config.yaml").write_text(config_yaml)
    (run / ".hydra" / "overrides.yaml").write_text("- +logger.mlflow.password=opensesame\n- lr=0.1\n")
    (run / "train.log").write_text(f"[INFO] - using {token} as DB_PASSWORD=opensesame\n")
    (run / "ckpt" / "binary.ckpt").write_bytes(b"\x00\xff" + token.encode())  # binaries are copied byte for byte
    include = [".hydra/*.yaml", "*.log", "ckpt/*.ckpt"]
    fields = build_manifest("demo/sweep-1/0", config={"logger": {"project": token, "api_key": "hunter2hunter2"}})
    consolidate(run, shared, files=collect_artifacts(run, include), manifest_fields=fields)
    config = (shared / ".hydra" / "config.yaml").read_text()
    assert config == "logger:\n  wandb:\n    api_key: '***'\n    project: ***\n"
    assert yaml.safe_load(config.replace("project: ***", "project: x"))["logger"]["wandb"]["api_key"] == "***"
    assert (shared / ".hydra" / "overrides.yaml").read_text() == "- +logger.mlflow.password=***\n- lr=0.1\n"
    assert (shared / "train.log").read_text() == "[INFO] - using *** as DB_PASSWORD=***\n"
    for path in [shared / "manifest.json", *shared.rglob("*.yaml"), shared / "train.log"]:
        text = path.read_text()
        assert token not in text and "hunter2" not in text and "opensesame" not in text, path
    assert (shared / "ckpt" / "binary.ckpt").read_bytes() == (run / "ckpt" / "binary.ckpt").read_bytes()
    assert verify_manifest(shared) == []
    before = _state(shared)
    consolidate(run, shared, files=collect_artifacts(run, include), manifest_fields=fields)
    assert _state(shared) == before  # masked copies are compared as masked: nothing rewritten
