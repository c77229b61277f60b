"""Slurm's view of submitted jobs, from one ``sacct`` call for all of them.

``sacct -j <ids> -X -D -n -P -o JobID,State,NodeList,ExitCode``: ``-D`` lists every attempt of a requeued job, so
the number of earlier records is its requeue count (this Slurm has no ``Restarts`` field in sacct). A missing or
failing ``sacct`` gives None: callers fall back to what the jobs wrote to disk.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

FIELDS = "JobID,State,NodeList,ExitCode"
# States after which Slurm does nothing more with the job (a requeued job goes back to PENDING instead).
TERMINAL = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}
)
_ARRAY_RANGE = re.compile(r"^(\d+)_\[([0-9,\-]+)(?:%\d+)?\]$")


@dataclass(frozen=True)
class SlurmState:
    """The latest attempt of one job as Slurm accounts it."""

    job_id: str
    state: str  # first word of sacct's State ('CANCELLED by 0' -> CANCELLED)
    requeues: int
    node_list: str
    exit_code: str

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


def _expand(job_id: str) -> list[str]:
    """``'57_[2-4,7%16]'`` (pending array tasks) -> ``['57_2', '57_3', '57_4', '57_7']``; other ids unchanged."""
    match = _ARRAY_RANGE.match(job_id)
    if not match:
        return [job_id]
    ids = []
    for part in match.group(2).split(","):
        lo, _, hi = part.partition("-")
        ids.extend(f"{match.group(1)}_{k}" for k in range(int(lo), int(hi or lo) + 1))
    return ids


def parse_sacct(text: str) -> dict[str, SlurmState]:
    """``{job id: SlurmState}`` from ``sacct -X -D -n -P`` output with ``FIELDS``; the last record of an id wins."""
    attempts: dict[str, list[list[str]]] = {}
    for line in text.splitlines():
        cols = line.strip().split("|")
        if len(cols) < 4 or not cols[0]:
            continue
        for job_id in _expand(cols[0]):
            attempts.setdefault(job_id, []).append(cols)
    states = {}
    for job_id, records in attempts.items():
        last = records[-1]
        state = (last[1].split() or ["UNKNOWN"])[0].rstrip("+")
        states[job_id] = SlurmState(job_id, state, len(records) - 1, last[2], last[3])
    return states


def query_slurm(job_ids: Iterable[str], timeout: float = 30.0) -> dict[str, SlurmState] | None:
    """Slurm's state of every given job in one ``sacct`` call; None when sacct is missing or fails."""
    ids = sorted({str(j) for j in job_ids if j})
    if not ids:
        return {}
    cmd = ["sacct", "-j", ",".join(ids), "-X", "-D", "-n", "-P", "-o", FIELDS]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return parse_sacct(proc.stdout)
