"""The names Hydra instantiates for ``hydra/launcher=slurm`` and ``hydra/launcher=local``.

Hydra accepts a launcher class only from a module under ``hydra_plugins``; behaviour is in ``rna_hpc.launch.slurm``.
"""

from __future__ import annotations

from rna_hpc.launch import slurm


class RnaHpcSlurmLauncher(slurm.RnaHpcSlurmLauncher):
    """Slurm through submitit, validating the whole sweep first (see ``rna_hpc.launch.slurm``)."""


class RnaHpcLocalLauncher(slurm.RnaHpcLocalLauncher):
    """submitit processes on this machine, validating the whole sweep first (see ``rna_hpc.launch.slurm``)."""
