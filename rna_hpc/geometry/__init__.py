"""Ideal C1' geometry (numpy only), shared by the synthetic data set, the model's priors and the evaluation baselines.

`aform`: the A-form helix and duplex; `layout`: a secondary structure laid out in 3D; `superposition`: the rotation
of a least-squares fit. Import from here.
"""

from __future__ import annotations

from rna_hpc.geometry.aform import HELIX_RADIUS, PAIR_DISTANCE, RISE, TWIST_DEG, aform_duplex, aform_helix
from rna_hpc.geometry.layout import (
    CLASH_DISTANCE,
    LOOP_STEP,
    check_pairs,
    compact,
    native_radius,
    relax_clashes,
    ss_model_coords,
    stems_from_pairs,
)
from rna_hpc.geometry.superposition import best_rotations

__all__ = [
    "CLASH_DISTANCE",
    "HELIX_RADIUS",
    "LOOP_STEP",
    "PAIR_DISTANCE",
    "RISE",
    "TWIST_DEG",
    "aform_duplex",
    "aform_helix",
    "best_rotations",
    "check_pairs",
    "compact",
    "native_radius",
    "relax_clashes",
    "ss_model_coords",
    "stems_from_pairs",
]
