"""``rna-hpc-status <sweep dir>`` (or ``python -m rna_hpc.status``): every job of a sweep, its curves, its search.

The command line is `cli`; the jobs' state comes from `jobs` (Slurm's accounting and the `files` the jobs wrote), the
search's stages from `hpo`; `report` prints the screen and writes the learning curves (`plots`); `dashboard` serves
optuna-dashboard on the search's storage.
"""

from __future__ import annotations

from rna_hpc.status.cli import main
from rna_hpc.status.jobs import collect
from rna_hpc.status.report import format_status

__all__ = ["collect", "format_status", "main"]
