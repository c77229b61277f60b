"""Launching any Hydra app on Slurm or this machine: plan and check every job, submit, collect, report.

The public API for an app is :func:`validated_by`, which declares the app's own checks
(``rna_hpc.config.checks``).
"""

from rna_hpc.config.checks import validated_by

__all__ = ["validated_by"]
