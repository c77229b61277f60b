"""PDB / mmCIF parsing on the real structure files, and the malformed fixtures in tests/data/structures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rna_hpc.data.kaggle import read_split
from rna_hpc.data.structures import read_structure, read_structure_dir
from rna_hpc.errors import InputError

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "structures"
TRNA_PHE = "GCGGAUUUAGCUCAGUUGGGAGAGCGCCAGACUGAAGAUCUGGAGGUCCUGUGUUCGAUCCACAGAAUUCGCACCA"


def test_7qr4_chain_b_equals_val_target_r1107(rna3d_dir: Path, structures_dir: Path) -> None:
    targets, skipped = read_structure(structures_dir / "7QR4.pdb")
    assert [t.target_id for t in targets] == ["7QR4_B"] and skipped == []  # chain A is protein
    val, _ = read_split(rna3d_dir, "val")
    r1107 = next(t for t in val if t.target_id == "R1107")
    assert targets[0].sequence == r1107.sequence
    np.testing.assert_allclose(targets[0].coords[0], r1107.coords[0], atol=1e-3)


def test_1ehz_mmcif_modified_residues_map_to_parents(structures_dir: Path) -> None:
    (trna,), _ = read_structure(structures_dir / "1EHZ.cif")
    assert trna.sequence == TRNA_PHE  # 2MG, H2U, M2G, OMC, OMG, YYG, PSU, 5MC, 7MG, 5MU, 1MA via mod_residue
    assert trna.notes == [] and trna.coord_mask().all() and trna.temporal_cutoff == "2000-02-23"


def test_9ecq_nmr_takes_model_1(structures_dir: Path) -> None:
    (t,), _ = read_structure(structures_dir / "9ECQ.pdb")
    lines = (structures_dir / "9ECQ.pdb").read_text().splitlines()
    first_c1 = next(ln for ln in lines if ln.startswith("ATOM") and ln[12:16].strip() == "C1'")  # model 1 comes first
    expected = [float(first_c1[30:38]), float(first_c1[38:46]), float(first_c1[46:54])]
    assert t.length == 17 and t.coord_mask().all()
    np.testing.assert_allclose(t.coords[0, 0], expected, atol=1e-3)


def test_9cxf_full_seqres_with_missing_residues(structures_dir: Path) -> None:
    (t,), _ = read_structure(structures_dir / "9CXF.pdb")
    assert t.length == 592 and int(t.coord_mask().sum()) == 200
    assert not t.coord_mask()[0] and t.coord_mask()[315]  # modelled residues start at 316


def test_directory_reads_every_file(structures_dir: Path) -> None:
    targets, _ = read_structure_dir(structures_dir)
    assert sorted(t.target_id for t in targets) == ["1EHZ_A", "7QR4_B", "9CXF_A", "9ECQ_A"]


def test_modified_residue_from_table_and_unmapped_flagged() -> None:
    (t,), _ = read_structure(FIXTURES / "modified_no_modres.pdb", unknown="mask")
    assert t.sequence == "CUGNA"  # PSU -> U from gemmi's table; XYZ has no parent -> N
    assert t.notes == ["residue 4 (XYZ) has no A/C/G/U parent: kept as N"]
    with pytest.raises(InputError, match=r"modified_no_modres\.pdb: chain A residue 4 \(XYZ\) has no A/C/G/U parent"):
        read_structure(FIXTURES / "modified_no_modres.pdb", unknown="reject", on_error="raise")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("not_a_structure.pdb", r"not_a_structure\.pdb: does not parse as PDB/mmCIF"),
        ("truncated.cif", r"truncated\.cif: does not parse as PDB/mmCIF \(.*truncated\.cif:6:"),
        ("empty.cif", r"empty\.cif: file is empty"),
        ("protein_only.pdb", r"protein_only\.pdb: no RNA chain in model 1 \(chains: A \(PeptideL\)\)"),
        ("no_c1prime.pdb", r"no_c1prime\.pdb: all C1' atoms missing in every RNA chain \(A\)"),
    ],
)
def test_bad_structure_files(name: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        read_structure(FIXTURES / name)
