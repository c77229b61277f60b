"""The Kaggle 'Stanford RNA 3D Folding' layout: ``{split}_sequences.csv`` and ``{split}_labels.csv``.

Whole-file problems (wrong columns, a malformed row, a non-numeric coordinate) always raise ``InputError``;
per-target problems (duplicate IDs, labels of an unknown target, a length mismatch) raise or become a ``Skip``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from rna_hpc.data.targets import Skip, Target, TargetError, enum_value, masked_note, normalize_sequence
from rna_hpc.errors import InputError

MISSING_BELOW = -1e17  # the Kaggle sentinel for a missing coordinate is -1e18
SEQUENCE_COLUMNS = ("target_id", "sequence")
_COORD = re.compile(r"^([xyz])_(\d+)$")
_SPLIT_PREFIXES = {"train": ("train",), "val": ("val", "validation", "valid")}


@dataclass
class SequenceRow:
    target_id: str
    sequence: str
    line: int
    temporal_cutoff: str | None = None
    source: str = ""


@dataclass
class LabelBlock:
    """The label rows of one target: coordinates [K, L, 3] (NaN = missing), resnames, first line, any problem."""

    coords: np.ndarray
    resnames: str
    line: int
    problem: str = ""


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield (line, fields) for every non-blank record; line 1 is the header."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh, strict=True)
            prev = 0
            for row in reader:
                line, prev = prev + 1, reader.line_num
                if row:
                    yield line, row
    except csv.Error as err:
        raise InputError(f"{path}:{prev + 1}: malformed CSV ({err})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror})") from None


def _records(path: Path) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    rows = _csv_rows(path)
    first = next(rows, None)
    if first is None:
        raise InputError(f"{path}: file is empty")
    header = [h.strip() for h in first[1]]

    def body() -> Iterator[tuple[int, list[str]]]:
        for line, row in rows:
            if len(row) != len(header):
                expected = f"{len(header)} fields ({','.join(header)})"
                raise InputError(f"{path}:{line}: malformed row: expected {expected}, found {len(row)}")
            yield line, row

    return header, body()


def read_sequences(path: str | Path) -> list[SequenceRow]:
    """Rows of a sequences CSV (``target_id,sequence[,temporal_cutoff,description,source]``); at least one."""
    path = Path(path)
    header, rows = _records(path)
    missing = [c for c in SEQUENCE_COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path}:1: wrong columns: expected target_id,sequence,... ; found {','.join(header)}")
    col = {name: i for i, name in enumerate(header)}
    out = []
    for line, row in rows:
        tid = row[col["target_id"]].strip()
        if not tid:
            raise InputError(f"{path}:{line}: malformed row: empty target_id")
        date = row[col["temporal_cutoff"]].strip() if "temporal_cutoff" in col else ""
        source = row[col["source"]].strip() if "source" in col else ""
        out.append(SequenceRow(tid, row[col["sequence"]], line, date or None, source))
    if not out:
        raise InputError(f"{path}: has a header but no rows (no targets)")
    return out


def _coordinate_columns(path: Path, header: list[str]) -> list[int]:
    """Column indices ordered x_1,y_1,z_1,x_2,...; raise unless ID and complete triplets 1..K are present."""
    found: dict[tuple[int, str], int] = {}
    for i, name in enumerate(header):
        m = _COORD.match(name)
        if m:
            found[(int(m.group(2)), m.group(1))] = i
    n_refs = max((k for k, _ in found), default=0)
    want = [(k, a) for k in range(1, n_refs + 1) for a in "xyz"]
    if "ID" not in header or n_refs == 0 or any(w not in found for w in want):
        raise InputError(f"{path}:1: wrong columns: expected ID,resname,resid,x_1,y_1,z_1[,x_2,...]; found {header}")
    return [found[w] for w in want]


def _parse_coords(path: Path, line: int, row: list[str], cols: list[int], header: list[str]) -> list[float]:
    values = []
    for i in cols:
        text = row[i].strip()
        try:
            v = float(text) if text else float("nan")
        except ValueError:
            raise InputError(f"{path}:{line}: non-numeric coordinate {header[i]}={text!r}") from None
        values.append(v)
    return values


def _label_block(rows: list[tuple[int, int, str, list[float]]], n_refs: int) -> LabelBlock:
    """Assemble one target's rows (resid, line, resname, values) into a LabelBlock."""
    length = max(r[0] for r in rows)
    coords = np.full((n_refs, length, 3), np.nan, dtype=np.float32)
    names = ["?"] * length
    first_line: dict[int, int] = {}
    problem = ""
    for resid, line, resname, values in rows:
        if resid in first_line and not problem:
            problem = f"duplicate label ID for residue {resid} (lines {first_line[resid]} and {line})"
        first_line.setdefault(resid, line)
        xyz = np.asarray(values, dtype=np.float64).reshape(n_refs, 3)
        xyz[(xyz < MISSING_BELOW).any(axis=1) | ~np.isfinite(xyz).all(axis=1)] = np.nan
        coords[:, resid - 1] = xyz
        names[resid - 1] = resname.strip().upper()[:1] or "?"
    if not problem and len(first_line) != length:
        problem = f"labels cover {len(first_line)} of residues 1..{length}"
    observed = np.isfinite(coords).all(axis=-1).any(axis=-1)  # [K]
    n_keep = int(np.flatnonzero(observed)[-1]) + 1 if observed.any() else 1
    return LabelBlock(coords[:n_keep], "".join(names), rows[0][1], problem)


def read_labels(path: str | Path) -> dict[str, LabelBlock]:
    """Label rows grouped by target (IDs split on the last underscore); -1e18 and empty fields are missing."""
    path = Path(path)
    header, rows = _records(path)
    cols = _coordinate_columns(path, header)
    id_col = header.index("ID")
    name_col = header.index("resname") if "resname" in header else None
    grouped: dict[str, list[tuple[int, int, str, list[float]]]] = {}
    for line, row in rows:
        label_id = row[id_col].strip()
        tid, sep, num = label_id.rpartition("_")
        if not sep or not tid or not num.isdigit() or int(num) < 1:
            raise InputError(f"{path}:{line}: malformed row: ID {label_id!r} is not <target_id>_<resid>")
        resname = row[name_col] if name_col is not None else "?"
        grouped.setdefault(tid, []).append((int(num), line, resname, _parse_coords(path, line, row, cols, header)))
    n_refs = len(cols) // 3
    return {tid: _label_block(block, n_refs) for tid, block in grouped.items()}


def split_files(directory: str | Path, split: str) -> tuple[Path, Path]:
    """The (sequences, labels) CSV paths of ``split`` ('train' or 'val'; 'validation_*' is accepted for val)."""
    directory = Path(directory)
    if split not in _SPLIT_PREFIXES:
        raise InputError(f"{directory}: unknown split {split!r} (expected train or val)")
    for prefix in _SPLIT_PREFIXES[split]:
        seq, lab = directory / f"{prefix}_sequences.csv", directory / f"{prefix}_labels.csv"
        if seq.is_file() and lab.is_file():
            return seq, lab
    raise InputError(f"{directory}: no {split}_sequences.csv + {split}_labels.csv (Kaggle layout)")


def _check_target(row: SequenceRow, seq: str, block: LabelBlock | None, lab_path: Path) -> None:
    if block is None:
        raise TargetError(f"{row.target_id}: no rows in {lab_path}", reason="no labels")
    where = f"{lab_path}:{block.line}"
    if block.problem:
        raise TargetError(f"{where}: {row.target_id}: {block.problem}", reason="bad labels")
    if block.coords.shape[1] != len(seq):
        raise TargetError(
            f"{where}: {row.target_id}: labels have {block.coords.shape[1]} residues, the sequence has {len(seq)}",
            reason="length mismatch",
        )
    for i, (a, b) in enumerate(zip(block.resnames, seq, strict=True)):
        if a in "ACGU" and b in "ACGU" and a != b:
            raise TargetError(
                f"{where}: {row.target_id}: resname {a} at residue {i + 1} disagrees with the sequence ({b})",
                reason="resname mismatch",
            )


def read_split(
    directory: str | Path, split: str, on_error: Enum | str = "skip", unknown: Enum | str = "mask"
) -> tuple[list[Target], list[Skip]]:
    """Targets of one split of the Kaggle layout, and the ones skipped (``on_error=skip``) with the reason."""
    seq_path, lab_path = split_files(directory, split)
    rows, labels = read_sequences(seq_path), read_labels(lab_path)
    raise_errors = enum_value(on_error) == "raise"
    targets: list[Target] = []
    skips: list[Skip] = []
    seen: dict[str, int] = {}
    for row in rows:
        where = f"{seq_path}:{row.line}"
        try:
            if row.target_id in seen:
                raise TargetError(
                    f"{where}: duplicate target_id {row.target_id!r} (first at line {seen[row.target_id]})",
                    reason="duplicate ID",
                )
            seen[row.target_id] = row.line
            seq = normalize_sequence(row.sequence, unknown, f"{where} ({row.target_id})")
            block = labels.get(row.target_id)
            _check_target(row, seq, block, lab_path)
            notes = masked_note(row.sequence)
            targets.append(Target(row.target_id, seq, block.coords, row.temporal_cutoff, row.source or split, notes))
        except TargetError as err:
            if raise_errors:
                raise
            skips.append(Skip(row.target_id, err.reason, where, str(err)))
    for tid, block in labels.items():
        if tid not in seen:
            where = f"{lab_path}:{block.line}"
            err = TargetError(f"{where}: label rows for unknown target {tid!r}", reason="unknown target")
            if raise_errors:
                raise err
            skips.append(Skip(tid, err.reason, where, str(err)))
    return targets, skips
