"""GPU jobs on the local cluster, whose nodes declare 2 GPUs each as generic resources (stand-in devices, no CUDA):
the requests the launcher makes, the device each task would train on, and the requests it refuses."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

GPU_JOB = ("launcher=slurm", "trainer=gpu", "trainer.devices=2", "trainer.num_nodes=2", "hydra.launcher.timeout_min=5")


def _cluster_gpus() -> int:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%G"], capture_output=True, text=True, timeout=30, check=True)
    return max((int(m.group(1)) for m in re.finditer(r"gpu:(?:\w+:)?(\d+)", out.stdout)), default=0)


@pytest.fixture(scope="module", autouse=True)
def _needs_gpus() -> None:
    if _cluster_gpus() < 2:
        pytest.fail("the local cluster declares no GPUs: start it with SLURM_LOCAL_GPUS=2 slurm/start.sh")


def _records(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("0/rank*.json"))]


@pytest.mark.parametrize(("binding", "flag"), [("node", "gpus-per-node=2"), ("task", "gpus-per-task=1")])
def test_each_rank_of_a_2x2_gpu_job_sees_one_device(
    tmp_path: Path, run_app: Callable, wait_final: Callable, binding: str, flag: str
) -> None:
    out = run_app(tmp_path, *GPU_JOB, f"hydra.launcher.gpu_binding={binding}", timeout=400)
    assert out.returncode == 0, out.stdout
    records = sorted(_records(tmp_path / "sweep"), key=lambda r: r["rank"])
    assert [r["rank"] for r in records] == [0, 1, 2, 3], out.stdout
    assert {r["world_size"] for r in records} == {4}
    assert {r["sum"] for r in records} == {10.0}  # 1 + 2 + 3 + 4: every rank joined the all_reduce
    assert len({r["node"] for r in records}) == 2
    for r in records:
        gpu = r["gpu"]
        assert gpu["binding"] == binding
        assert len(gpu["visible"]) == (2 if binding == "node" else 1), gpu
        assert gpu["device"] == (f"cuda:{gpu['local_rank']}" if binding == "node" else "cuda:0")
        assert gpu["lightning_device"] == gpu["device"] and gpu["lightning_world_size"] == 4, gpu  # Lightning's own
    # one device each: no two ranks of a node train on the same physical GPU
    assert len({(r["node"], r["gpu"]["physical"]) for r in records}) == 4, records
    script = next((tmp_path / "outputs/shared/submitit").glob("ddp_app/*/*/*_submission.sh")).read_text()
    assert f"#SBATCH --{flag}\n" in script and "#SBATCH --nodes=2\n" in script
    assert "#SBATCH --ntasks-per-node=2\n" in script
    assert list(wait_final(tmp_path, 1).values()) == ["COMPLETED"]


def test_devices_sweep_goes_out_as_two_arrays_with_their_gpu_flags(tmp_path: Path, run_app: Callable) -> None:
    out = run_app(
        tmp_path,
        "launcher=slurm",
        "trainer=gpu",
        "trainer.devices=1,2",
        "hydra.launcher.partition=parked",  # queues and never runs: what reached Slurm is read back, then cancelled
        "hydra.launcher.detach=true",
    )
    assert out.returncode == 0, out.stdout
    ids = sorted(set(re.findall(r"submitted as (\d+)(?:_\d+)? \(detached\)", out.stdout)), key=int)
    try:
        assert len(ids) == 2, out.stdout
        queue = subprocess.run(
            ["squeue", "-h", "-r", "-j", ",".join(ids), "-O", "ArrayJobID:12,NTPerNode:6,tres-per-node:20"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.split("\n")
        shapes = {tuple(line.split()) for line in queue if line.strip()}
        assert sorted(shapes, key=lambda s: s[1]) == [(ids[0], "1", "gres:gpu:1"), (ids[1], "2", "gres:gpu:2")], queue
        scripts = [p.read_text() for p in tmp_path.rglob("*_submission.sh")]  # --gpus-per-node, not --gres
        assert sorted(f for text in scripts for f in re.findall(r"#SBATCH --gpus-per-node=(\d+)", text)) == ["1", "2"]
    finally:
        subprocess.run(["scancel", *ids], timeout=30, check=False)


def _sinfo(field: str) -> list[str]:
    out = subprocess.run(["sinfo", "-h", "-N", "-p", "debug", "-o", field], capture_output=True, text=True, timeout=30)
    return out.stdout.split()


def test_a_gpu_request_above_every_node_is_refused_before_submission(
    tmp_path: Path, run_app: Callable, sacct: Callable
) -> None:
    out = run_app(tmp_path, "launcher=slurm", "trainer=gpu", "trainer.devices=4", "x=1,2", timeout=120)
    assert out.returncode != 0
    assert (
        "hydra.launcher.gpus_per_node: the job asks 4 GPU(s) per node, but no node of partition 'debug' offers more "
        "than 2 (node1 (gpu:2))" in out.stdout
    ), out.stdout
    node_cpus = max(int(c.rstrip("+")) for c in _sinfo("%c"))
    assert ("hydra.launcher.cpus_per_task: the job asks 4 CPU(s) per node" in out.stdout) == (node_cpus < 4), out.stdout
    assert "Traceback" not in out.stdout
    assert sacct(tmp_path) == {}
    assert not (tmp_path / "outputs").exists()


def _summary(out: subprocess.CompletedProcess) -> tuple[str, str]:
    shape = re.search(r"\d+ gpu\(s\)/node", out.stdout)
    budget = re.search(r"budget at the time limits: .*", out.stdout)
    assert shape and budget, out.stdout
    return shape.group(0), budget.group(0)


def test_sweep_summary_counts_gres_and_gpus_per_node_alike(tmp_path: Path, run_app: Callable) -> None:
    forms = {
        "gpus_per_node": (),
        "gres": ("hydra.launcher.gpus_per_node=null", "hydra.launcher.gres=gpu:2"),
        "gpus_per_task": ("hydra.launcher.gpu_binding=task",),
    }
    summaries = {}
    for name, extra in forms.items():
        (tmp_path / name).mkdir()
        out = run_app(tmp_path / name, *GPU_JOB, "hydra.launcher.dry_run=true", *extra, timeout=120)
        assert out.returncode == 0, out.stdout
        summaries[name] = _summary(out)
    assert summaries["gpus_per_node"] == ("2 gpu(s)/node", "budget at the time limits: 0.33 core-hours, 0.33 GPU-hours")
    assert summaries["gres"] == summaries["gpus_per_node"] == summaries["gpus_per_task"], summaries


def test_a_task_seeing_the_wrong_gpu_count_fails_with_one_line(tmp_path: Path, run_app: Callable) -> None:
    # a hand-set gres of 1 GPU per node under per-node binding: each of the 2 tasks sees 1 GPU, not trainer.devices=2
    job = ("launcher=slurm", "trainer=gpu", "trainer.devices=2", "hydra.launcher.timeout_min=5")
    out = run_app(tmp_path, *job, "hydra.launcher.gpus_per_node=null", "hydra.launcher.gres=gpu:1", timeout=300)
    assert out.returncode != 0
    assert re.search(
        r"hydra\.launcher\.gpu_binding: node, so task rank [01] \(local rank [01]\) on \S+ should see 2 GPU\(s\), "
        r"but it sees 1 \(CUDA_VISIBLE_DEVICES=\d\) with trainer.devices=2",
        out.stdout,
    ), out.stdout
    assert _records(tmp_path / "sweep") == []
