"""Predict inputs: a FASTA file or a sequences CSV (``target_id,sequence``) -> [(target_id, sequence)]."""

from __future__ import annotations

import warnings
from enum import Enum
from pathlib import Path

from rna_hpc.data.kaggle import read_sequences
from rna_hpc.data.targets import DataWarning, normalize_sequence
from rna_hpc.errors import InputError

FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".txt")


def read_fasta(path: str | Path) -> list[tuple[str, str, int]]:
    """(target_id, raw sequence, header line) records; the ID is the first word after '>'."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror})") from None
    records: list[tuple[str, list[str], int]] = []
    for n, text in enumerate(lines, start=1):
        text = text.strip()
        if not text or text.startswith(";"):
            continue
        if text.startswith(">"):
            name = text[1:].split()
            if not name:
                raise InputError(f"{path}:{n}: FASTA header without an ID")
            records.append((name[0], [], n))
        elif not records:
            raise InputError(f"{path}:{n}: sequence before the first '>' header (not FASTA)")
        else:
            records[-1][1].append(text)
    if not records:
        raise InputError(f"{path}: file is empty" if not lines else f"{path}: no FASTA records")
    return [(tid, "".join(parts), line) for tid, parts, line in records]


def _records(path: Path) -> list[tuple[str, str, int]]:
    if path.suffix.lower() == ".csv":
        return [(r.target_id, r.sequence, r.line) for r in read_sequences(path)]
    return read_fasta(path)


def read_predict_sequences(
    path: str | Path, max_length: int, crop_long: bool = False, unknown: Enum | str = "mask"
) -> list[tuple[str, str]]:
    """Normalized (target_id, sequence) pairs; a sequence over ``max_length`` raises, or is cropped if ``crop_long``."""
    path = Path(path)
    out: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for tid, raw, line in _records(path):
        where = f"{path}:{line} ({tid})"
        if tid in seen:
            raise InputError(f"{where}: duplicate target_id (first at line {seen[tid]})")
        seen[tid] = line
        seq = normalize_sequence(raw, unknown, where)
        if not seq:
            raise InputError(f"{where}: empty sequence")
        out.append((tid, check_predict_length(seq, max_length, crop_long, where)))
    return out


def check_predict_length(sequence: str, max_length: int, crop_long: bool, where: str) -> str:
    """``sequence`` itself, its first ``max_length`` residues (``crop_long``, with a warning), or InputError."""
    if len(sequence) <= max_length:
        return sequence
    if not crop_long:
        raise InputError(
            f"{where}: sequence of {len(sequence)} nt is longer than data.max_predict_length={max_length} "
            "(raise the limit or set data.crop_long_predict=true)"
        )
    warnings.warn(f"{where}: cropped from {len(sequence)} to {max_length} nt", DataWarning, stacklevel=2)
    return sequence[:max_length]
