"""``rna-hpc-status <sweep dir> [--watch [SECONDS]]``: one table of every job of a sweep, and its learning curves.

``rna-hpc-status --dashboard <sweep dir>`` serves optuna-dashboard on a staged search's storage instead
(``rna_hpc.status.dashboard``).

The sweep dir is the one Hydra made (``hydra.sweep.dir``, holding ``sweep.json`` when a submitit launcher wrote one)
or the shared sweep dir ``<paths.shared_dir>/<experiment>/<sweep id>/``. Slurm's view comes from one ``sacct`` call;
everything else from what the jobs wrote: ``manifest.json`` (consolidated, verified), ``csv/metrics.csv`` (epoch,
step, objective), ``error.json`` (why a job failed). A staged Optuna search also gets its trial states per stage.
Exit code 1 when a job failed, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rna_hpc.errors import InputError
from rna_hpc.launch.record import common_parent
from rna_hpc.status.hpo import format_stages
from rna_hpc.status.jobs import JobStatus, SweepStatus, collect

__all__ = ["collect", "format_status", "main"]

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
    keep = ("num", "state", "slurm_job_id", "node", "requeues", "epoch", "step", "latest", "best", "consolidated")
    rows = [{k: getattr(r, k) for k in keep} | {"reason": r.reason, "log": r.log} for r in status.rows]
    stages = [{"study": s.study, "stage": s.label, "counts": s.counts, "best": s.best} for s in status.stages]
    return json.dumps({"sweep_dir": str(status.sweep_dir), "jobs": rows, "stages": stages}, indent=1)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rna-hpc-status", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="hydra.sweep.dir of the sweep, or its shared sweep dir")
    parser.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=30.0,
        default=None,
        metavar="SECONDS",
        help="refresh every SECONDS (default 30) until every job has finished",
    )
    parser.add_argument("--no-plots", action="store_true", help="do not write learning-curve PNG files")
    parser.add_argument("--json", action="store_true", help="print the status as JSON instead of tables")
    parser.add_argument(
        "--dashboard", action="store_true", help="serve optuna-dashboard on the search's storage (until Ctrl-C)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="--dashboard: address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="--dashboard: port (default 8080; 0 picks a free one)")
    return parser.parse_args(argv)


def dashboard(args: argparse.Namespace) -> int:
    from rna_hpc.errors import RnaHpcError
    from rna_hpc.status.dashboard import serve

    try:
        serve(args.sweep_dir, args.host, args.port)
    except RnaHpcError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 0
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Print the status (refreshing with ``--watch``); exit code 1 when any job failed, 2 on bad input."""
    args = parse_args(argv)
    if args.dashboard:
        return dashboard(args)
    try:
        status = collect(args.sweep_dir)
        while args.watch is not None and not status.done:
            screen = f"{time.strftime('%H:%M:%S')}  {format_status(status)}\n"
            print(screen, file=sys.stderr if args.json else sys.stdout, flush=True)  # --json: stdout holds JSON only
            time.sleep(max(args.watch, 1.0))
            status = collect(args.sweep_dir)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    print(as_json(status) if args.json else format_status(status))
    if not args.no_plots:
        print(write_plots(status), file=sys.stderr if args.json else sys.stdout)
    return 1 if status.failed else 0


if __name__ == "__main__":
    sys.exit(main())
