"""Needleman-Wunsch alignment (affine gaps, optional free end gaps) and the sequence-independent TM-score.

`tm_score_aligned` finds the residue correspondence itself, as TM-align / US-align do: initial alignments from the
sequences and from gapless threading, then rounds of superposition and dynamic programming on the TM-score matrix.
"""

from __future__ import annotations

import numpy as np

from rna_hpc.evaluation.metrics import d0_rna, superpose_tm

_DP_ROUNDS = 6
_N_THREADINGS = 2  # best gapless threadings refined besides the sequence alignment
_TM_GAP = -0.6  # TM-align's gap-open penalty (no extension cost) on the 1/(1+(d/d0)^2) score matrix


def _dp_tables(score: np.ndarray, gap_open: float, gap_extend: float, free_ends: bool) -> np.ndarray:
    """Gotoh tables [3, n+1, m+1] (match, gap in columns, gap in rows), each row in one vectorised step.

    The in-row gap term is a running maximum: Y[i, j] = max_k<j (max(M, X)[i, k] + open + extend * (j - 1 - k)).
    """
    n, m = score.shape
    t = np.full((3, n + 1, m + 1), -np.inf)
    t[0, 0, 0] = 0.0
    end_cost = 0.0 if free_ends else 1.0
    t[2, 0, 1:] = end_cost * (gap_open + gap_extend * np.arange(m))
    t[1, 1:, 0] = end_cost * (gap_open + gap_extend * np.arange(n))
    ramp = gap_extend * np.arange(m + 1)
    for i in range(1, n + 1):
        prev = t[:, i - 1].max(axis=0)
        t[0, i, 1:] = prev[:-1] + score[i - 1]
        t[1, i, 1:] = np.maximum(prev[1:] + gap_open, t[1, i - 1, 1:] + gap_extend)
        open_from = np.maximum(t[0, i], t[1, i]) + gap_open - ramp
        run = np.maximum.accumulate(open_from)
        t[2, i, 1:] = run[:-1] + ramp[:-1]
    return t


def align(score: np.ndarray, gap_open: float, gap_extend: float = 0.0, free_ends: bool = True) -> np.ndarray:
    """Best alignment of rows to columns of `score` [n, m] with affine gaps: for each row its column, or -1."""
    score = np.asarray(score, dtype=float)
    n, m = score.shape
    mapping = np.full(n, -1, dtype=np.int64)
    if n == 0 or m == 0:
        return mapping
    t = _dp_tables(score, gap_open, gap_extend, free_ends)
    h = t.max(axis=0)
    i, j = n, m
    if free_ends:
        ri, cj = int(np.argmax(h[:, m])), int(np.argmax(h[n]))
        i, j = (ri, m) if h[ri, m] >= h[n, cj] else (n, cj)
    state = int(np.argmax(t[:, i, j]))
    while i > 0 and j > 0:
        if state == 0:
            mapping[i - 1] = j - 1
            i, j = i - 1, j - 1
            state = int(np.argmax(t[:, i, j]))
        elif state == 1:
            stay = np.isclose(t[1, i, j], t[1, i - 1, j] + gap_extend)
            i -= 1
            state = 1 if stay else int(np.argmax(t[:, i, j]))
        else:
            stay = np.isclose(t[2, i, j], t[2, i, j - 1] + gap_extend)
            j -= 1
            state = 2 if stay else int(np.argmax(t[:2, i, j]))
    return mapping


def sequence_scores(a: str, b: str, match: float = 2.0, mismatch: float = -3.0) -> np.ndarray:
    """Substitution matrix [len(a), len(b)] of two nucleotide sequences."""
    ua = np.frombuffer(a.upper().encode(), dtype=np.uint8)
    ub = np.frombuffer(b.upper().encode(), dtype=np.uint8)
    return np.where(ua[:, None] == ub[None, :], match, mismatch)


def _tm_of_mapping(
    pred: np.ndarray, ref: np.ndarray, mapping: np.ndarray, lnorm: int, fragments: bool = True
) -> tuple[float, np.ndarray]:
    """TM-score of a correspondence ref[i] <-> pred[mapping[i]], and the pred coordinates superposed on ref."""
    idx = np.flatnonzero(mapping >= 0)
    if idx.size < 3:
        return 0.0, pred
    tm, rot, t = superpose_tm(pred[mapping[idx]], ref[idx], lnorm, fragments)
    return tm, pred @ rot.T + t


def _threading_mappings(n_ref: int, n_pred: int) -> list[np.ndarray]:
    """Gapless threadings of pred along ref that overlap at least half of the shorter chain."""
    need = max(3, min(n_ref, n_pred) // 2)
    out = []
    for shift in range(-n_pred + need, n_ref - need + 1):
        j = np.arange(n_ref) - shift
        out.append(np.where((j >= 0) & (j < n_pred), j, -1))
    return out


def tm_score_aligned(pred_coords: np.ndarray, pred_seq: str, ref_coords: np.ndarray, ref_seq: str) -> float:
    """Sequence-independent TM-score of a prediction against a reference, normalised by the resolved ref length."""
    pred_coords, ref_coords = np.asarray(pred_coords, dtype=float), np.asarray(ref_coords, dtype=float)
    keep_p, keep_r = np.isfinite(pred_coords).all(axis=1), np.isfinite(ref_coords).all(axis=1)
    pred, ref = pred_coords[keep_p], ref_coords[keep_r]
    pseq = "".join(c for c, k in zip(pred_seq, keep_p) if k)
    rseq = "".join(c for c, k in zip(ref_seq, keep_r) if k)
    lnorm = len(ref)
    if lnorm == 0 or len(pred) == 0:
        return float("nan")
    d0 = d0_rna(lnorm)
    threadings = _threading_mappings(len(ref), len(pred))
    quick = [_tm_of_mapping(pred, ref, m, lnorm, fragments=False)[0] for m in threadings]
    starts = [align(sequence_scores(rseq, pseq), gap_open=-5.0, gap_extend=-2.0)]
    starts += [threadings[k] for k in np.argsort(quick)[::-1][:_N_THREADINGS]]
    best = 0.0
    for start in starts:
        tm, moved = _tm_of_mapping(pred, ref, start, lnorm)
        best, mapping = max(best, tm), start
        for _ in range(_DP_ROUNDS):
            d2 = np.sum((ref[:, None] - moved[None]) ** 2, axis=-1)
            new = align(1.0 / (1.0 + d2 / (d0 * d0)), gap_open=_TM_GAP)
            if np.array_equal(new, mapping):
                break
            mapping = new
            tm, moved = _tm_of_mapping(pred, ref, mapping, lnorm)
            best = max(best, tm)
    return float(best)
