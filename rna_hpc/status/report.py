"""What ``rna-hpc-status`` prints and writes: the jobs' table, the screen around it, its JSON and the learning curves.

The table shows each job's overrides without those every job shares; failed jobs get their reason, every job its log.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rna_hpc.launch.record import common_parent
from rna_hpc.status.hpo import format_stages
from rna_hpc.status.jobs import JobStatus, SweepStatus

COLUMNS = [
    "job",
    "overrides",
    "state",
    "slurm id",
    "node",
    "requeues",
    "epoch",
    "step",
    "latest",
    "best",
    "consolidated",
]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _distinct(rows: Sequence[JobStatus]) -> list[str]:
    """Each job's overrides without those every job shares, so the table shows what differs."""
    common = set.intersection(*(set(r.overrides.split()) for r in rows)) if len(rows) > 1 else set()
    return [" ".join(o for o in r.overrides.split() if o not in common)[:48] for r in rows]


def format_table(rows: Sequence[JobStatus]) -> str:
    """The fixed-width table, then one line per failed job (reason) and the log of each job."""
    objective = rows[0].objective if rows else "objective"
    header = [c if c not in ("latest", "best") else f"{c} {objective}" for c in COLUMNS]
    cells = [
        [f"#{r.num}", o or "-", r.state, r.slurm_job_id, r.node, r.requeues, r.epoch, r.step, r.latest, r.best]
        + [r.consolidated]
        for r, o in zip(rows, _distinct(rows))
    ]
    if any(r.trial for r in rows):
        header.insert(2, "trial")
        for row, r in zip(cells, rows):
            row.insert(2, r.trial)
    cells = [[_cell(v) for v in row] for row in cells]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    for r in rows:
        if r.reason:
            lines.append(f"#{r.num} {r.state}: {r.reason[:300]}")
    lines += [f"#{r.num} log: {r.log}" for r in rows if r.log]
    return "\n".join(lines)


def summary_line(rows: Sequence[JobStatus]) -> str:
    """How many jobs are in each state, on one line."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    return f"{len(rows)} job(s): " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def write_plots(status: SweepStatus) -> str:
    """``learning_curves.png`` in each job's shared dir and one overlaying the jobs' objective beside the results."""
    from rna_hpc.status.plots import plot_run, plot_sweep

    rows, record = status.rows, status.record
    shared = record.shared_sweep_dir if record else common_parent(str(r.shared_dir) for r in rows if r.shared_dir)
    out_dir = Path(shared) if shared else status.sweep_dir
    out_dir = out_dir if out_dir.is_dir() else status.sweep_dir
    written = []
    try:
        for r in rows:
            if r.curves and r.shared_dir is not None and r.shared_dir.is_dir():
                written.append(plot_run(r.curves, r.objective, r.shared_dir / "learning_curves.png", f"job #{r.num}"))
        if rows:
            overlay = plot_sweep(
                {f"#{r.num}": r.curves for r in rows}, rows[0].objective, out_dir / "learning_curves.png"
            )
            written.append(overlay)
    except OSError as err:
        return f"learning curves not written: {err}"
    n_runs = sum(1 for p in written[:-1] if p is not None)
    where = written[-1] if written and written[-1] is not None else "none yet"
    return f"learning curves: {n_runs} job plot(s); sweep overlay: {where}"


def format_status(status: SweepStatus) -> str:
    """The text of one screen: the jobs' table, a count per state and the search's stages."""
    record = status.record
    head = f"sweep {status.sweep_dir}"
    if record is not None:
        head += f" ({record.launcher} launcher{', detached' if record.detached else ''}, submitted {record.created})"
    parts = [head, format_table(status.rows), summary_line(status.rows)]
    if status.stages:
        parts.append(format_stages(status.stages))
    return "\n".join(parts)


def as_json(status: SweepStatus) -> str:
    """The status as JSON (``--json``): the jobs and the search's stages."""
    keep = ("num", "state", "slurm_job_id", "node", "requeues", "epoch", "step", "latest", "best", "consolidated")
    rows = [{k: getattr(r, k) for k in keep} | {"reason": r.reason, "log": r.log} for r in status.rows]
    stages = [{"study": s.study, "stage": s.label, "counts": s.counts, "best": s.best} for s in status.stages]
    return json.dumps({"sweep_dir": str(status.sweep_dir), "jobs": rows, "stages": stages}, indent=1)
