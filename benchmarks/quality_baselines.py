"""Mean best-of-5 TM-score and RMSD of the baselines (helix, ss, template) on the validation split.

    .venv/bin/python benchmarks/quality_baselines.py [--data-dir DIR] [--targets R1107 ...] [--ensemble boltzmann]

The template baseline searches the train split and never uses the target itself.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import default_data_dir

from rna_hpc.evaluation.baselines import BASELINES, BaselineContext, baseline_samples
from rna_hpc.evaluation.metrics import best_rmsd, best_tm
from rna_hpc.evaluation.references import load_references, load_templates
from rna_hpc.evaluation.report import format_table


def run(data_dir: Path, targets: list[str] | None, n_samples: int, ensemble: str = "tilt") -> dict[str, Any]:
    """Score every baseline on the val split; returns the result in the layout `format_table` prints."""
    refs = load_references(data_dir / "val_labels.csv")
    templates = load_templates(data_dir)
    methods = list(BASELINES)
    rows, seconds = [], dict.fromkeys(methods, 0.0)
    for tid in targets or sorted(refs, key=lambda t: len(refs[t][0])):
        seq, xyz = refs[tid]
        row: dict[str, Any] = {
            "target_id": tid,
            "length": len(seq),
            "n_refs": int(np.isfinite(xyz).all(axis=2).any(axis=1).sum()),
        }
        for name in methods:
            start = time.perf_counter()
            samples = baseline_samples(
                BASELINES[name], seq, BaselineContext(target_id=tid, templates=templates, ensemble=ensemble), n_samples
            )
            seconds[name] += time.perf_counter() - start
            row[name] = {"tm": best_tm(samples, xyz), "rmsd": best_rmsd(samples, xyz)}
        rows.append(row)
    mean = {m: {k: float(np.nanmean([r[m][k] for r in rows])) for k in ("tm", "rmsd")} for m in methods}
    return {"methods": methods, "targets": rows, "mean": mean, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--targets", nargs="*", default=None, help="val target ids (default: all)")
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--ensemble", default="tilt", help="later ss samples: tilt (MFE, tilted loops) | boltzmann")
    args = parser.parse_args()
    result = run(args.data_dir, args.targets, args.samples, args.ensemble)
    print(format_table(result))
    print()
    for m in result["methods"]:
        tm, rmsd = result["mean"][m]["tm"], result["mean"][m]["rmsd"]
        print(f"{m:>8s}: mean TM {tm:.3f}  mean RMSD {rmsd:.1f} A  ({result['seconds'][m]:.1f} s to predict)")
    assert all(math.isfinite(result["mean"][m]["tm"]) for m in result["methods"])


if __name__ == "__main__":
    main()
