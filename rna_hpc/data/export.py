"""Write prepared targets back out in the Kaggle layout (``<split>_sequences.csv`` + ``<split>_labels.csv``).

Used to hand the embedded synthetic set to ``rna_hpc.predict`` (sequences) and ``rna_hpc.evaluate`` (labels).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from rna_hpc.checkpoint.io import atomic_write

MISSING = -1e18  # the Kaggle sentinel for an unresolved C1'


def _csv(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def export_split(samples: list[dict[str, Any]], out_dir: str | Path, split: str) -> tuple[Path, Path]:
    """Write ``samples`` (with ``target_id``, ``sequence``, ``coords`` [K, L, 3]) as one Kaggle-layout split."""
    out = Path(out_dir)
    seq_rows: list[list[Any]] = [["target_id", "sequence"]]
    n_refs = max(len(s["coords"]) for s in samples)
    header = ["ID", "resname", "resid"] + [f"{a}_{k}" for k in range(1, n_refs + 1) for a in "xyz"]
    label_rows: list[list[Any]] = [header]
    for s in samples:
        seq_rows.append([s["target_id"], s["sequence"]])
        coords = np.full((n_refs, len(s["sequence"]), 3), np.nan)
        coords[: len(s["coords"])] = np.asarray(s["coords"], dtype=float)
        coords = np.where(np.isfinite(coords), coords, MISSING)
        for i, res in enumerate(s["sequence"]):
            xyz = [f"{v:.3f}" if v != MISSING else "-1e+18" for v in coords[:, i].reshape(-1)]
            label_rows.append([f"{s['target_id']}_{i + 1}", res, i + 1, *xyz])
    seq_path, label_path = out / f"{split}_sequences.csv", out / f"{split}_labels.csv"
    atomic_write(seq_path, _csv(seq_rows))
    atomic_write(label_path, _csv(label_rows))
    return seq_path, label_path
