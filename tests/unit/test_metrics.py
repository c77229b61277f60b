"""Kabsch, RMSD and TM-score: hand-checked cases on a real C1' trace."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rna_hpc.evaluation.alignment import align, sequence_scores, tm_score_aligned
from rna_hpc.evaluation.metrics import best_rmsd, best_tm, d0_rna, d0_search, kabsch, rmsd, tm_score
from rna_hpc.evaluation.structure_io import read_coordinate_csv


@pytest.fixture(scope="module")
def r1107(rna3d_dir: Path) -> tuple[str, np.ndarray]:
    seq, refs = read_coordinate_csv(rna3d_dir / "val_labels.csv")["R1107"]
    return seq, refs[0]


def _rotation(seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def _tm_by_hand(distances: np.ndarray, lnorm: int) -> float:
    return float(np.sum(1.0 / (1.0 + (distances / d0_rna(lnorm)) ** 2)) / lnorm)


@pytest.mark.parametrize(
    ("length", "d0"),
    [(5, 0.3), (11, 0.3), (12, 0.4), (15, 0.4), (16, 0.5), (19, 0.5), (20, 0.6), (23, 0.6), (24, 0.7), (29, 0.7)],
)
def test_d0_table(length: int, d0: float) -> None:
    assert d0_rna(length) == d0


def test_d0_formula_and_search_cutoff() -> None:
    assert d0_rna(30) == pytest.approx(0.6 * np.sqrt(29.5) - 2.5)
    assert d0_rna(69) == pytest.approx(2.4658, abs=1e-4)
    assert d0_search(d0_rna(20)) == 4.5 and d0_search(d0_rna(1000)) == 8.0


def test_identical_and_rigidly_moved_copies_score_one(r1107: tuple[str, np.ndarray]) -> None:
    _, ref = r1107
    assert tm_score(ref, ref) == pytest.approx(1.0)
    moved = ref @ _rotation(0).T + np.array([12.0, -40.0, 7.5])
    assert tm_score(moved, ref) == pytest.approx(1.0)
    assert rmsd(moved, ref) == pytest.approx(0.0, abs=1e-6)
    rot, t = kabsch(moved, ref)
    assert np.allclose(moved @ rot.T + t, ref, atol=1e-6)
    assert np.linalg.det(rot) == pytest.approx(1.0)


def test_kabsch_never_reflects(r1107: tuple[str, np.ndarray]) -> None:
    _, ref = r1107
    mirror = ref * np.array([-1.0, 1.0, 1.0])
    rot, _ = kabsch(mirror, ref)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    assert tm_score(mirror, ref) < 0.6


def test_rmsd_by_hand() -> None:
    ref = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    pred = np.array([[5.0, 5.0, 5.0], [5.0, 8.0, 5.0]])  # length 3 instead of 1: each end is 1 A off
    assert rmsd(pred, ref) == pytest.approx(1.0)


def test_displaced_segment_scores_as_computed_by_hand(r1107: tuple[str, np.ndarray]) -> None:
    _, ref = r1107
    pred = ref.copy()
    pred[50:60] += np.array([60.0, 0.0, 0.0])  # 10 of 69 residues moved far away
    distances = np.linalg.norm(pred - ref, axis=1)
    by_hand = _tm_by_hand(distances, len(ref))  # the other 59 superpose exactly
    assert by_hand == pytest.approx((59 + 10 / (1 + (60 / d0_rna(69)) ** 2)) / 69)
    assert by_hand - 1e-9 <= tm_score(pred, ref) <= by_hand + 1e-3


def test_half_shifted_short_chain_uses_table_d0(r1107: tuple[str, np.ndarray]) -> None:
    ref = r1107[1][:20]
    pred = ref.copy()
    pred[10:] += np.array([0.0, 20.0, 0.0])
    by_hand = (10 + 10 / (1 + (20 / 0.6) ** 2)) / 20  # d0(20) = 0.6
    assert tm_score(pred, ref) == pytest.approx(by_hand, abs=1e-4)


def test_a_single_global_superposition_would_underestimate(r1107: tuple[str, np.ndarray]) -> None:
    _, ref = r1107
    pred = ref.copy()
    pred[35:] = pred[35:] @ _rotation(1).T + 25.0  # two rigid halves, moved relative to each other
    rot, t = kabsch(pred, ref)
    global_only = _tm_by_hand(np.linalg.norm(pred @ rot.T + t - ref, axis=1), len(ref))
    assert tm_score(pred, ref) >= 35 / 69 - 1e-6
    assert tm_score(pred, ref) > global_only + 0.1


def test_missing_residues(r1107: tuple[str, np.ndarray]) -> None:
    _, ref = r1107
    ref_missing = ref.copy()
    ref_missing[:9] = np.nan
    assert tm_score(ref, ref_missing) == pytest.approx(1.0)  # normalised by the 60 resolved reference residues
    pred_missing = ref.copy()
    pred_missing[-9:] = np.nan
    assert tm_score(pred_missing, ref) == pytest.approx(60 / 69)
    assert np.isnan(tm_score(ref, np.full_like(ref, np.nan)))


def test_best_over_samples_and_references(r1107: tuple[str, np.ndarray]) -> None:
    _, ref = r1107
    noise = np.random.default_rng(0).normal(scale=8.0, size=(4,) + ref.shape)
    samples = np.concatenate([ref[None] + noise, ref[None] + 1.0])
    refs = np.stack([np.full_like(ref, np.nan), ref + noise[0], ref])
    assert best_tm(samples, refs) == pytest.approx(1.0)
    assert best_rmsd(samples, refs) == pytest.approx(0.0, abs=1e-6)
    assert best_tm(samples[:4], refs[2:]) < 0.9
    assert np.isnan(best_tm(samples, refs[:1]))


def test_affine_alignment_by_hand() -> None:
    assert align(sequence_scores("ACGUACGU", "CGUACG"), -5.0, -2.0).tolist() == [-1, 0, 1, 2, 3, 4, 5, -1]
    # one gap of 3 (-5 - 2 - 2) beats three mismatches (3 x -3) when the rest matches
    got = align(sequence_scores("AAACCCGGGAAAAAAAA", "AAAGGGAAAAAAAA"), -5.0, -2.0, free_ends=False)
    assert got.tolist() == [0, 1, 2, -1, -1, -1] + list(range(3, 14))


def test_sequence_independent_tm(r1107: tuple[str, np.ndarray]) -> None:
    seq, ref = r1107
    assert tm_score_aligned(ref, seq, ref, seq) == pytest.approx(1.0)
    scrambled = "".join(np.random.default_rng(0).choice(list("ACGU"), len(seq)))
    assert tm_score_aligned(ref, scrambled, ref, seq) == pytest.approx(1.0)  # found by threading
    assert tm_score_aligned(ref[10:], seq[10:], ref, seq) == pytest.approx(59 / 69)
