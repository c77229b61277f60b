"""The embedded smoke dataset: random sequences, their ViennaRNA MFE structure, a 3D model of it plus noise.

Deterministic from ``SyntheticConfig.seed``; generated on first use into the cache (no network, no files).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rna_hpc.data.features import mfe_pairs
from rna_hpc.data.targets import Target
from rna_hpc.errors import ConfigError

SYNTHETIC_VERSION = "2"  # part of the cache key: bump when the generator changes its output
NOISE_SIGMA = 0.3  # Angstrom of Gaussian noise on every C1' coordinate
GC_CONTENT = 0.55  # a little GC-rich so most sequences fold into stems


def check_synthetic(cfg: Any) -> None:
    """ConfigError naming every inconsistent ``data.synthetic`` field."""
    problems = []
    if int(cfg.n_targets) < 2:
        problems.append(f"data.synthetic.n_targets: {cfg.n_targets} is too few (at least 2: one train, one val)")
    if int(cfg.min_length) < 1:
        problems.append(f"data.synthetic.min_length: {cfg.min_length} must be at least 1")
    if int(cfg.max_length) < int(cfg.min_length):
        problems.append(f"data.synthetic.max_length: {cfg.max_length} is below min_length {cfg.min_length}")
    if problems:
        raise ConfigError(problems)


def random_sequence(rng: np.random.Generator, length: int) -> str:
    gc, au = GC_CONTENT / 2, (1 - GC_CONTENT) / 2
    return "".join(rng.choice(list("ACGU"), size=length, p=[au, gc, gc, au]))


def generate_synthetic(cfg: Any, temperature: float = 37.0) -> list[Target]:
    """``cfg.n_targets`` targets ``syn_0000``...: lengths uniform in [min_length, max_length]."""
    from rna_hpc.geometry import ss_model_coords

    check_synthetic(cfg)
    rng = np.random.default_rng(int(cfg.seed))
    targets = []
    for i in range(int(cfg.n_targets)):
        length = int(rng.integers(int(cfg.min_length), int(cfg.max_length) + 1))
        seq = random_sequence(rng, length)
        layout_rng = np.random.default_rng(int(rng.integers(2**63)))
        xyz = ss_model_coords(seq, mfe_pairs(seq, temperature), rng=layout_rng)
        xyz = xyz + rng.normal(0.0, NOISE_SIGMA, size=xyz.shape)
        targets.append(Target(f"syn_{i:04d}", seq, xyz[None].astype(np.float32), None, "synthetic"))
    return targets
