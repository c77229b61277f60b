"""Structure-aware template scoring: sequence plus agreement of the query's predicted pairs with a template's.

A family member at low sequence identity keeps its stems: the sequences differ, the pairing does not. The query's
pairing is ViennaRNA's MFE structure; a template's is read from its C1' trace (`observed_pairs`: complementary
residues at base-pair distance whose neighbours also pair, i.e. stems of two pairs or more). The alignment adds a
pairing-state term to the nucleotide substitution score (`structure_scores`), and a hit is ranked by its identity
plus the fraction of pairs conserved through the alignment (`pair_agreement`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from rna_hpc.evaluation.alignment import sequence_scores

PAIR_RANGE = (9.0, 12.0)  # A: C1'-C1' distance of a base pair in experimental structures (ideal Watson-Crick 10.4)
MIN_LOOP = 3  # unpaired residues a hairpin closes at least
COMPLEMENTARY = frozenset({"AU", "UA", "GC", "CG", "GU", "UG"})
STATE_MATCH, STATE_MISMATCH = 2.0, -1.5  # alignment score of equal / different pairing states (open, close, none)
LENGTH_RATIO = 1.6  # structure search considers templates within this length ratio of the query


@lru_cache(maxsize=1024)
def predicted_pairs(sequence: str) -> tuple[int, ...]:
    """Partner (or -1) of each residue in the ViennaRNA MFE structure of ``sequence`` (cached)."""
    from rna_hpc.data.features import mfe_pairs

    return tuple(mfe_pairs(sequence.upper().replace("T", "U")).tolist())


def observed_pairs(sequence: str, coords: np.ndarray) -> np.ndarray:
    """Partner (or -1) of each residue from a C1' trace [L, 3] (NaN = unresolved).

    A pair is complementary (Watson-Crick or GU), within `PAIR_RANGE`, closes a loop of at least `MIN_LOOP`, and
    stacks on a neighbouring pair (i+1, j-1) or (i-1, j+1) that is one as well; a residue with several candidates
    keeps the one nearest the ideal distance.
    """
    seq = sequence.upper()
    n = len(seq)
    xyz = np.asarray(coords, dtype=float)
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    comp = np.array([[a + b in COMPLEMENTARY for b in seq] for a in seq], dtype=bool).reshape(n, n)
    idx = np.arange(n)
    ok = comp & (d >= PAIR_RANGE[0]) & (d <= PAIR_RANGE[1]) & (idx[None, :] - idx[:, None] > MIN_LOOP)
    stacked = np.zeros_like(ok)
    stacked[:-1, 1:] |= ok[1:, :-1]  # (i+1, j-1)
    stacked[1:, :-1] |= ok[:-1, 1:]  # (i-1, j+1)
    i, j = np.nonzero(ok & stacked)
    partners = np.full(n, -1, dtype=np.int64)
    for k in np.argsort(np.abs(d[i, j] - 10.4), kind="stable"):
        a, b = i[k], j[k]
        if partners[a] < 0 and partners[b] < 0:
            partners[a], partners[b] = b, a
    return partners


def pair_states(partners: np.ndarray) -> np.ndarray:
    """Per residue: 0 unpaired, 1 pairs downstream (opens), 2 pairs upstream (closes)."""
    p = np.asarray(partners)
    idx = np.arange(len(p))
    return np.where(p < 0, 0, np.where(p > idx, 1, 2))


def structure_scores(query: str, template: str, q_partners: np.ndarray, t_partners: np.ndarray) -> np.ndarray:
    """Substitution matrix [len(query), len(template)]: nucleotide score plus the pairing-state score."""
    q_state, t_state = pair_states(q_partners), pair_states(t_partners)
    state = np.where(q_state[:, None] == t_state[None, :], STATE_MATCH, STATE_MISMATCH)
    both_unpaired = (q_state[:, None] == 0) & (t_state[None, :] == 0)
    return sequence_scores(query, template) + np.where(both_unpaired, 0.0, state)


def pair_agreement(mapping: np.ndarray, q_partners: np.ndarray, t_partners: np.ndarray) -> float:
    """Query pairs (i, j) whose aligned residues pair in the template, over the larger of the two pair counts."""
    q = np.asarray(q_partners)
    t = np.asarray(t_partners)
    i = np.flatnonzero(q > np.arange(len(q)))
    j = q[i]
    mi, mj = mapping[i], mapping[j]
    kept = (mi >= 0) & (mj >= 0)
    conserved = int(np.sum(t[mi[kept]] == mj[kept]))
    n_pairs = max(len(i), int(np.sum(t > np.arange(len(t)))))
    return conserved / n_pairs if n_pairs else 0.0
