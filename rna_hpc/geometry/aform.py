"""The ideal A-form helix of C1' atoms: one strand (`aform_helix`) and a duplex of paired strands (`aform_duplex`)."""

from __future__ import annotations

import numpy as np

RISE = 2.81  # A-form rise per base pair along the axis (A)
TWIST_DEG = 32.7  # A-form twist per base pair (degrees)
HELIX_RADIUS = 8.7  # radius of the C1' cylinder: consecutive C1'-C1' ~5.65 A
PAIR_DISTANCE = 10.4  # C1'-C1' distance across a Watson-Crick pair


def aform_helix(n: int) -> np.ndarray:
    """C1' trace of one strand of an ideal A-form helix along z, centred at the origin: [n, 3]."""
    k = np.arange(n, dtype=float)
    t = np.deg2rad(TWIST_DEG) * k
    xyz = np.stack([HELIX_RADIUS * np.cos(t), HELIX_RADIUS * np.sin(t), RISE * k], axis=1)
    return xyz - xyz.mean(axis=0) if n else xyz


def _pair_angle() -> float:
    """Azimuth between the two C1' atoms of a pair on the helix cylinder (same height)."""
    return 2.0 * np.arcsin(PAIR_DISTANCE / (2.0 * HELIX_RADIUS))


def aform_duplex(n_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """Local A-form duplex: 5' strand [n,3] and, row for row, its partners on the 3' strand."""
    k = np.arange(n_pairs, dtype=float)
    t = np.deg2rad(TWIST_DEG) * k
    z = RISE * k
    five = np.stack([HELIX_RADIUS * np.cos(t), HELIX_RADIUS * np.sin(t), z], axis=1)
    t2 = t + _pair_angle()
    three = np.stack([HELIX_RADIUS * np.cos(t2), HELIX_RADIUS * np.sin(t2), z], axis=1)
    return five, three
