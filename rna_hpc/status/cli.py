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
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rna_hpc.errors import InputError, RnaHpcError
from rna_hpc.status.jobs import collect
from rna_hpc.status.report import as_json, format_status, write_plots


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line of ``rna-hpc-status``."""
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
    """``--dashboard``: serve optuna-dashboard until Ctrl-C; the exit code."""
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
