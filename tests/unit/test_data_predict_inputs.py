"""Predict inputs: FASTA or a sequences CSV, with the length limit (an error naming it, or a crop)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rna_hpc.data.fasta import read_predict_sequences
from rna_hpc.data.targets import DataWarning
from rna_hpc.errors import InputError


def test_too_long_predict_sequence(tmp_path: Path) -> None:
    fa = tmp_path / "in.fasta"
    fa.write_text(">short\nGGGAAACCC\n>long one\nGGGGAAAA\nCCCCUUUU\n")
    with pytest.raises(InputError, match=r"in\.fasta:3 \(long\): sequence of 16 nt is longer than "):
        read_predict_sequences(fa, max_length=10)
    with pytest.raises(InputError, match=r"data\.max_predict_length=10"):
        read_predict_sequences(fa, max_length=10)
    with pytest.warns(DataWarning, match="cropped from 16 to 10 nt"):
        out = read_predict_sequences(fa, max_length=10, crop_long=True)
    assert out == [("short", "GGGAAACCC"), ("long", "GGGGAAAACC")]


def test_predict_csv_and_bad_fasta(tmp_path: Path) -> None:
    csv = tmp_path / "test_sequences.csv"
    csv.write_text("target_id,sequence\nR1,GGGAAACCC\nR2,ggtaa\n")
    with pytest.warns(DataWarning):
        assert read_predict_sequences(csv, 100) == [("R1", "GGGAAACCC"), ("R2", "GGUAA")]
    bad = tmp_path / "bad.fa"
    bad.write_text("GGGAAA\n>x\nCC\n")
    with pytest.raises(InputError, match=r"bad\.fa:1: sequence before the first '>' header"):
        read_predict_sequences(bad, 100)
