"""The rotation step of least-squares superposition (Kabsch), batched: shared by the TM-score search and the rigid
stems of the secondary-structure layout."""

from __future__ import annotations

import numpy as np


def best_rotations(h: np.ndarray) -> np.ndarray:
    """Proper rotations R [B, 3, 3] from covariances h = sum of p^T q [B, 3, 3] of centred point sets: ``p @ R`` fits
    ``q`` best in the least-squares sense, without reflection."""
    u, _, vt = np.linalg.svd(h)
    sign = np.sign(np.linalg.det(u @ vt))
    sign[sign == 0] = 1.0
    d = np.ones((len(h), 3))
    d[:, 2] = sign
    return (u * d[:, None, :]) @ vt
