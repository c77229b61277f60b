"""Launching any Hydra app on Slurm or this machine: plan and check every job, submit, collect, report.

The public API for an app is :func:`validated_by`, which declares the app's own checks (see ``validators``).
"""

from rna_hpc.launch.validators import validated_by

__all__ = ["validated_by"]
