"""Pre-submission checks of the launcher: each rule fires with its message, and a sound job passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rna_hpc.launch import preflight
from rna_hpc.launch.config import UnsetEnvironmentVariable

REPO = Path(__file__).resolve().parents[2]
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def job(devices: int = 2, num_nodes: int = 1, accelerator: str = "cpu", **launcher: object):
    """A composed-job stand-in: trainer + paths + hydra.{launcher,sweeper}, as the launcher sees each job."""
    node = {"umask": "022", "detach": False, **launcher}
    return OmegaConf.create(
        {
            "trainer": {"devices": devices, "num_nodes": num_nodes, "accelerator": accelerator},
            "hydra": {"launcher": node, "sweeper": {"_target_": BASIC_SWEEPER}},
        }
    )


def params(**overrides: object) -> dict:
    base = {"nodes": 1, "tasks_per_node": 2, "gpus_per_node": None, "timeout_min": 10, "signal_delay_s": 60}
    return {**base, "max_num_timeout": 3, "name": "train", "array_parallelism": 4, **overrides}


def test_sound_job_passes(tmp_path: Path) -> None:
    cfg = job()
    cfg.paths = {"shared_dir": str(tmp_path / "shared")}
    p = params(submitit_folder=str(tmp_path / "shared/submitit/%j"), partition="debug", setup=["export A=$HOME"])
    assert preflight.job_problems(cfg, p) == []


@pytest.mark.parametrize(
    ("cfg", "p", "message"),
    [
        (job(devices=2), params(tasks_per_node=1), "tasks_per_node: is 1, must equal trainer.devices=2"),
        (job(num_nodes=2), params(), "nodes: is 1, must equal trainer.num_nodes=2"),
        (job(accelerator="cpu"), params(gpus_per_node=2), "gpus_per_node: is 2 but trainer.accelerator=cpu"),
        (job(accelerator="gpu"), params(gpus_per_node=1), "gpus_per_node: is 1, must equal trainer.devices=2"),
        (job(accelerator="gpu"), params(), "trainer.accelerator=gpu but the job requests no GPU"),
        (job(accelerator="gpu"), params(gpus_per_task=2), "gpus_per_task: is 2, must be 1 (one process per device)"),
        (job(accelerator="cpu"), params(gpus_per_task=1), "gpus_per_task: is 1 but trainer.accelerator=cpu"),
    ],
)
def test_resource_shape_must_match_the_trainer(cfg, p: dict, message: str) -> None:
    assert [m for m in preflight.resource_problems(cfg, p) if message in m]


def test_gpu_job_with_matching_gpus_passes() -> None:
    assert preflight.resource_problems(job(accelerator="gpu"), params(gpus_per_node=2)) == []


def test_signal_delay_must_be_below_the_time_limit() -> None:
    (problem,) = preflight.time_problems(params(timeout_min=1, signal_delay_s=60))
    assert problem.startswith("hydra.launcher.signal_delay_s: is 60, must be below the time limit (1 min = 60 s)")
    assert preflight.time_problems(params(timeout_min=2, signal_delay_s=60)) == []
    assert "timeout_min: must be >= 1" in preflight.time_problems(params(timeout_min=0, signal_delay_s=None))[0]


def test_requeue_limits_must_not_be_negative() -> None:
    assert preflight.time_problems(params(max_num_preemptions=None)) == []  # no limit
    assert preflight.time_problems(params(max_num_timeout=-1, max_num_preemptions=-2)) == [
        "hydra.launcher.max_num_timeout: must be >= 0",
        "hydra.launcher.max_num_preemptions: must be >= 0",
    ]


@pytest.mark.parametrize(
    ("p", "key"),
    [
        (params(name="a;touch x"), "hydra.launcher.name"),
        (params(name="two words"), "hydra.launcher.name"),
        (params(name="train\n"), "hydra.launcher.name"),
        (params(partition="debug\n#SBATCH --uid=0"), "hydra.launcher.partition"),
        (params(account="$(id)"), "hydra.launcher.account"),
        (params(constraint="a100\nsrun id"), "hydra.launcher.constraint"),
        (params(setup=["export A=1", "echo ok; rm -rf /"]), "hydra.launcher.setup[1]"),
        (params(setup=["echo `id`"]), "hydra.launcher.setup[0]"),
        (params(setup=["echo a\necho b"]), "hydra.launcher.setup[0]"),
        (params(additional_parameters={"mail user": "x"}), "hydra.launcher.additional_parameters"),
        (params(additional_parameters={"mail-user": "a b"}), "hydra.launcher.additional_parameters.mail-user"),
        (params(name="bash"), "hydra.launcher.name"),
    ],
)
def test_injection_and_reserved_names_are_rejected(p: dict, key: str) -> None:
    problems = preflight.injection_problems(p)
    assert len(problems) == 1 and problems[0].startswith(key + ":"), problems


def test_safe_sbatch_values_pass() -> None:
    p = params(partition="gpu-a100", qos="normal", constraint="a100&80gb", account="proj_01")
    p["additional_parameters"] = {"mail-type": "END,FAIL", "exclusive": True, "gres-flags": "enforce-binding"}
    assert preflight.injection_problems(p) == []


def test_unwritable_and_open_paths(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("")
    cfg = job()
    cfg.paths = {"shared_dir": str(tmp_path / "blocker" / "shared")}
    problems = preflight.path_problems(cfg, params(submitit_folder=str(tmp_path / "blocker/shared/%j")))
    assert [p.split(":")[0] for p in problems] == ["paths.shared_dir", "hydra.launcher.submitit_folder"]
    assert all("blocker is not a directory" in p for p in problems)

    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    cfg.paths = {"shared_dir": str(open_dir)}
    (problem,) = preflight.path_problems(cfg, params())
    assert problem == f"paths.shared_dir: {open_dir} is writable by group or others (mode 0o777); chmod go-w it"


def test_static_prefix_of_submitit_folders() -> None:
    assert preflight.static_prefix("/s/submitit/train/%j") == Path("/s/submitit/train")
    assert preflight.static_prefix("/s/submitit/run_%j") == Path("/s/submitit")
    assert preflight.static_prefix("/s/plain") == Path("/s/plain")


def test_options_umask_and_detach() -> None:
    cfg = job(umask="abc", detach=True, dry_run=True)
    cfg.hydra.sweeper._target_ = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    problems = preflight.option_problems(cfg)
    assert problems[0] == "hydra.launcher.umask: 'abc' is not an octal umask such as '022'"
    assert problems[1].startswith("hydra.launcher.detach: a sweeper that waits for results")
    assert problems[2].startswith("hydra.launcher.dry_run: hydra_plugins.hydra_optuna_sweeper")
    assert preflight.option_problems(job(umask="027", detach=True, dry_run=True)) == []


def test_no_partition_needs_no_sinfo() -> None:
    assert preflight.partition_problems([params(), params(partition=None)]) == []


def test_resolvers() -> None:
    cfg = OmegaConf.create(
        {
            "trainer": {"accelerator": "gpu", "devices": 4},
            "cpu": "${rna_hpc.gpus_per_node:cpu,${trainer.devices}}",
            "gpu": "${rna_hpc.gpus_per_node:${trainer.accelerator},${trainer.devices}}",
            "paths": {"scratch_dir": "${rna_hpc.require_env:RNA_HPC_TEST_UNSET_VARIABLE}/x"},
        }
    )
    assert cfg.cpu is None and cfg.gpu == 4
    with pytest.raises(
        UnsetEnvironmentVariable, match="paths.scratch_dir: environment variable RNA_HPC_TEST_UNSET_VARIABLE"
    ):
        _ = cfg.paths.scratch_dir


def test_submit_side_imports_neither_torch_nor_lightning() -> None:
    """Neither does the save before a requeue (a signal handler) when no fit runs: an import there can meet a module
    the interrupted code was still importing."""
    code = (
        "import sys, rna_hpc.launch.launchers, rna_hpc.launch.requeue, hydra_plugins.rna_hpc_launcher.launchers\n"
        "import rna_hpc.train, rna_hpc.predict, rna_hpc.evaluate, rna_hpc.compat\n"
        "assert rna_hpc.launch.requeue.run_hooks() == []\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pytorch_lightning', 'lightning'))\n"
        "assert not bad, bad\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def test_gpu_binding_must_be_node_or_task() -> None:
    assert preflight.option_problems(job(gpu_binding="socket")) == [
        "hydra.launcher.gpu_binding: 'socket' is not one of node, task"
    ]
    assert preflight.option_problems(job(gpu_binding="task")) == []
