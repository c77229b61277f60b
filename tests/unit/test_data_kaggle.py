"""Kaggle-layout CSV parsing: the real files, and one test per kind of bad input (message names file and line)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rna_hpc.config.schema import DataConfig, DataFormat, SplitPolicy
from rna_hpc.data.kaggle import read_labels, read_sequences, read_split
from rna_hpc.data.prepare import prepare
from rna_hpc.data.targets import DataWarning, encode, normalize_sequence
from rna_hpc.errors import InputError

SEQ_HEADER = "target_id,sequence,temporal_cutoff,description,source"
LAB_HEADER = "ID,resname,resid,x_1,y_1,z_1"
REPO = Path(__file__).resolve().parents[2]


def write_split(tmp_path: Path, sequences: list[str], labels: list[str], lab_header: str = LAB_HEADER) -> Path:
    (tmp_path / "train_sequences.csv").write_text("\n".join([SEQ_HEADER, *sequences]) + "\n")
    (tmp_path / "train_labels.csv").write_text("\n".join([lab_header, *labels]) + "\n")
    return tmp_path


def labels_for(tid: str, seq: str) -> list[str]:
    return [f"{tid}_{i + 1},{c},{i + 1},{i * 5.5:.3f},1.0,-2.0" for i, c in enumerate(seq)]


def test_real_splits(rna3d_dir: Path) -> None:
    train, skipped = read_split(rna3d_dir, "train")
    val, val_skipped = read_split(rna3d_dir, "val")
    assert (len(train), len(val), skipped, val_skipped) == (550, 18, [], [])
    by_id = {t.target_id: t for t in train + val}
    assert by_id["1SCL_A"].sequence.startswith("GGGUGCUCAGUACGAGAGG")
    assert by_id["R1116"].coords.shape == (1, 157, 3)
    assert int((~by_id["R1116"].coord_mask()).sum()) == 11  # -1e18 sentinels are missing
    assert by_id["R1156"].coords.shape[0] == 40 and by_id["R1108"].coords.shape[0] == 2
    assert by_id["7B9V_2"].length == by_id["7B9V_2"].coords.shape[1]  # underscore IDs split on the last one
    assert all(np.isfinite(t.coords[0]).all() for t in train)
    assert by_id["R1107"].temporal_cutoff == "2022-05-28"


def test_sequences_and_labels_read_directly(rna3d_dir: Path) -> None:
    rows = read_sequences(rna3d_dir / "val_sequences.csv")
    labels = read_labels(rna3d_dir / "val_labels.csv")
    assert [r.line for r in rows[:2]] == [2, 3] and len(labels) == len(rows) == 18
    assert labels["R1107"].coords.shape == (1, 69, 3) and labels["R1107"].line == 2


def test_sentinel_and_empty_fields_are_missing(tmp_path: Path) -> None:
    labels = labels_for("A_1", "GGAC")
    labels[1] = "A_1_2,G,2,-1e+18,-1e+18,-1e+18"
    labels[2] = "A_1_3,A,3,,,"
    targets, _ = read_split(write_split(tmp_path, ["A_1,GGAC,2020-01-01,x,y"], labels), "train")
    assert targets[0].coord_mask().tolist() == [True, False, False, True]


def test_malformed_row(tmp_path: Path) -> None:
    labels = labels_for("A_1", "GGAC")
    labels[1] = "A_1_2,G,2,1.0,2.0"
    with pytest.raises(InputError, match=r"train_labels\.csv:3: malformed row: expected 6 fields"):
        read_split(write_split(tmp_path, ["A_1,GGAC,2020-01-01,x,y"], labels), "train")


def test_malformed_label_id(tmp_path: Path) -> None:
    labels = labels_for("A_1", "GGAC")
    labels[3] = "A_1_four,C,4,1,2,3"
    with pytest.raises(InputError, match=r"train_labels\.csv:5: malformed row: ID 'A_1_four'"):
        read_split(write_split(tmp_path, ["A_1,GGAC,2020-01-01,x,y"], labels), "train")


def test_wrong_sequence_columns(tmp_path: Path) -> None:
    write_split(tmp_path, [], labels_for("A_1", "GGAC"))
    (tmp_path / "train_sequences.csv").write_text("id,seq\nA_1,GGAC\n")
    with pytest.raises(InputError, match=r"train_sequences\.csv:1: wrong columns"):
        read_split(tmp_path, "train")


def test_wrong_label_columns(tmp_path: Path) -> None:
    labels = [line.rsplit(",", 1)[0] for line in labels_for("A_1", "GGAC")]
    write_split(tmp_path, ["A_1,GGAC,2020-01-01,x,y"], labels, lab_header="ID,resname,resid,x_1,y_1")
    with pytest.raises(InputError, match=r"train_labels\.csv:1: wrong columns"):
        read_split(tmp_path, "train")


def test_non_numeric_coordinate(tmp_path: Path) -> None:
    labels = labels_for("A_1", "GGAC")
    labels[2] = "A_1_3,A,3,1.0,1.2.3,4.0"
    with pytest.raises(InputError, match=r"train_labels\.csv:4: non-numeric coordinate y_1='1\.2\.3'"):
        read_split(write_split(tmp_path, ["A_1,GGAC,2020-01-01,x,y"], labels), "train")


def test_labels_for_unknown_target(tmp_path: Path) -> None:
    d = write_split(tmp_path, ["A_1,GGAC,2020-01-01,x,y"], labels_for("A_1", "GGAC") + labels_for("B_7", "GC"))
    with pytest.raises(InputError, match=r"train_labels\.csv:6: label rows for unknown target 'B_7'"):
        read_split(d, "train", on_error="raise")
    targets, skipped = read_split(d, "train", on_error="skip")
    assert [t.target_id for t in targets] == ["A_1"]
    assert [(s.target_id, s.reason) for s in skipped] == [("B_7", "unknown target")]


def test_duplicate_target_id(tmp_path: Path) -> None:
    d = write_split(tmp_path, ["A_1,GGAC,2020-01-01,x,y", "A_1,GGAC,2021-01-01,x,y"], labels_for("A_1", "GGAC"))
    with pytest.raises(InputError, match=r"train_sequences\.csv:3: duplicate target_id 'A_1' \(first at line 2\)"):
        read_split(d, "train", on_error="raise")
    targets, skipped = read_split(d, "train")
    assert len(targets) == 1 and skipped[0].reason == "duplicate ID" and skipped[0].where.endswith(":3")


def test_duplicate_label_id(tmp_path: Path) -> None:
    labels = labels_for("A_1", "GGAC")
    labels[2] = labels[1]
    with pytest.raises(
        InputError, match=r"train_labels\.csv:2: A_1: duplicate label ID for residue 2 \(lines 3 and 4\)"
    ):
        read_split(write_split(tmp_path, ["A_1,GGAC,2020-01-01,x,y"], labels), "train", on_error="raise")


def test_length_mismatch(tmp_path: Path) -> None:
    d = write_split(tmp_path, ["A_1,GGACU,2020-01-01,x,y"], labels_for("A_1", "GGAC"))
    with pytest.raises(InputError, match=r"train_labels\.csv:2: A_1: labels have 4 residues, the sequence has 5"):
        read_split(d, "train", on_error="raise")
    targets, skipped = read_split(d, "train", on_error="skip")
    assert targets == [] and skipped[0].reason == "length mismatch"


def test_unknown_nucleotide_mask_and_reject(tmp_path: Path) -> None:
    d = write_split(tmp_path, ["A_1,GGXC,2020-01-01,x,y"], labels_for("A_1", "GGXC"))
    targets, _ = read_split(d, "train", unknown="mask")
    assert targets[0].sequence == "GGNC" and encode(targets[0].sequence).tolist() == [2, 2, 4, 1]
    with pytest.raises(InputError, match=r"train_sequences\.csv:2 \(A_1\): unknown nucleotide 'X' at residue 3"):
        read_split(d, "train", on_error="raise", unknown="reject")
    targets, skipped = read_split(d, "train", on_error="skip", unknown="reject")
    assert targets == [] and skipped[0].reason == "unknown nucleotide"


def test_thymine_reads_as_uracil_with_a_warning() -> None:
    with pytest.warns(DataWarning, match="T read as U"):
        assert normalize_sequence("ggtac", "reject", "x.fa:2") == "GGUAC"


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match=r"empty\.csv: file is empty"):
        read_sequences(tmp_path / "empty.csv")


def _kaggle_dir(tmp_path: Path) -> Path:
    """A small Kaggle-layout folder whose second training target holds the unknown letters X and Z."""
    seqs = {
        "train": {"A_1": "GGGAAACCCUUCG", "B_1": "GGXAAAZCCCUUC", "C_1": "GCGCAAAAGCGCA"},
        "val": {"V_1": "GGGAAAACCCUCA"},
    }
    for split, targets in seqs.items():
        rows = [f"{tid},{seq},2020-01-01,x,y" for tid, seq in targets.items()]
        labels = [line for tid, seq in targets.items() for line in labels_for(tid, seq)]
        (tmp_path / f"{split}_sequences.csv").write_text("\n".join([SEQ_HEADER, *rows]) + "\n")
        (tmp_path / f"{split}_labels.csv").write_text("\n".join([LAB_HEADER, *labels]) + "\n")
    return tmp_path


def test_a_header_only_sequences_file_is_named_with_no_rows(tmp_path: Path) -> None:
    d = _kaggle_dir(tmp_path)
    (d / "train_sequences.csv").write_text(SEQ_HEADER + "\n")
    with pytest.raises(InputError, match=r"train_sequences\.csv: has a header but no rows \(no targets\)$"):
        read_split(d, "train")
    data = DataConfig(format=DataFormat.kaggle, dir=str(d), split=SplitPolicy.files, cache_dir=str(tmp_path / "c"))
    with pytest.raises(InputError, match=r"train_sequences\.csv: has a header but no rows"):
        prepare(data)  # not "no training targets left after filtering" about the folder


def _prepare_cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "rna_hpc.prepare", "data=rna3d", f"data.dir={_kaggle_dir(tmp_path)}"]
    cmd += [f"data.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}", *overrides]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_masked_unknown_letters_are_counted_per_target_in_the_report(tmp_path: Path) -> None:
    proc = _prepare_cli(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "note: B_1: unknown nucleotides masked as N: 2 (X at 3, Z at 7)" in proc.stdout
    assert "A_1:" not in proc.stdout  # targets without unknown letters have no note


def test_rejected_unknown_letters_name_file_line_and_letter_in_one_line(tmp_path: Path) -> None:
    proc = _prepare_cli(tmp_path, "data.unknown_nucleotide=reject", "data.on_error=raise")
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    where = tmp_path / "train_sequences.csv"
    assert line.startswith(f"error: {where}:3 (B_1): unknown nucleotide 'X' at residue 3 (2 in all)"), line
