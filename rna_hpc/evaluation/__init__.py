"""Structure metrics, baselines, template search and the evaluation pipeline (numpy; plots live in `report`)."""

from __future__ import annotations

from rna_hpc.evaluation.alignment import tm_score_aligned
from rna_hpc.evaluation.metrics import best_rmsd, best_tm, d0_rna, kabsch, rmsd, tm_score

__all__ = ["best_rmsd", "best_tm", "d0_rna", "kabsch", "rmsd", "tm_score", "tm_score_aligned"]
