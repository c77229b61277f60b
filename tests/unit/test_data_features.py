"""Stage A features from ViennaRNA: base-pair probabilities, the MFE indicator, the process pool."""

from __future__ import annotations

import numpy as np
import pytest

from rna_hpc.config.schema import FeaturizerConfig
from rna_hpc.data.features import featurize_all, mfe_pairs, stage_a_features
from rna_hpc.errors import ConfigError

HAIRPIN = "GGGGAAACCCC"


def test_stage_a_features_are_symmetric_probabilities() -> None:
    f = stage_a_features("GGGCGCAAGCCNUAGCGCCC", FeaturizerConfig())
    assert f.shape == (20, 20, 2) and f.dtype == np.float32
    assert np.allclose(f, f.transpose(1, 0, 2)) and f.min() >= 0 and f.max() <= 1 + 1e-6
    assert (f[:, :, 0].sum(axis=1) <= 1 + 1e-5).all()  # each residue pairs with probability <= 1
    assert f[11].sum() == 0 and f[:, 11].sum() == 0  # N is masked out of pair features


def test_mfe_indicator_matches_mfe_pairs() -> None:
    pairs = mfe_pairs(HAIRPIN, 37.0)
    assert pairs.tolist() == [10, 9, 8, 7, -1, -1, -1, 3, 2, 1, 0]
    f = stage_a_features(HAIRPIN, FeaturizerConfig(use_bpp=False))
    assert [int(np.argmax(row)) if row.any() else -1 for row in f[:, :, 1]] == pairs.tolist()
    assert np.array_equal(f[..., 0], f[..., 1])  # use_bpp=false: MFE pairs in both channels


def test_pool_matches_serial() -> None:
    seqs = [HAIRPIN, "GCGCUUCGGCGC", "ACGUACGU"]
    serial = featurize_all(seqs, FeaturizerConfig(workers=1))
    pooled = featurize_all(seqs, FeaturizerConfig(workers=2))
    assert all(np.array_equal(a, b) for a, b in zip(serial, pooled, strict=True))


def test_unknown_featurizer_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="data.featurizer.name: unknown featurizer 'esm'"):
        stage_a_features(HAIRPIN, FeaturizerConfig(name="esm"))
