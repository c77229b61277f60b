"""Baselines: helix, secondary structure, and template transfer with a real template index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rna_hpc.evaluation.baselines import (
    BASELINES,
    BaselineContext,
    baseline_samples,
    helix_baseline,
    ss_baseline,
    template_baseline,
)
from rna_hpc.evaluation.metrics import tm_score
from rna_hpc.evaluation.structure_io import read_coordinate_csv
from rna_hpc.evaluation.templates import TemplateIndex, fill_gaps
from rna_hpc.geometry import LOOP_STEP, aform_helix


@pytest.fixture(scope="module")
def val(rna3d_dir: Path) -> dict[str, tuple[str, np.ndarray]]:
    return read_coordinate_csv(rna3d_dir / "val_labels.csv")


@pytest.fixture(scope="module")
def index(val: dict[str, tuple[str, np.ndarray]]) -> TemplateIndex:
    return TemplateIndex.build([(tid, seq, refs[0]) for tid, (seq, refs) in val.items()])


def test_helix_and_ss_baselines(val: dict[str, tuple[str, np.ndarray]]) -> None:
    seq = val["6E8U_B"][0]
    assert np.allclose(helix_baseline(seq, BaselineContext()), aform_helix(len(seq)))
    samples = baseline_samples(ss_baseline, seq, BaselineContext(target_id="6E8U_B"), n=5)
    assert samples.shape == (5, len(seq), 3) and np.isfinite(samples).all()
    assert np.array_equal(samples[0], ss_baseline(seq, BaselineContext()))  # sample 0 is deterministic
    assert not np.allclose(samples[0], samples[1])
    assert set(BASELINES) == {"helix", "ss", "template"}


def test_template_of_a_chain_against_itself_scores_one(val: dict, index: TemplateIndex) -> None:
    seq, refs = val["R1107"]
    hits = index.search(seq, k=3)
    assert hits[0].target_id == "R1107" and hits[0].identity == 1.0 and hits[0].coverage == 1.0
    model = index.predict(seq, n=1)[0]
    assert tm_score(model, refs[0]) == pytest.approx(1.0)


def test_the_query_itself_is_excluded(val: dict, index: TemplateIndex) -> None:
    seq, refs = val["R1107"]
    hits = index.search(seq, k=5, exclude_id="R1107")
    assert hits and all(h.target_id != "R1107" for h in hits)
    assert hits[0].target_id == "R1108"  # the chimpanzee CPEB3 ribozyme, one substitution away
    model = template_baseline(seq, BaselineContext(target_id="R1107", templates=index))
    assert model.shape == (len(seq), 3) and np.isfinite(model).all()
    assert tm_score(model, refs[0]) > 0.5


def test_a_subsequence_copies_the_matching_region(val: dict, index: TemplateIndex) -> None:
    seq, refs = val["R1128"]
    part = seq[40:120]
    hit = index.search(part, k=1)[0]
    assert hit.target_id == "R1128"
    assert hit.mapping.tolist() == list(range(40, 120))
    model = index.predict(part, n=1)[0]
    assert np.allclose(model, refs[0][40:120], equal_nan=True)


def test_template_baseline_falls_back_without_hits() -> None:
    empty = TemplateIndex.build([])
    seq = "GGGGAAACCCCAUAUAU"
    model = template_baseline(seq, BaselineContext(templates=empty))
    assert np.allclose(model, ss_baseline(seq, BaselineContext()))


def test_fill_gaps_bridges_and_extends(val: dict) -> None:
    ref = val["R1107"][1][0]
    holey = ref.copy()
    holey[:3] = np.nan
    holey[30:36] = np.nan
    holey[-4:] = np.nan
    filled = fill_gaps(holey)
    assert np.isfinite(filled).all()
    known = np.isfinite(holey).all(axis=1)
    assert np.array_equal(filled[known], holey[known])
    steps = np.linalg.norm(np.diff(filled, axis=0), axis=1)
    assert np.allclose(steps[:3], LOOP_STEP) and np.allclose(steps[-4:], LOOP_STEP)
    assert steps[29:36].max() < 2 * LOOP_STEP
    assert np.allclose(fill_gaps(np.full((7, 3), np.nan)), aform_helix(7))


def test_fill_gaps_from_a_prior_model(val: dict) -> None:
    ref = val["R1107"][1][0]
    holey = ref.copy()
    holey[:10] = np.nan
    holey[30:40] = np.nan
    moved_ref = ref @ np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]).T + 50.0
    filled = fill_gaps(holey, prior=moved_ref)  # the prior is the true structure in another frame
    assert np.allclose(filled, ref, atol=1e-6)
