"""Structure files: C1' traces as PDB, and the Kaggle coordinate CSV layout (submissions and labels).

The CSV layout has one row per residue: `ID` = `<target_id>_<resid>` (split on the last underscore),
`resname`, `resid` (1-based), then `x_k, y_k, z_k` for each structure k. Missing coordinates are -1e18.
Every write is atomic: a temporary file in the same folder, fsync, then `os.replace`.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from rna_hpc.checkpoint.io import atomic_write
from rna_hpc.errors import InputError

MISSING = -1e18  # the Kaggle sentinel of an unresolved coordinate
N_SUBMISSION_MODELS = 5


def _atom_line(serial: int, resname: str, resid: int, xyz: np.ndarray) -> str:
    x, y, z = (float(v) for v in xyz)
    return (
        f"ATOM  {serial % 100000:5d}  C1' {resname:>3s} A{resid % 10000:4d}    "
        f"{x:8.3f}{y:8.3f}{z:8.3f}{1.0:6.2f}{0.0:6.2f}           C  "
    )


def write_pdb(path: str | Path, target_id: str, sequence: str, models: np.ndarray) -> None:
    """Write models [S, L, 3] (or one [L, 3]) as C1' traces, one MODEL per sample; NaN rows are left out."""
    xyz = np.asarray(models, dtype=float)
    xyz = xyz[None] if xyz.ndim == 2 else xyz
    if xyz.ndim != 3 or xyz.shape[1:] != (len(sequence), 3):
        raise InputError(f"{target_id}: models of shape {xyz.shape} do not match the sequence length {len(sequence)}")
    if np.nanmax(np.abs(xyz), initial=0.0) >= 1e4:
        raise InputError(f"{target_id}: coordinates beyond +-9999.999 A do not fit the PDB format")
    lines = [f"REMARK   1 {target_id}: C1' trace, {len(xyz)} model(s)"]
    for k, model in enumerate(xyz, start=1):
        lines.append(f"MODEL     {k:4d}")
        serial = 0
        for i, (res, pos) in enumerate(zip(sequence.upper(), model), start=1):
            if np.isfinite(pos).all():
                serial += 1
                lines.append(_atom_line(serial, res, i, pos))
        lines += [f"TER   {serial + 1:5d}      {sequence[-1:].upper():>3s} A{len(sequence):4d}", "ENDMDL"]
    atomic_write(path, "\n".join(lines + ["END", ""]))


def write_submission(path: str | Path, entries: list[tuple[str, str, np.ndarray]]) -> None:
    """Write `(target_id, sequence, coords [5, L, 3])` entries in the Kaggle submission layout; NaN -> -1e18."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["ID", "resname", "resid"] + [f"{a}_{k}" for k in range(1, N_SUBMISSION_MODELS + 1) for a in "xyz"])
    for target_id, sequence, coords in entries:
        xyz = np.asarray(coords, dtype=float)
        if xyz.shape != (N_SUBMISSION_MODELS, len(sequence), 3):
            raise InputError(
                f"{target_id}: submission coordinates have shape {xyz.shape}, "
                f"expected ({N_SUBMISSION_MODELS}, {len(sequence)}, 3)"
            )
        flat = np.where(np.isfinite(xyz), xyz, MISSING).transpose(1, 0, 2).reshape(len(sequence), -1)
        for i, res in enumerate(sequence.upper()):
            w.writerow(
                [f"{target_id}_{i + 1}", res, i + 1] + [f"{v:.3f}" if v > MISSING else "-1e+18" for v in flat[i]]
            )
    atomic_write(path, buf.getvalue())


def _coordinate_columns(header: list[str], path: Path) -> list[tuple[int, int, int]]:
    """Column indices of (x_k, y_k, z_k) for k = 1, 2, ... as long as all three are present."""
    for name in ("ID", "resname", "resid"):
        if name not in header:
            raise InputError(f"{path}:1: missing column '{name}' (found {', '.join(header[:6])})")
    cols, k = [], 1
    while all(f"{a}_{k}" in header for a in "xyz"):
        cols.append(tuple(header.index(f"{a}_{k}") for a in "xyz"))
        k += 1
    if not cols:
        raise InputError(f"{path}:1: no coordinate columns x_1, y_1, z_1")
    return cols


def _assemble(rows: dict[str, dict[int, tuple[str, list[float]]]], path: Path) -> dict[str, tuple[str, np.ndarray]]:
    out = {}
    for target_id, residues in rows.items():
        length = max(residues)
        gaps = sorted(set(range(1, length + 1)) - set(residues))
        if gaps:
            raise InputError(f"{path}: target {target_id} has no row for residue {gaps[0]} (of {length})")
        seq = "".join(residues[i][0] for i in range(1, length + 1))
        xyz = np.array([residues[i][1] for i in range(1, length + 1)], dtype=float).reshape(length, -1, 3)
        xyz[xyz <= MISSING / 10] = np.nan
        out[target_id] = (seq, xyz.transpose(1, 0, 2))
    return out


def read_coordinate_csv(path: str | Path) -> dict[str, tuple[str, np.ndarray]]:
    """Read a Kaggle coordinate CSV: {target_id: (sequence, coords [K, L, 3] with NaN = missing)}."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    rows: dict[str, dict[int, tuple[str, list[float]]]] = {}
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise InputError(f"{path}: empty file")
        cols = _coordinate_columns(header, path)
        i_id, i_res, i_num = header.index("ID"), header.index("resname"), header.index("resid")
        for line, row in enumerate(reader, start=2):
            try:
                target_id, resid_text = row[i_id].rsplit("_", 1)
                resid = int(row[i_num])
                coords = [float(row[c]) for triple in cols for c in triple]
            except (ValueError, IndexError) as exc:
                raise InputError(f"{path}:{line}: malformed row ({exc})") from None
            if resid < 1 or resid_text != str(resid):
                raise InputError(f"{path}:{line}: ID {row[i_id]} does not match resid {row[i_num]}")
            if not np.isfinite(coords).all():
                raise InputError(f"{path}:{line}: non-finite coordinate (missing values are written -1e18)")
            if resid in rows.setdefault(target_id, {}):
                raise InputError(f"{path}:{line}: duplicate residue {row[i_id]}")
            rows[target_id][resid] = (row[i_res].strip().upper()[:1] or "N", coords)
    return _assemble(rows, path)


def read_submission(path: str | Path) -> dict[str, tuple[str, np.ndarray]]:
    """Read a submission CSV: {target_id: (sequence, coords [5, L, 3])}."""
    data = read_coordinate_csv(path)
    for target_id, (_, xyz) in data.items():
        if xyz.shape[0] < N_SUBMISSION_MODELS:
            raise InputError(f"{path}: target {target_id} has {xyz.shape[0]} models, expected {N_SUBMISSION_MODELS}")
    return {t: (s, x[:N_SUBMISSION_MODELS]) for t, (s, x) in data.items()}


def read_sequences(path: str | Path) -> dict[str, str]:
    """Read a `*_sequences.csv` file: {target_id: sequence}."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not {"target_id", "sequence"} <= set(reader.fieldnames or []):
            raise InputError(f"{path}:1: expected columns target_id and sequence")
        return {row["target_id"]: row["sequence"].strip().upper() for row in reader}
