"""rna_hpc: train RNA 3D-structure models on Slurm clusters."""

__version__ = "0.1.0"
