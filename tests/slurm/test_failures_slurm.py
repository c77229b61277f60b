"""Failures on the real local Slurm: a sweep where one job fails at run time, secrets kept out of shared storage,
folders others can write to refused before submission and inside the job, an injected job name refused."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sliver import SLIVER

from rna_hpc.checkpoint.manifest import read_manifest, verify_manifest

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
TOKEN = "tok-" + os.urandom(12).hex()  # an environment variable named like a credential
PASSWORD = "pw-" + os.urandom(12).hex()  # a credential typed on the command line
TINY = (*SLIVER, "model.generator.n_steps=4", "trainer.max_epochs=1", "trainer.limit_val_batches=2")


@pytest.fixture(scope="module")
def failing_sweep(
    tmp_path_factory: pytest.TempPathFactory, rna3d_dir: Path
) -> tuple[Path, subprocess.CompletedProcess]:
    """Three jobs; #1 trains on a NaN loss weight, so its objective (val/loss) is NaN at run time, not at validation.

    The submitting environment holds a token that a config value reads, and a password is passed as an override.
    """
    cwd = tmp_path_factory.mktemp("failing_sweep")
    cmd = [sys.executable, "-m", "rna_hpc.train", "-m", "launcher=slurm", f"paths.data_dir={rna3d_dir}", *TINY]
    cmd += [
        "objective=val/loss",
        "loss.diffusion=1.0,nan,0.5",
        "logger.wandb.project=${oc.env:RNA_HPC_TEST_SERVICE_TOKEN}",
        f"+logger.mlflow.tracking_password={PASSWORD}",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0", "RNA_HPC_TEST_SERVICE_TOKEN": TOKEN}
    out = subprocess.run(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600, check=False
    )
    return cwd, out


def _job_folders(cwd: Path, app: str) -> list[Path]:
    """Each job's submitit folder (an array's own folder holds only its submission script)."""
    folders = cwd.glob(f"outputs/shared/submitit/{app}/*/*")
    return sorted(p for p in folders if re.fullmatch(r"\d+(_\d+)?", p.name) and any(p.glob("*_submitted.pkl")))


def test_one_failing_job_of_three_is_recorded_and_summarised(
    failing_sweep: tuple[Path, subprocess.CompletedProcess], wait_final: Callable
) -> None:
    cwd, out = failing_sweep
    assert out.returncode != 0, out.stdout[-3000:]
    folders = {p.name.rsplit("_", 1)[-1]: p for p in _job_folders(cwd, "train")}
    outcomes = {k: pickle.loads(next(f.glob("*_0_result.pkl")).read_bytes()) for k, f in folders.items()}
    assert sorted(outcomes) == ["0", "1", "2"]
    assert [outcomes[k][0] for k in "012"] == ["success", "error", "success"]  # the failed task raised again
    assert [outcomes[k][1].status.name for k in "02"] == ["COMPLETED", "COMPLETED"]
    assert "TrainingFailed" in outcomes["1"][1]  # submitit keeps the traceback of the task's own error
    shared = {p.name: p for p in cwd.glob("outputs/shared/default/*/[0-9]")}
    for ok in ("0", "2"):
        assert verify_manifest(shared[ok]) == [] and not (shared[ok] / "error.json").exists()
    error = json.loads((shared["1"] / "error.json").read_text())
    failed_id = folders["1"].name
    assert error["type"] == "TrainingFailed" and "nan" in error["message"]  # a NaN loss, or the NaN objective
    assert error["slurm_job_id"] == failed_id
    summary = out.stdout[out.stdout.index("rna_hpc: 1 of 3 job(s) failed") :]
    lines = summary.splitlines()[:4]
    print("\n".join(lines))
    assert lines[1].startswith(f"  #1 (Slurm job {failed_id}) loss.diffusion=nan: ")
    assert f"TrainingFailed: {error['message']}" in lines[1]
    assert lines[2] == f"      log   {folders['1'] / f'{failed_id}_0_log.err'}"
    assert lines[3] == f"      error {shared['1'] / 'error.json'}"
    states = wait_final(cwd, 3)
    assert states[failed_id] == "FAILED", states  # Slurm's own accounting sees the failure
    assert sorted(states.values()) == ["COMPLETED", "COMPLETED", "FAILED"]


def test_secrets_never_reach_shared_storage(failing_sweep: tuple[Path, subprocess.CompletedProcess]) -> None:
    cwd, out = failing_sweep
    results = [p for p in cwd.glob("outputs/shared/default/*/*/**/*") if p.is_file()]
    logs = [p for p in cwd.glob("outputs/shared/submitit/train/*/*/*_log.*")]
    assert len(results) > 10 and len(logs) >= 6
    leaks = [str(p) for p in results + logs if TOKEN.encode() in p.read_bytes() or PASSWORD.encode() in p.read_bytes()]
    print(f"{len(results)} consolidated files and {len(logs)} job logs checked: {len(leaks)} hold a secret")
    assert leaks == [] and PASSWORD not in out.stdout.split("Error executing job")[0]  # what the launcher printed
    (done,) = [p for p in cwd.glob("outputs/shared/default/*/0")]
    wandb, mlflow = (read_manifest(done)["config"]["logger"][k] for k in ("wandb", "mlflow"))
    assert wandb["project"] == "***" and mlflow["tracking_password"] == "***"  # masked, not merely absent
    assert "tracking_password: '***'" in (done / ".hydra" / "config.yaml").read_text()
    assert "+logger.mlflow.tracking_password=***" in (done / ".hydra" / "overrides.yaml").read_text()


def test_open_folders_and_an_injected_job_name_are_refused_before_submission(
    tmp_path: Path, run_app: Callable, sacct: Callable
) -> None:
    shared = tmp_path / "open"
    shared.mkdir()
    os.chmod(shared, 0o777)
    out = run_app(
        tmp_path,
        "launcher=slurm",
        "trainer.devices=1",
        f"paths.shared_dir={shared}",
        "hydra.launcher.name='x;rm -rf /'",
        timeout=60,
    )
    assert out.returncode != 0
    for line in (
        f"paths.shared_dir: {shared} is writable by group or others (mode 0o777); chmod go-w it",
        "hydra.launcher.name: 'x;rm -rf /' contains spaces, quotes, newlines or shell metacharacters",
    ):
        assert line in out.stdout, out.stdout
    assert "Traceback" not in out.stdout and sacct(tmp_path) == {}


def test_job_refuses_to_load_its_pickle_from_a_folder_others_can_write_to(
    tmp_path: Path, run_app: Callable, wait_final: Callable
) -> None:
    held = "+hydra.launcher.additional_parameters.hold=true"  # submitted held, so the folder can change first
    out = run_app(tmp_path, "launcher=slurm", "trainer.devices=1", "x=5", "hydra.launcher.detach=true", held)
    assert out.returncode == 0, out.stdout
    (folder,) = _job_folders(tmp_path, "ddp_app")
    os.chmod(folder, 0o777)  # anyone could now replace the pickle the job will load
    subprocess.run(["scontrol", "release", folder.name.split("_")[0]], check=True, timeout=30)
    assert list(wait_final(tmp_path, 1, timeout=120).values()) == ["FAILED"]
    err = (folder / f"{folder.name}_0_log.err").read_text()
    refusal = f"rna_hpc: refusing to load {folder / f'{folder.name}_submitted.pkl'}: {folder} is writable by group"
    print(err.strip().splitlines()[0])
    assert refusal in err and "Loading pickle" not in err
    assert not list(folder.glob("*_result.pkl")) and not (tmp_path / "sweep" / "0" / "rank0.json").exists()
