"""What a job asks of Slurm and what the nodes offer: GPU counts, GPU binding, node limits from ``sinfo``.

One place counts a job's GPUs, whichever way it asks for them (``gpus_per_node``, ``gpus_per_task`` or a ``gres``
such as ``gpu:a100:1``); the sweep summary and the HPO budget both use it. Before submission the launcher compares
each resource shape with the largest node of its partition and names that node's figure. Light: no torch, no
submitit; ``sinfo`` runs once per sweep.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

GPU_ACCELERATORS = ("gpu", "cuda")
# node: every task sees all of its node's GPUs (--gpus-per-node) and picks its own by local rank (Lightning's way);
# task: Slurm gives each task one GPU of its own (--gpus-per-task=1)
GPU_BINDINGS = ("node", "task")
_GRES_GPU = re.compile(r"^gpu(?::(?P<type>[^:(]+))?(?::(?P<count>\d+))?(?:\(.*\))?$")


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def gres_gpus(gres: str | None) -> int:
    """GPUs in a gres string: ``gpu:2`` -> 2, ``gpu:a100:4`` -> 4, ``gpu`` -> 1, ``gpu:a100:4(S:0-1),shard:2`` -> 4."""
    total = 0
    for part in str(gres or "").split(","):
        match = _GRES_GPU.match(part.strip())
        if match:
            count = match.group("count")
            if count is None and match.group("type") and match.group("type").isdigit():
                count = match.group("type")  # 'gpu:2': the one field is the count
            total += int(count) if count is not None else 1
    return total


def gpus_per_node(params: Mapping[str, Any]) -> int:
    """GPUs one node of the job holds: ``gpus_per_node``, else ``gpus_per_task`` x tasks, else the ``gres`` count."""
    explicit = _int(params.get("gpus_per_node"))
    if explicit:
        return explicit
    per_task = _int(params.get("gpus_per_task"))
    if per_task:
        return per_task * (_int(params.get("tasks_per_node")) or 1)
    return gres_gpus(params.get("gres"))


def job_gpus(params: Mapping[str, Any]) -> int:
    """GPUs the whole job holds (every node)."""
    return (_int(params.get("nodes")) or 1) * gpus_per_node(params)


def bound_gpus(accelerator: str, devices: int, binding: str = "node") -> tuple[int | None, int | None]:
    """``(gpus_per_node, gpus_per_task)`` for a trainer: none on CPU, one per task or all per node on a GPU."""
    if str(accelerator) not in GPU_ACCELERATORS:
        return None, None
    return (None, 1) if binding == "task" else (int(devices), None)


@dataclass(frozen=True)
class NodeOffer:
    """One node of a partition as ``sinfo`` reports it."""

    name: str
    cpus: int
    mem_mb: int
    gres: str

    @property
    def gpus(self) -> int:
        return gres_gpus(self.gres)


def partition_nodes() -> tuple[dict[str, list[NodeOffer]], str | None]:
    """``({partition: nodes}, default partition)`` from one ``sinfo`` call; RuntimeError when sinfo fails."""
    cmd = ["sinfo", "-h", "-N", "-o", "%N|%P|%c|%m|%G"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise RuntimeError(f"sinfo failed: {err}") from err
    if out.returncode != 0:
        raise RuntimeError(f"sinfo failed: {out.stderr.strip() or out.returncode}")
    nodes: dict[str, list[NodeOffer]] = {}
    default = None
    for line in out.stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 5:
            continue
        name, partition, cpus, mem, gres = fields
        if partition.endswith("*"):
            partition = default = partition[:-1]
        offer = NodeOffer(name, _int(cpus.rstrip("+")), _int(mem.rstrip("+")), "" if gres == "(null)" else gres)
        nodes.setdefault(partition, []).append(offer)
    return nodes, default


def _largest(offers: Sequence[NodeOffer], figure: str) -> NodeOffer:
    return max(offers, key=lambda n: getattr(n, figure))


def request_problems(params: Mapping[str, Any], partition: str, offers: Sequence[NodeOffer]) -> list[str]:
    """What one resource shape asks per node beyond the largest node of ``partition``: ``key: why`` lines."""
    where = f"partition {partition!r}"
    problems = []
    nodes = _int(params.get("nodes")) or 1
    if nodes > len(offers):
        problems.append(f"hydra.launcher.nodes: {nodes} nodes requested, {where} has {len(offers)}")
    tasks = _int(params.get("tasks_per_node")) or 1
    wants = [
        ("gpus_per_node" if params.get("gpus_per_node") else "gres", "gpus", gpus_per_node(params), "GPU(s)"),
        ("cpus_per_task", "cpus", tasks * (_int(params.get("cpus_per_task")) or 1), "CPU(s)"),
        ("mem_gb", "mem_mb", _int(params.get("mem_gb")) * 1024, "MB of memory"),
    ]
    if not params.get("gpus_per_node") and params.get("gpus_per_task"):
        wants[0] = ("gpus_per_task", "gpus", gpus_per_node(params), "GPU(s)")
    for key, figure, wanted, unit in wants:
        best = _largest(offers, figure)
        if wanted > getattr(best, figure):
            detail = f" ({best.gres or 'no gres'})" if figure == "gpus" else ""
            problems.append(
                f"hydra.launcher.{key}: the job asks {wanted} {unit} per node, but no node of {where} offers more "
                f"than {getattr(best, figure)} ({best.name}{detail})"
            )
    if problems:
        return problems
    # each figure fits some node; the job needs `nodes` nodes that hold all of them at once
    fitting = [n for n in offers if all(wanted <= getattr(n, figure) for _, figure, wanted, _ in wants)]
    if len(fitting) < nodes:
        asked = ", ".join(f"{wanted} {unit}" for _, _, wanted, unit in wants if wanted)
        offered = "; ".join(f"{n.name}: {n.gpus} GPU(s), {n.cpus} CPU(s), {n.mem_mb} MB" for n in offers[:4])
        problems.append(
            f"hydra.launcher: the job asks {asked} on each of {nodes} node(s), but {len(fitting)} node(s) of {where} "
            f"hold all of it at once ({offered})"
        )
    return problems


def node_limit_problems(all_params: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every resource shape of a sweep against the nodes of its partition (one ``sinfo`` call per sweep).

    An unknown partition is ``preflight.partition_problems``'s to report.
    """
    if not all_params:
        return []
    try:
        nodes, default = partition_nodes()
    except RuntimeError as err:
        return [f"hydra.launcher: cannot check the request against the nodes: {err}"]
    problems: list[str] = []
    for params in all_params:
        partition = str(params.get("partition") or default or "")
        offers = nodes.get(partition)
        if offers:
            problems += [p for p in request_problems(params, partition, offers) if p not in problems]
    return problems
