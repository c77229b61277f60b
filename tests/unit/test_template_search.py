"""Structure-aware template search on real tRNAs: family members at low identity are found by their stems."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rna_hpc.evaluation.metrics import tm_score
from rna_hpc.evaluation.references import load_templates
from rna_hpc.evaluation.structure_search import observed_pairs, pair_agreement, predicted_pairs
from rna_hpc.evaluation.templates import TemplateIndex
from rna_hpc.model.template_prior import TemplatePrior


@pytest.fixture(scope="module")
def index(rna3d_dir: Path) -> TemplateIndex:
    return load_templates(rna3d_dir)  # the 550 training chains


def _entry(index: TemplateIndex, target_id: str):  # noqa: ANN202 - the index's entry
    return next(e for e in index.entries if e.target_id == target_id)


def test_the_cloverleaf_is_read_from_a_trna_trace(index: TemplateIndex) -> None:
    trna = _entry(index, "9ENC_D")  # tRNA-Gln, 75 nt
    observed = observed_pairs(trna.sequence, trna.coords)
    predicted = np.array(predicted_pairs(trna.sequence))
    n_pairs = int(np.sum(observed > np.arange(len(observed))))
    assert 18 <= n_pairs <= 24  # acceptor 7 + D 3-4 + anticodon 5 + T 5
    paired = np.flatnonzero(observed >= 0)
    assert np.array_equal(observed[observed[paired]], paired)  # each pair is recorded from both ends
    identity = np.arange(len(trna.sequence))
    assert pair_agreement(identity, predicted, observed) > 0.8  # ViennaRNA folds this one as a cloverleaf


# (query, the TM-score the sequence search's best hit reaches at most): tRNAs whose best sequence hit is no tRNA
# (9ENC_D: k-mer pre-filtering passes over every tRNA) or a tRNA aligned poorly (6AH3_T)
@pytest.mark.parametrize(("target_id", "sequence_tm_below"), [("9ENC_D", 0.2), ("6AH3_T", 0.25)])
def test_structure_search_finds_a_family_member_sequence_search_misses(
    index: TemplateIndex, target_id: str, sequence_tm_below: float
) -> None:
    query = _entry(index, target_id)
    by_sequence = index.search(query.sequence, 1, exclude_id=target_id)[0]
    by_structure = index.search(query.sequence, 1, exclude_id=target_id, mode="structure")[0]
    [seq_model] = index.predict(query.sequence, 1, exclude_id=target_id)
    [struct_model] = index.predict(query.sequence, 1, exclude_id=target_id, mode="structure")
    seq_tm, struct_tm = tm_score(seq_model, query.coords), tm_score(struct_model, query.coords)
    assert by_structure.target_id != by_sequence.target_id
    assert by_structure.identity < 0.6  # a remote family member, not a near-copy
    assert seq_tm < sequence_tm_below and struct_tm > 0.45 and struct_tm > seq_tm + 0.2


def test_template_prior_searches_as_configured(index: TemplateIndex) -> None:
    query = _entry(index, "9ENC_D")
    structure = TemplatePrior(index, exclude_self=True, search="structure")
    hit = structure.best_hit("9ENC_D", query.sequence)
    assert hit is not None and hit.target_id == index.search(query.sequence, 1, "9ENC_D", "structure")[0].target_id
    assert tm_score(structure.chain("9ENC_D", query.sequence), query.coords) > 0.45
    assert len(structure.models(query.sequence, 3)) == 3
    with pytest.raises(ValueError, match="template search 'fold' is not one of sequence, structure"):
        TemplatePrior(index, search="fold")
    with pytest.raises(ValueError, match="template search"):
        index.search(query.sequence, 1, mode="fold")


@pytest.mark.parametrize("n_templates", [1, 4])
def test_the_samples_of_a_template_prior_model_refine_template_hits_and_ss_variants_in_turn(
    index: TemplateIndex, rna3d_dir: Path, n_templates: int
) -> None:
    """Like the secondary-structure variants, the samples of a template-prior model start from different folds:
    an untrained model returns its priors, so its samples are template and ss candidates, in turn."""
    import torch

    from rna_hpc.data.datamodule import RNADataModule
    from rna_hpc.data.dataset import collate
    from rna_hpc.model.candidates import candidate_pools
    from rna_hpc.model.module import RNA3DModule

    query = _entry(index, "9ENC_D")
    near = sorted((e for e in index.entries if e is not query), key=lambda e: abs(len(e.sequence) - 75))[:n_templates]
    templates = TemplatePrior(TemplateIndex.build([(e.target_id, e.sequence, e.coords) for e in near]), False)
    items = RNADataModule(seed=0, format="kaggle", dir=str(rna3d_dir)).predict_samples([("q", query.sequence)])
    torch.manual_seed(0)
    trunk = {"c_s": 16, "c_z": 8, "n_blocks": 1, "n_heads": 2}
    generator = {"c_a": 16, "n_blocks": 1, "n_heads": 2, "n_steps": 3, "prior": "template"}
    module = RNA3DModule(model={"trunk": trunk, "merger": {"single_in": 20, "c_cond": 16}, "generator": generator})
    module.net.attach_templates(templates)
    sources = ["model", "template", "ss_model"]
    [pool] = candidate_pools(module.eval(), collate(items), sources, 5, templates, torch.Generator().manual_seed(0))
    got = dict(zip(pool.names, pool.coords, strict=True))
    assert pool.sources.count("template") == n_templates and pool.sources.count("model") == 5
    expected = {
        1: ["template_0", "ss_model_0", "ss_model_1", "ss_model_2", "ss_model_3"],
        4: ["template_0", "ss_model_0", "template_1", "ss_model_1", "template_2"],
    }[n_templates]
    for k, name in enumerate(expected):
        np.testing.assert_allclose(got[f"model_{k}"], got[name], atol=1e-3, err_msg=f"model_{k} is not {name}")
