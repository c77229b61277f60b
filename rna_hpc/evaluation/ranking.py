"""Rank candidate structures of one target by a confidence score: agreement with the other candidates.

A structure that many independent candidates (diffusion samples, the secondary-structure prior, templates) agree
with is more likely right than an outlier; the score is its mean TM-score to the others (a consensus score).
"""

from __future__ import annotations

import numpy as np

from rna_hpc.evaluation.metrics import tm_score


def consensus_scores(candidates: np.ndarray) -> np.ndarray:
    """[N] mean TM-score of each candidate [N, L, 3] to every other one (1.0 for a single candidate)."""
    n = len(candidates)
    if n == 1:
        return np.ones(1)
    tm = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            tm[i, j] = tm[j, i] = 0.5 * (
                tm_score(candidates[i], candidates[j]) + tm_score(candidates[j], candidates[i])
            )
    return (tm.sum(axis=1) - 1.0) / (n - 1)


def rank_candidates(candidates: np.ndarray, names: list[str], keep: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """The ``keep`` most confident candidates (most confident first), their names and confidence scores."""
    scores = consensus_scores(candidates)
    order = np.argsort(-scores, kind="stable")[:keep]
    return candidates[order], [names[i] for i in order], scores[order]
