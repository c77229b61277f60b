"""Structure metrics on C1' traces: Kabsch superposition, RMSD, and the TM-score with RNA d0 as in US-align.

`tm_score` is the sequence-dependent TM-score (residue i of the prediction is residue i of the reference). Its
superposition search follows TM-score: seed fragments of length L, L/2, L/4 ... (at least 4), then repeated
superposition on the pairs within d0_search; the best score over every superposition tried is the TM-score.
"""

from __future__ import annotations

import numpy as np

from rna_hpc.geometry import best_rotations

_N_ITER = 20  # superposition refinements per seed
_MAX_SEEDS = 256  # seed fragments per length, spread evenly along the chain


def d0_rna(length: int) -> float:
    """US-align's d0 for RNA (C1'/C3' traces) normalised by `length` residues."""
    if length < 12:
        return 0.3
    if length < 16:
        return 0.4
    if length < 20:
        return 0.5
    if length < 24:
        return 0.6
    if length < 30:
        return 0.7
    return 0.6 * np.sqrt(length - 0.5) - 2.5


def d0_search(d0: float) -> float:
    """Distance cut-off of the superposition search: d0 clipped to [4.5, 8] A."""
    return float(np.clip(d0, 4.5, 8.0))


def _kabsch_batch(p: np.ndarray, q: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Kabsch for B weightings of the same point sets: p, q [N, 3], w [B, N] -> R [B, 3, 3], t [B, 3]."""
    w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    pc, qc = w @ p, w @ q
    outer = (p[:, :, None] * q[:, None, :]).reshape(len(p), 9)
    h = (w @ outer).reshape(-1, 3, 3) - pc[:, :, None] * qc[:, None, :]
    rot = best_rotations(h).transpose(0, 2, 1)  # applied to column vectors
    return rot, qc - np.einsum("bij,bj->bi", rot, pc)


def _both_resolved(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    ok = np.isfinite(pred).all(axis=-1) & np.isfinite(ref).all(axis=-1)
    return ok if mask is None else ok & np.asarray(mask, dtype=bool)


def kabsch(p: np.ndarray, q: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rotation R [3, 3] and translation t [3] minimising |p @ R.T + t - q| over `mask` (default: finite rows)."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    m = _both_resolved(p, q, mask)
    if m.sum() == 0:
        return np.eye(3), np.zeros(3)
    rot, t = _kabsch_batch(p[m], q[m], np.ones((1, int(m.sum()))))
    return rot[0], t[0]


def rmsd(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    """RMSD after optimal superposition over the residues resolved in both (and in `mask`); NaN if none."""
    pred, ref = np.asarray(pred, dtype=float), np.asarray(ref, dtype=float)
    m = _both_resolved(pred, ref, mask)
    if m.sum() == 0:
        return float("nan")
    rot, t = kabsch(pred[m], ref[m])
    return float(np.sqrt(np.mean(np.sum((pred[m] @ rot.T + t - ref[m]) ** 2, axis=1))))


def _seed_weights(n: int) -> np.ndarray:
    """One row per seed fragment: lengths n, n/2, n/4 ... down to 4, every start position (capped)."""
    lmin = min(4, n)
    rows, frag = [], n
    while True:
        frag = max(frag, lmin)
        starts = np.unique(np.linspace(0, n - frag, min(n - frag + 1, _MAX_SEEDS)).round().astype(int))
        idx = np.arange(n)
        rows.append((idx[None] >= starts[:, None]) & (idx[None] < starts[:, None] + frag))
        if frag <= lmin or len(rows) == 6:
            break
        frag //= 2
    return np.concatenate(rows).astype(float)


def _within(d2: np.ndarray, cut: float) -> np.ndarray:
    """Pairs within `cut` per row, the cut relaxed by 0.5 A steps until at least 3 (as TM-score does)."""
    sel = d2 < cut * cut
    n = d2.shape[1]
    for _ in range(100):
        few = sel.sum(axis=1) < min(3, n)
        if not few.any():
            break
        cut += 0.5
        sel[few] = d2[few] < cut * cut
    return sel


def superpose_tm(
    pred: np.ndarray, ref: np.ndarray, lnorm: int, fragments: bool = True
) -> tuple[float, np.ndarray, np.ndarray]:
    """TM-score search over matched points pred[i] <-> ref[i] (all finite): (score, R, t) of the best superposition.

    `fragments=False` seeds only from the superposition of all points (a quick estimate).
    """
    n = len(pred)
    if n == 0 or lnorm == 0:
        return 0.0, np.eye(3), np.zeros(3)
    d0 = d0_rna(lnorm)
    search = d0_search(d0)
    w = _seed_weights(n) if fragments else np.ones((1, n))
    best, best_rt = -1.0, (np.eye(3), np.zeros(3))
    cut = search - 1.0
    for _ in range(_N_ITER + 1):
        rot, t = _kabsch_batch(pred, ref, w)
        moved = np.einsum("bij,nj->bni", rot, pred) + t[:, None]
        d2 = np.sum((moved - ref[None]) ** 2, axis=-1)
        scores = np.sum(1.0 / (1.0 + d2 / (d0 * d0)), axis=1) / lnorm
        k = int(np.argmax(scores))
        if scores[k] > best:
            best, best_rt = float(scores[k]), (rot[k], t[k])
        new_w = _within(d2, cut)
        moving = ~np.all(new_w == (w > 0), axis=1)  # converged seeds stop
        if not moving.any():
            break
        w, cut = np.unique(new_w[moving], axis=0).astype(float), search + 1.0
    return best, best_rt[0], best_rt[1]


def tm_score(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Sequence-dependent TM-score of `pred` vs `ref` [L, 3] (NaN = missing), normalised by the resolved ref length."""
    pred, ref = np.asarray(pred, dtype=float), np.asarray(ref, dtype=float)
    if pred.shape != ref.shape:
        raise ValueError(f"tm_score: prediction shape {pred.shape} differs from reference shape {ref.shape}")
    resolved = np.isfinite(ref).all(axis=-1)
    if mask is not None:
        resolved &= np.asarray(mask, dtype=bool)
    lnorm = int(resolved.sum())
    m = _both_resolved(pred, ref, resolved)
    if lnorm == 0:
        return float("nan")
    return superpose_tm(pred[m], ref[m], lnorm)[0]


def _per_pair(preds: np.ndarray, refs: np.ndarray, fn) -> np.ndarray:
    preds, refs = np.asarray(preds, dtype=float), np.asarray(refs, dtype=float)
    if preds.ndim == 2:
        preds = preds[None]
    if refs.ndim == 2:
        refs = refs[None]
    refs = [r for r in refs if np.isfinite(r).all(axis=-1).any()]
    unique: dict[bytes, list[float]] = {}
    for p in preds:
        if p.tobytes() not in unique:
            unique[p.tobytes()] = [fn(p, r) for r in refs]
    return np.array([unique[p.tobytes()] for p in preds]).reshape(len(preds), len(refs))


def best_tm(preds: np.ndarray, refs: np.ndarray) -> float:
    """Best TM-score over samples [S, L, 3] and reference structures [K, L, 3] (NaN = missing); NaN if no reference."""
    scores = _per_pair(preds, refs, tm_score)
    return float(np.nanmax(scores)) if scores.size and np.isfinite(scores).any() else float("nan")


def best_rmsd(preds: np.ndarray, refs: np.ndarray) -> float:
    """Lowest RMSD over samples [S, L, 3] and reference structures [K, L, 3]; NaN if no reference."""
    scores = _per_pair(preds, refs, rmsd)
    return float(np.nanmin(scores)) if scores.size and np.isfinite(scores).any() else float("nan")
