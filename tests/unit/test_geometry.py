"""Ideal A-form helix and the secondary-structure 3D model, on real sequences."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from rna_hpc.data.features import dot_bracket_partners, mfe_pairs
from rna_hpc.errors import InputError
from rna_hpc.evaluation.references import load_references
from rna_hpc.geometry import (
    PAIR_DISTANCE,
    aform_helix,
    best_rotations,
    check_pairs,
    compact,
    native_radius,
    ss_model_coords,
    stems_from_pairs,
)


def _val_sequences(rna3d_dir: Path, n: int) -> list[str]:
    with (rna3d_dir / "val_sequences.csv").open(newline="") as fh:
        seqs = sorted((row["sequence"] for row in csv.DictReader(fh)), key=len)
    return seqs[:n] + seqs[-1:]  # the shortest few and the longest


def _steps(xyz: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.diff(xyz, axis=0), axis=1)


def _min_nonneighbour_distance(xyz: np.ndarray) -> float:
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    return float(d[np.triu_indices(len(xyz), 2)].min())


def test_aform_helix_geometry() -> None:
    xyz = aform_helix(30)
    assert xyz.shape == (30, 3)
    steps = _steps(xyz)
    assert np.all((steps > 5.5) & (steps < 5.9))
    assert np.allclose(steps, steps[0])
    assert np.allclose(xyz.mean(axis=0), 0.0)
    # one helical turn of A-form RNA is ~11 residues and ~31 A along the axis
    assert 29.0 < np.linalg.norm(xyz[11] - xyz[0]) < 33.0


def test_ss_model_geometry_on_real_sequences(rna3d_dir: Path) -> None:
    for seq in _val_sequences(rna3d_dir, 3):
        pairs = mfe_pairs(seq)
        xyz = ss_model_coords(seq, pairs)
        assert xyz.shape == (len(seq), 3) and np.isfinite(xyz).all()
        steps = _steps(xyz)
        assert 5.5 <= np.median(steps) <= 5.9 and steps.min() > 5.2 and steps.max() < 6.2, seq
        i = np.flatnonzero(pairs > np.arange(len(seq)))
        assert i.size > 0
        paired = np.linalg.norm(xyz[i] - xyz[pairs[i]], axis=1)
        assert np.all(np.abs(paired - PAIR_DISTANCE) < 0.6), seq
        assert _min_nonneighbour_distance(xyz) > 3.0, seq


def test_ss_model_deterministic_without_rng_and_varied_with_one(rna3d_dir: Path) -> None:
    seq = _val_sequences(rna3d_dir, 1)[0]
    pairs = mfe_pairs(seq)
    a, b = ss_model_coords(seq, pairs), ss_model_coords(seq, pairs)
    assert np.array_equal(a, b)
    c = ss_model_coords(seq, pairs, np.random.default_rng(3))
    assert not np.allclose(a, c)
    i = np.flatnonzero(pairs > np.arange(len(seq)))
    assert np.all(np.abs(np.linalg.norm(c[i] - c[pairs[i]], axis=1) - PAIR_DISTANCE) < 0.6)
    assert _min_nonneighbour_distance(c) > 3.0


def test_hairpin_stem_is_an_aform_duplex() -> None:
    seq = "GGGGCGAAAGCCCC"
    pairs = dot_bracket_partners("((((((..))))))")
    xyz = ss_model_coords(seq, pairs)
    strand = xyz[:6]
    assert np.allclose(_steps(strand), _steps(aform_helix(6)), atol=1e-6)
    assert np.allclose(np.linalg.norm(xyz[:6] - xyz[::-1][:6], axis=1), PAIR_DISTANCE, atol=1e-6)


def test_unpaired_chain_is_a_helix_and_pseudoknots_are_dropped() -> None:
    assert np.allclose(ss_model_coords("ACGUACGUAC", np.full(10, -1)), aform_helix(10))
    # stems (0-2 with 9-7) and (4-5 with 13-12) cross: the shorter one is dropped
    pairs = np.full(16, -1)
    for i, j in [(0, 9), (1, 8), (2, 7), (4, 13), (5, 12)]:
        pairs[i], pairs[j] = j, i
    assert stems_from_pairs(pairs) == [(0, 9, 3)]
    xyz = ss_model_coords("G" * 16, pairs)
    assert np.isfinite(xyz).all() and _min_nonneighbour_distance(xyz) > 3.0


def test_bad_pairs_are_input_errors() -> None:
    with pytest.raises(InputError, match="differs from the sequence length"):
        check_pairs(np.full(5, -1), 6)
    with pytest.raises(InputError, match="does not pair back"):
        check_pairs(np.array([2, -1, -1]), 3)
    with pytest.raises(InputError, match="invalid partner"):
        check_pairs(np.array([7, -1, -1]), 3)


def _radius(xyz: np.ndarray) -> float:
    xyz = xyz[np.isfinite(xyz).all(axis=1)]
    return float(np.sqrt(((xyz - xyz.mean(axis=0)) ** 2).sum(axis=1).mean()))


def test_ss_model_is_as_compact_as_real_chains(rna3d_dir: Path) -> None:
    """Laid out flat, loops as circles, the model is about 1.4 times wider than the validation chains; compacted, its
    radius of gyration is within 15 % of theirs."""
    refs = load_references(rna3d_dir / "val_labels.csv")
    ratios = [_radius(ss_model_coords(seq, mfe_pairs(seq))) / _radius(xyz[0]) for seq, xyz in refs.values()]
    assert 0.85 < np.median(ratios) < 1.15
    assert native_radius(100) == pytest.approx(29.2, abs=0.5)


def test_compact_keeps_stems_rigid_and_chain_steps() -> None:
    """Two hairpins on a long linker fold towards each other; each stem keeps its shape exactly, steps stay steps."""
    pairs = dot_bracket_partners("((((((....))))))" + "." * 30 + "((((((....))))))")
    stems = stems_from_pairs(pairs)
    xyz = aform_helix(len(pairs))  # one A-form strand: far wider than a folded 62-nt chain
    out = compact(xyz, stems)
    assert _radius(out) < 0.6 * _radius(xyz) and _radius(out) >= 0.95 * native_radius(len(pairs))
    for i, j, n in stems:
        members = np.r_[i : i + n, j - n + 1 : j + 1]
        d_in = np.linalg.norm(xyz[members][:, None] - xyz[members][None], axis=-1)
        d_out = np.linalg.norm(out[members][:, None] - out[members][None], axis=-1)
        assert np.allclose(d_in, d_out, atol=1e-6)
    assert np.abs(_steps(out) - _steps(xyz)).max() < 0.5


def test_best_rotations_recover_a_rotation_and_never_reflect() -> None:
    rng = np.random.default_rng(0)
    p = rng.normal(size=(20, 3))
    p -= p.mean(axis=0)
    q_rot, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q_rot *= np.sign(np.linalg.det(q_rot))  # a proper rotation
    mirror = np.diag([1.0, 1.0, -1.0])
    h = np.stack([p.T @ (p @ q_rot), p.T @ (p @ mirror)])
    rot = best_rotations(h)
    assert np.allclose(rot[0], q_rot, atol=1e-10)
    assert np.allclose(np.linalg.det(rot), 1.0)  # the mirror image is fitted by a rotation, not the reflection
