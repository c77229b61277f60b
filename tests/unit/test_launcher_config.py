"""The launcher and env groups compose over the project's trainer and paths: resources follow the trainer."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

import rna_hpc.launch.config  # noqa: F401  (launcher schemas and resolvers)
from rna_hpc.config import register_configs

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "tests" / "slurm" / "ddp_app.py"
APP_CONF = REPO / "tests" / "slurm" / "app_conf"


def compose_app(*overrides: str) -> DictConfig:
    """The tiny launcher-test app's config with the project's conf/ groups, hydra node included."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(APP_CONF), version_base="1.3"):
        search = f"hydra.searchpath=[file://{REPO / 'conf'}]"
        return compose("app", overrides=[search, *overrides], return_hydra_config=True)


def test_slurm_resources_follow_the_trainer() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = compose_app("launcher=slurm", "trainer.devices=2", "trainer.num_nodes=2")
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"] == "hydra_plugins.rna_hpc_launcher.launchers.RnaHpcSlurmLauncher"
    assert (launcher["tasks_per_node"], launcher["nodes"], launcher["gpus_per_node"]) == (2, 2, None)
    assert launcher["max_num_timeout"] >= 1 and launcher["signal_delay_s"] < launcher["timeout_min"] * 60
    assert launcher["submitit_folder"].startswith(f"{cfg.paths.shared_dir}/submitit/")


def test_gpu_trainer_requests_its_devices_as_gpus() -> None:
    cfg = compose_app("launcher=slurm", "trainer=gpu", "trainer.devices=4")
    launcher = cfg.hydra.launcher
    assert (launcher.gpus_per_node, launcher.gpus_per_task, launcher.tasks_per_node) == (4, None, 4)


def test_per_task_binding_requests_one_gpu_per_task() -> None:
    cfg = compose_app("launcher=slurm", "trainer=gpu", "trainer.devices=2", "hydra.launcher.gpu_binding=task")
    launcher = cfg.hydra.launcher
    assert (launcher.gpus_per_node, launcher.gpus_per_task, launcher.tasks_per_node) == (None, 1, 2)


@pytest.mark.parametrize(
    ("choice", "target"),
    [
        ("local", "hydra_plugins.rna_hpc_launcher.launchers.RnaHpcLocalLauncher"),
        ("basic", "hydra._internal.core_plugins.basic_launcher.BasicLauncher"),
    ],
)
def test_other_launchers_compose_without_warnings(choice: str, target: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = compose_app(f"launcher={choice}")
    assert cfg.hydra.launcher._target_ == target


def test_env_groups_set_both_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = compose_app("env=dev_slurm")
    assert (cfg.paths.scratch_dir, cfg.paths.shared_dir) == ("outputs/slurm/scratch", "outputs/slurm/shared")
    monkeypatch.setenv("SCRATCH", "/scratch/u1")
    monkeypatch.setenv("RNA_HPC_PROJECT_DIR", "/project/p1")
    cfg = compose_app("env=cluster")
    assert (cfg.paths.scratch_dir, cfg.paths.shared_dir) == ("/scratch/u1/rna_hpc", "/project/p1/rna_hpc")


def test_cluster_env_without_scratch_rejects_the_sweep(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SCRATCH", "RNA_HPC_PROJECT_DIR")}
    env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, str(APP), "-m", f"hydra.searchpath=[file://{REPO / 'conf'}]", "launcher=local"]
    cmd += ["env=cluster", "trainer.devices=1", "x=1,2"]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    # whichever unset variable the launcher resolves first is named, with the key that needs it
    assert re.search(
        r"paths\.(scratch|shared)_dir: environment variable (SCRATCH|RNA_HPC_PROJECT_DIR) is not set", res.stderr
    ), res.stderr
    assert "Traceback" not in res.stderr
    assert not list(tmp_path.rglob("rank*.json"))  # nothing ran


def test_an_extra_sbatch_option_as_documented_reaches_the_script(tmp_path: Path) -> None:
    """docs/cluster.md's additional_parameters command, run as shown: its option is in the sbatch script."""
    doc = (REPO / "docs" / "cluster.md").read_text().splitlines()
    (line,) = [ln for ln in doc if ln.startswith("python -m rna_hpc.train") and "additional_parameters" in ln]
    cmd = [sys.executable, *shlex.split(line)[1:], "debug=fast"]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "#SBATCH --mail-type=END" in res.stdout.splitlines(), res.stdout[-3000:]
