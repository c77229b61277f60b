"""Ranking candidates by agreement, the diverse selection, and five ranked predictions for a real target."""

from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np
import pytest
import torch
from batches import random_chain

from rna_hpc.evaluation.ranking import consensus_scores, rank_candidates, similarity_matrix, source_of
from rna_hpc.geometry import aform_helix


def jitter(xyz: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    return xyz + rng.normal(scale=scale, size=xyz.shape)


def test_the_candidate_the_others_agree_with_is_most_confident() -> None:
    rng = np.random.default_rng(0)
    fold = random_chain(40, rng)
    pool = np.stack([jitter(fold, 0.3, rng), jitter(fold, 0.5, rng), jitter(fold, 0.7, rng), random_chain(40, rng)])
    sim = similarity_matrix(pool)
    assert np.allclose(sim, sim.T) and np.allclose(np.diag(sim), 1.0)
    assert sim[0, 1] > 0.5 > sim[0, 3]
    scores = consensus_scores(sim, ["a", "b", "c", "d"])
    assert int(np.argmin(scores)) == 3 and int(np.argmax(scores)) == 0


def test_each_source_counts_once_however_many_candidates_it_brings() -> None:
    rng = np.random.default_rng(1)
    crowd, loner = random_chain(40, rng), random_chain(40, rng)
    pool = np.stack([jitter(crowd, 0.5, rng) for _ in range(5)] + [jitter(loner, 0.5, rng), jitter(loner, 0.5, rng)])
    sources = ["model"] * 5 + ["ss_model", "template"]
    scores = consensus_scores(similarity_matrix(pool), sources)
    # the two sources that agree with each other outrank the five samples that only agree among themselves
    assert scores[5:].min() > scores[:5].max()


def test_selection_keeps_every_source_and_skips_near_copies() -> None:
    rng = np.random.default_rng(2)
    fold = random_chain(40, rng)
    model = [jitter(fold, 0.05, rng) for _ in range(5)]  # five near-identical samples
    others = [jitter(fold, 1.5, rng), random_chain(40, rng), aform_helix(40)]
    names = [f"model_{k}" for k in range(5)] + ["ss_model_0", "template_0", "helix_0"]
    ranked = rank_candidates(np.stack(model + others), names, keep=5)
    assert len(ranked.names) == 5 and ranked.coords.shape == (5, 40, 3)
    assert {"model", "ss_model", "template", "helix"} <= set(ranked.sources)
    assert sum(s == "model" for s in ranked.sources) == 2  # near-copies only to fill the fifth slot
    assert list(ranked.scores) == sorted(ranked.scores, reverse=True)
    for name, xyz in zip(ranked.names, ranked.coords, strict=True):
        assert np.array_equal(xyz, np.stack(model + others)[names.index(name)])


def test_a_small_pool_gives_what_it_has() -> None:
    rng = np.random.default_rng(3)
    pool = np.stack([random_chain(20, rng) for _ in range(2)])
    ranked = rank_candidates(pool, ["ss_model_0", "helix_0"], keep=5)
    assert sorted(ranked.names) == ["helix_0", "ss_model_0"]
    single = rank_candidates(pool[:1], ["ss_model_0"], keep=5)
    assert single.names == ["ss_model_0"] and single.scores.tolist() == [1.0]


def test_bad_calls_and_source_names() -> None:
    pool = np.zeros((2, 10, 3))
    with pytest.raises(ValueError, match="names"):
        rank_candidates(pool, ["a"], keep=1)
    with pytest.raises(ValueError, match="keep"):
        rank_candidates(pool, ["a", "b"], keep=0)
    assert source_of("model_3") == "model" and source_of("model_template_0") == "model_template"
    assert source_of("ss_model") == "ss_model" and source_of("template_12") == "template"


def test_five_ranked_predictions_for_a_real_target(rna3d_dir: Path, tmp_path: Path) -> None:
    from rna_hpc.data.datamodule import RNADataModule
    from rna_hpc.data.dataset import collate
    from rna_hpc.evaluation.references import load_templates
    from rna_hpc.evaluation.structure_io import read_sequences, write_pdb
    from rna_hpc.model.candidates import candidate_pools
    from rna_hpc.model.module import RNA3DModule
    from rna_hpc.model.template_prior import TemplatePrior

    seq = read_sequences(rna3d_dir / "val_sequences.csv")["7ELP_A"]
    items = RNADataModule(seed=0, format="kaggle", dir=str(rna3d_dir)).predict_samples([("7ELP_A", seq)])
    torch.manual_seed(0)
    tiny = {"trunk": {"c_s": 16, "c_z": 8, "n_blocks": 1, "n_heads": 2}, "merger": {"single_in": 20, "c_cond": 16}}
    module = RNA3DModule(model=tiny | {"generator": {"c_a": 16, "n_blocks": 1, "n_heads": 2, "n_steps": 3}}).eval()
    templates = TemplatePrior(load_templates(rna3d_dir), exclude_self=False)
    sources = ["model", "model_template", "ss_model", "template", "helix"]
    [pool] = candidate_pools(module, collate(items), sources, 5, templates, torch.Generator().manual_seed(0))
    assert set(pool.sources) == set(sources) and len(pool.coords) == 5 + 5 + 5 + 5 + 1
    by_name = dict(zip(pool.names, pool.coords, strict=True))
    for k in range(5):  # an untrained model returns its priors: sample k is variant k of the secondary-structure model
        np.testing.assert_allclose(by_name[f"model_{k}"], by_name[f"ss_model_{k}"], atol=1e-3)
    np.testing.assert_allclose(by_name["model_template_0"], by_name["template_0"], atol=1e-3)
    ranked = rank_candidates(np.stack(pool.coords), pool.names, 5, pool.sources)
    assert ranked.coords.shape == (5, len(seq), 3) and np.isfinite(ranked.coords).all()
    assert "ss_model" in ranked.sources and "template" in ranked.sources
    path = tmp_path / "7ELP_A.pdb"
    write_pdb(path, "7ELP_A", seq, ranked.coords)
    structure = gemmi.read_structure(str(path))
    assert len(structure) == 5 and all(len(m[0]) == len(seq) for m in structure)
