"""PDB output read back with gemmi; submission and label CSVs."""

from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np
import pytest

from rna_hpc.errors import InputError
from rna_hpc.evaluation.structure_io import (
    read_coordinate_csv,
    read_sequences,
    read_submission,
    write_pdb,
    write_submission,
)


@pytest.fixture(scope="module")
def val(rna3d_dir: Path) -> dict[str, tuple[str, np.ndarray]]:
    return read_coordinate_csv(rna3d_dir / "val_labels.csv")


def test_pdb_round_trip_through_gemmi(tmp_path: Path, val: dict) -> None:
    seq, refs = val["R1149"]
    models = refs[:3].copy()
    models[1, 5] = np.nan
    path = tmp_path / "R1149.pdb"
    write_pdb(path, "R1149", seq, models)
    st = gemmi.read_structure(str(path))
    assert len(st) == 3
    for model, xyz in zip(st, models):
        residues = list(model[0])
        keep = np.isfinite(xyz).all(axis=1)
        assert len(residues) == keep.sum()
        assert [r.name for r in residues] == [c for c, k in zip(seq, keep) if k]
        assert [r.seqid.num for r in residues] == list(np.flatnonzero(keep) + 1)
        got = np.array([[r[0].pos.x, r[0].pos.y, r[0].pos.z] for r in residues])
        assert all(r[0].name == "C1'" and r[0].element.name == "C" for r in residues)
        assert np.abs(got - xyz[keep]).max() < 6e-4
    assert not list(tmp_path.glob(".*.tmp"))


def test_pdb_rejects_mismatched_shapes(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="do not match the sequence length"):
        write_pdb(tmp_path / "x.pdb", "T", "ACGU", np.zeros((2, 5, 3)))


def test_submission_round_trip(tmp_path: Path, val: dict) -> None:
    entries = []
    for tid in ("6OL3_C", "R1116"):
        seq, refs = val[tid]
        entries.append((tid, seq, np.stack([refs[0]] * 5)))
    path = tmp_path / "submission.csv"
    write_submission(path, entries)
    header = path.read_text().splitlines()[0]
    assert header == "ID,resname,resid," + ",".join(f"x_{k},y_{k},z_{k}" for k in range(1, 6))
    back = read_submission(path)
    assert list(back) == ["6OL3_C", "R1116"]
    for tid, seq, xyz in entries:
        assert back[tid][0] == seq
        assert np.allclose(back[tid][1], xyz, atol=5e-4, equal_nan=True)
    assert np.isnan(back["R1116"][1]).any()  # unresolved residues travel as -1e18


def test_submission_needs_five_models(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"expected \(5, 4, 3\)"):
        write_submission(tmp_path / "s.csv", [("T", "ACGU", np.zeros((4, 4, 3)))])


def test_real_labels(rna3d_dir: Path, val: dict) -> None:
    assert len(val) == 18
    assert val["R1156"][1].shape[0] == 40
    assert np.isfinite(val["R1156"][1]).all(axis=2).any(axis=1).sum() == 40
    assert np.isfinite(val["R1149"][1]).all(axis=2).any(axis=1).sum() == 10
    assert (~np.isfinite(val["R1116"][1][0]).all(axis=1)).sum() == 11
    assert (~np.isfinite(val["6OL3_C"][1][0]).all(axis=1)).sum() == 1
    sequences = read_sequences(rna3d_dir / "val_sequences.csv")
    assert all(sequences[t] == s for t, (s, _) in val.items())


def test_malformed_csv_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("ID,resname,resid,x_1,y_1,z_1\nT_1,A,1,0,0,0\nT_2,C,2,0,zero,0\n")
    with pytest.raises(InputError, match=r"bad\.csv:3: malformed row"):
        read_coordinate_csv(bad)
    gap = tmp_path / "gap.csv"
    gap.write_text("ID,resname,resid,x_1,y_1,z_1\nT_1,A,1,0,0,0\nT_3,C,3,0,0,0\n")
    with pytest.raises(InputError, match="no row for residue 2"):
        read_coordinate_csv(gap)
    with pytest.raises(InputError, match="file not found"):
        read_submission(tmp_path / "absent.csv")
    nocols = tmp_path / "nocols.csv"
    nocols.write_text("ID,resname,resid\nT_1,A,1\n")
    with pytest.raises(InputError, match="no coordinate columns"):
        read_coordinate_csv(nocols)
