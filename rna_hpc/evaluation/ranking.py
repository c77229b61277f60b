"""Pick and rank the structures submitted for one target from a pool of candidates of several sources.

Confidence is agreement: a structure that the other candidates (diffusion samples, the secondary-structure prior,
templates) resemble is more likely right than an outlier. Each source counts once, however many candidates it
brought, so a source with many samples does not outvote the others. The selection is diverse: the first choice of
every source is kept first (so the secondary-structure prior and the best-aligned template are always submitted when
they are in the pool), then the rest by confidence, skipping near-copies of what was already kept while other
candidates remain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rna_hpc.evaluation.metrics import superpose_tm

MAX_SIMILARITY = 0.8  # a candidate this similar (TM) to a kept one is a near-copy


@dataclass(frozen=True)
class Ranked:
    """The kept candidates, most confident first."""

    coords: np.ndarray  # [K, L, 3]
    names: list[str]
    sources: list[str]
    scores: np.ndarray  # [K] confidence


def similarity_matrix(candidates: np.ndarray) -> np.ndarray:
    """[N, N] symmetric TM-score between candidates [N, L, 3] (one superposition search from all residues)."""
    n, length = len(candidates), candidates.shape[1]
    sim = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            sim[i, j] = sim[j, i] = superpose_tm(candidates[i], candidates[j], length, fragments=False)[0]
    return sim


def consensus_scores(similarity: np.ndarray, sources: list[str]) -> np.ndarray:
    """[N] each candidate's mean, over the other sources, of its mean similarity to that source's candidates.

    With a single source in the pool, the mean similarity to the siblings; a lone candidate scores 1.0.
    """
    n = len(similarity)
    labels = np.array(sources)
    groups = {source: np.flatnonzero(labels == source) for source in dict.fromkeys(sources)}
    scores = np.ones(n)
    for i in range(n):
        others = [similarity[i, members].mean() for source, members in groups.items() if source != sources[i]]
        siblings = groups[sources[i]][groups[sources[i]] != i]
        if others:
            scores[i] = np.mean(others)
        elif siblings.size:
            scores[i] = similarity[i, siblings].mean()
    return scores


def select_diverse(
    scores: np.ndarray, similarity: np.ndarray, sources: list[str], keep: int, max_similarity: float = MAX_SIMILARITY
) -> list[int]:
    """Indices of ``keep`` candidates, most confident first.

    First each source's own first choice (its first candidate: the deterministic prior, the best-aligned template;
    samples are exchangeable), then the others by score; near-copies of a kept candidate only while nothing else is
    left.
    """
    order = [int(i) for i in np.argsort(-scores, kind="stable")]
    firsts = [sources.index(source) for source in dict.fromkeys(sources)]
    chosen: list[int] = []

    def novel(i: int) -> bool:
        return i not in chosen and (not chosen or similarity[i, chosen].max() < max_similarity)

    for group in (sorted(firsts, key=order.index), order):
        for i in group:
            if len(chosen) < keep and novel(i):
                chosen.append(i)
    for i in order:
        if len(chosen) < keep and i not in chosen:
            chosen.append(i)
    return sorted(chosen, key=order.index)


def rank_candidates(
    candidates: np.ndarray,
    names: list[str],
    keep: int,
    sources: list[str] | None = None,
    max_similarity: float = MAX_SIMILARITY,
) -> Ranked:
    """The ``keep`` candidates [N, L, 3] to submit, most confident first (fewer when the pool is smaller).

    ``sources`` names where each candidate came from (default: each name up to its last '_', e.g. 'model_3' -> 'model').
    """
    candidates = np.asarray(candidates, dtype=float)
    if candidates.ndim != 3 or len(candidates) != len(names) or len(candidates) == 0:
        raise ValueError(f"rank_candidates: {len(names)} names for candidates of shape {candidates.shape}")
    if keep < 1:
        raise ValueError(f"rank_candidates: keep must be >= 1, got {keep}")
    sources = sources or [source_of(name) for name in names]
    similarity = similarity_matrix(candidates)
    scores = consensus_scores(similarity, sources)
    idx = select_diverse(scores, similarity, sources, keep, max_similarity)
    return Ranked(candidates[idx], [names[i] for i in idx], [sources[i] for i in idx], scores[idx])


def source_of(name: str) -> str:
    """'model_3' -> 'model', 'template_0' -> 'template', 'ss_model' -> 'ss_model'."""
    head, _, tail = name.rpartition("_")
    return head if head and tail.isdigit() else name
