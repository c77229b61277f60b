"""Stage A features from ViennaRNA: base-pair probabilities, the MFE indicator, the process pool."""

from __future__ import annotations

import numpy as np
import pytest

from rna_hpc.config.schema import FeaturizerConfig
from rna_hpc.data.features import featurize_all, mfe_pairs, sampled_pairs, stage_a_features
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


CPEB3 = "GGGGGCCACAGCAGAAGCGUUCACGUCGCAGCCCCUGUCAGCCAUUGCACUCCGGCUGCGAAUUCUGCU"  # R1107 of the val split
CANONICAL = {"AU", "UA", "GC", "CG", "GU", "UG"}


def test_boltzmann_sampled_pairings_are_valid_and_differ() -> None:
    drawn = sampled_pairs(CPEB3, 4, seed=7)
    mfe = mfe_pairs(CPEB3)
    assert len(drawn) == 4
    for partners in drawn:
        paired = np.flatnonzero(partners >= 0)
        assert paired.size > 0 and (partners[partners[paired]] == paired).all()  # symmetric
        assert all(CPEB3[i] + CPEB3[partners[i]] in CANONICAL for i in paired)
        assert all(abs(int(partners[i]) - int(i)) > 3 for i in paired)  # hairpins of at least 3
        pairs = [(i, int(partners[i])) for i in paired if i < partners[i]]
        assert not any(i < k < j < m for i, j in pairs for k, m in pairs)  # nested: no pseudoknots
    keys = {p.tobytes() for p in drawn}
    assert len(keys) == 4 and mfe.tobytes() not in keys  # distinct from each other and from the MFE structure
    assert all(np.array_equal(a, b) for a, b in zip(drawn, sampled_pairs(CPEB3, 4, seed=7), strict=True))
    assert sampled_pairs("AAAAAAAAAA", 5) == []  # nothing can pair: the ensemble holds only the open chain


def test_boltzmann_ss_samples_differ_in_pairing() -> None:
    from rna_hpc.evaluation.baselines import BaselineContext, ss_baseline, ss_pairs

    contexts = [BaselineContext(sample=k, ensemble="boltzmann") for k in range(5)]
    pairings = [ss_pairs(CPEB3, c) for c in contexts]
    assert np.array_equal(pairings[0], mfe_pairs(CPEB3))  # the first is the MFE model
    assert len({p.tobytes() for p in pairings}) == 5
    tilted = [ss_pairs(CPEB3, BaselineContext(sample=k)) for k in range(5)]
    assert len({p.tobytes() for p in tilted}) == 1  # the tilt ensemble keeps the MFE pairs
    coords = [ss_baseline(CPEB3, c) for c in contexts]
    assert all(x.shape == (len(CPEB3), 3) and np.isfinite(x).all() for x in coords)
