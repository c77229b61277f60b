"""Reference structures of a Kaggle-layout split, and the template index built from a folder's train split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rna_hpc.errors import InputError
from rna_hpc.evaluation.structure_io import read_coordinate_csv, read_sequences
from rna_hpc.evaluation.templates import TemplateIndex


def load_references(labels_csv: str | Path) -> dict[str, tuple[str, np.ndarray]]:
    """{target_id: (sequence, refs [K, L, 3])}; sequences from `<split>_sequences.csv` beside the labels if present."""
    labels_csv = Path(labels_csv)
    refs = read_coordinate_csv(labels_csv)
    seq_csv = labels_csv.with_name(labels_csv.name.replace("_labels.csv", "_sequences.csv"))
    if seq_csv != labels_csv and seq_csv.is_file():
        for target_id, seq in read_sequences(seq_csv).items():
            if target_id in refs:
                if len(seq) != len(refs[target_id][0]):
                    raise InputError(
                        f"{seq_csv}: {target_id} has {len(seq)} residues, {labels_csv} has {len(refs[target_id][0])}"
                    )
                refs[target_id] = (seq, refs[target_id][1])
    return refs


def load_templates(templates_dir: str | Path) -> TemplateIndex:
    """Template index of the train split of a Kaggle-layout folder (first reference structure of each target)."""
    folder = Path(templates_dir)
    if not folder.is_dir():
        raise InputError(f"templates_dir {folder}: not a folder")
    refs = load_references(folder / "train_labels.csv")
    return TemplateIndex.build([(tid, seq, xyz[0]) for tid, (seq, xyz) in refs.items()])
