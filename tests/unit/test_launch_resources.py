"""GPU counting (one function for the sweep summary and the HPO budget) and requests against the partition's nodes."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from rna_hpc.hpo.budget import job_resources
from rna_hpc.launch import resources
from rna_hpc.launch.resources import NodeOffer


@pytest.mark.parametrize(
    ("gres", "gpus"),
    [
        ("gpu:2", 2),
        ("gpu:a100:4", 4),
        ("gpu", 1),
        ("gpu:a100", 1),
        ("gpu:a100:4(S:0-1)", 4),
        ("gpu:a100:1,shard:2", 1),
        ("shard:2", 0),
        (None, 0),
        ("(null)", 0),
    ],
)
def test_gres_gpus(gres: str | None, gpus: int) -> None:
    assert resources.gres_gpus(gres) == gpus


@pytest.mark.parametrize(
    "params",
    [
        {"nodes": 2, "tasks_per_node": 2, "gpus_per_node": 2},
        {"nodes": 2, "tasks_per_node": 2, "gpus_per_node": None, "gpus_per_task": 1},
        {"nodes": 2, "tasks_per_node": 2, "gpus_per_node": None, "gres": "gpu:a100:2"},
    ],
)
def test_every_way_of_asking_counts_the_same_gpus(params: dict) -> None:
    assert resources.gpus_per_node(params) == 2
    assert resources.job_gpus(params) == 4
    launcher = {"_target_": "x.RnaHpcSlurmLauncher", "cpus_per_task": 1, "timeout_min": 60, **params}
    assert job_resources(OmegaConf.create({"hydra": {"launcher": launcher}})).gpus == 4


def test_binding_decides_the_gpu_flags() -> None:
    assert resources.bound_gpus("gpu", 2, "node") == (2, None)
    assert resources.bound_gpus("cuda", 2, "task") == (None, 1)
    assert resources.bound_gpus("cpu", 2, "task") == (None, None)


NODES = [NodeOffer("node1", cpus=2, mem_mb=19284, gres="gpu:2"), NodeOffer("node2", cpus=2, mem_mb=19284, gres="gpu:2")]


def test_a_request_the_nodes_can_hold_passes() -> None:
    shape = {"nodes": 2, "tasks_per_node": 2, "cpus_per_task": 1, "gpus_per_node": 2, "mem_gb": 8}
    assert resources.request_problems(shape, "debug", NODES) == []


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        (
            {"gpus_per_node": 4, "tasks_per_node": 4},
            "hydra.launcher.gpus_per_node: the job asks 4 GPU(s) per node, but no node of partition 'debug' offers "
            "more than 2 (node1 (gpu:2))",
        ),
        (
            {"gpus_per_task": 1, "tasks_per_node": 3},
            "hydra.launcher.gpus_per_task: the job asks 3 GPU(s) per node",
        ),
        ({"gres": "gpu:a100:8"}, "hydra.launcher.gres: the job asks 8 GPU(s) per node"),
        (
            {"tasks_per_node": 2, "cpus_per_task": 2},
            "hydra.launcher.cpus_per_task: the job asks 4 CPU(s) per node, but no node of partition 'debug' offers "
            "more than 2 (node1)",
        ),
        ({"mem_gb": 64}, "hydra.launcher.mem_gb: the job asks 65536 MB of memory per node"),
        ({"nodes": 3}, "hydra.launcher.nodes: 3 nodes requested, partition 'debug' has 2"),
    ],
)
def test_a_request_above_every_node_names_the_node_figure(shape: dict, message: str) -> None:
    problems = resources.request_problems(shape, "debug", NODES)
    assert [p for p in problems if p.startswith(message)], problems


def test_a_request_needs_nodes_that_hold_every_figure_at_once() -> None:
    mixed = [NodeOffer("gpu1", cpus=4, mem_mb=8000, gres="gpu:8"), NodeOffer("cpu1", cpus=64, mem_mb=256000, gres="")]
    shape = {"gpus_per_node": 8, "tasks_per_node": 8, "cpus_per_task": 4}  # 8 GPUs and 32 CPUs on one node
    (problem,) = resources.request_problems(shape, "mixed", mixed)
    assert problem.startswith(
        "hydra.launcher: the job asks 8 GPU(s), 32 CPU(s) on each of 1 node(s), but 0 node(s) of partition 'mixed' "
        "hold all of it at once (gpu1: 8 GPU(s), 4 CPU(s), 8000 MB; cpu1: 0 GPU(s), 64 CPU(s), 256000 MB)"
    ), problem
    assert resources.request_problems({"gpus_per_node": 8, "tasks_per_node": 1}, "mixed", mixed) == []
    two = resources.request_problems({"nodes": 2, "gpus_per_node": 1}, "mixed", mixed)
    assert two and "on each of 2 node(s), but 1 node(s)" in two[0]
