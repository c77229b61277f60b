"""The installed console scripts: the same Hydra entry points as ``python -m``, and the status reader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

BIN = Path(sys.executable).parent


def _run(*cmd: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_rna_hpc_train_composes_a_group_override(tmp_path: Path) -> None:
    proc = _run(str(BIN / "rna-hpc-train"), "model=base", "trainer=ddp", "--cfg", "job", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["model"]["name"] == "base" and cfg["model"]["trunk"]["c_s"] > 32
    assert cfg["trainer"]["devices"] == 2  # trainer=ddp
    default = yaml.safe_load(_run(str(BIN / "rna-hpc-train"), "--cfg", "job", cwd=tmp_path).stdout)
    assert default["model"]["name"] == "tiny"


def test_help_of_prepare_and_status(tmp_path: Path) -> None:
    prepare = _run(str(BIN / "rna-hpc-prepare"), "--help", cwd=tmp_path)
    assert prepare.returncode == 0 and "Powered by Hydra" in prepare.stdout
    status = _run(str(BIN / "rna-hpc-status"), "--help", cwd=tmp_path)
    assert status.returncode == 0 and "--watch [SECONDS]" in status.stdout and "sweep_dir" in status.stdout


def test_status_of_a_basic_launcher_sweep_with_a_failed_job(tmp_path: Path) -> None:
    """Job 0 fails (too few targets), job 1 trains; status reads the scratch sweep dir and the shared one."""
    sweep = tmp_path / "scratch" / "sw"
    train = _run(
        str(BIN / "rna-hpc-train"),
        "-m",
        "debug=fast",
        "trainer.detect_anomaly=false",
        "data.synthetic.n_targets=1,12",
        f"paths.scratch_dir={tmp_path / 'scratch'}",
        f"paths.shared_dir={tmp_path / 'shared'}",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert train.returncode != 0  # Hydra's basic sweeper re-raises the failed job's error at the end
    status = _run(str(BIN / "rna-hpc-status"), str(sweep), "--json", cwd=tmp_path)
    assert status.returncode == 1, status.stderr
    failed, done = json.loads(status.stdout)["jobs"]
    assert failed["state"] == "FAILED"
    assert "n_targets" in failed["reason"] or "ended without a result" in failed["reason"]
    assert done["state"] == "COMPLETED" and done["consolidated"] is True and 0 < done["best"] <= 1
    shared = tmp_path / "shared" / "default" / "sw"
    assert (shared / "1" / "learning_curves.png").is_file() and (shared / "learning_curves.png").is_file()
    table = _run(str(BIN / "rna-hpc-status"), str(shared), "--no-plots", cwd=tmp_path)
    assert "COMPLETED" in table.stdout and "#1" in table.stdout
