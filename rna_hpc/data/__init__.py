"""Data layer: parsers (Kaggle CSV, PDB/mmCIF, FASTA), Stage A features, the content-addressed cache,
datasets, the length-bucketing sampler and the Lightning data module.

Only ``rna_hpc.data.datamodule`` imports pytorch_lightning.
"""

from __future__ import annotations
