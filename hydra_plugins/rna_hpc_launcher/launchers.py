"""The names Hydra instantiates for ``hydra/launcher=slurm`` and ``hydra/launcher=local``.

Hydra accepts a launcher class only from a module under ``hydra_plugins``; behaviour is in ``rna_hpc.launch``.
"""

from __future__ import annotations

from rna_hpc.launch import launchers


class RnaHpcSlurmLauncher(launchers.RnaHpcSlurmLauncher):
    """Slurm through submitit, validating the whole sweep first (see ``rna_hpc.launch.launchers``)."""


class RnaHpcLocalLauncher(launchers.RnaHpcLocalLauncher):
    """submitit processes on this machine, validating the whole sweep first (see ``rna_hpc.launch.launchers``)."""
