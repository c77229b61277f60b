"""The evaluation pipeline: a submission CSV scored against reference structures, next to the baselines.

`evaluate` scores every predicted target (TM-score best of the samples, RMSD; the helix, secondary-structure and,
with ``templates_dir``, template baselines), prints the per-target table and writes ``evaluation.json`` and
``report.md`` with its figures; ``python -m rna_hpc.evaluate`` (console script ``rna-hpc-evaluate``) runs it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from rna_hpc.checkpoint.io import atomic_write
from rna_hpc.errors import InputError
from rna_hpc.evaluation.alignment import tm_score_aligned
from rna_hpc.evaluation.baselines import BASELINES, BaselineContext, baseline_samples
from rna_hpc.evaluation.metrics import best_rmsd, best_tm, tm_score
from rna_hpc.evaluation.references import load_references, load_templates
from rna_hpc.evaluation.report import format_table, plot_distance_maps, plot_tm, write_report
from rna_hpc.evaluation.structure_io import read_submission


def _scores(samples: np.ndarray, refs: np.ndarray) -> dict[str, float]:
    return {"tm": best_tm(samples, refs), "rmsd": best_rmsd(samples, refs)}


def _aligned_tm(samples: np.ndarray, seq: str, refs: np.ndarray) -> float:
    unique = {p.tobytes(): p for p in samples}.values()
    scores = [tm_score_aligned(p, seq, r, seq) for p in unique for r in refs if np.isfinite(r).all(axis=1).any()]
    return max(scores) if scores else math.nan


def score_target(target_id: str, seq: str, pred: np.ndarray, refs: np.ndarray, ctx: dict[str, Any]) -> dict[str, Any]:
    """Model and baseline scores of one target."""
    row: dict[str, Any] = {
        "target_id": target_id,
        "length": len(seq),
        "n_refs": int(np.isfinite(refs).all(axis=2).any(axis=1).sum()),
    }
    row["model"] = _scores(pred, refs)
    if ctx["aligned_tm"]:
        row["model"]["tm_aligned"] = _aligned_tm(pred, seq, refs)
    context = BaselineContext(target_id=target_id, templates=ctx["templates"])
    for name in ctx["baselines"]:
        row[name] = _scores(baseline_samples(BASELINES[name], seq, context, n=len(pred)), refs)
    best = max(ctx["baselines"], key=lambda m: -1.0 if math.isnan(row[m]["tm"]) else row[m]["tm"])
    row["best_baseline"] = {"method": best, **row[best]}
    return row


def _mean(targets: list[dict[str, Any]], method: str, key: str) -> float:
    values = [t[method][key] for t in targets if math.isfinite(t[method][key])]
    return float(np.mean(values)) if values else math.nan


def _figures(result: dict[str, Any], preds: dict, refs: dict, out_dir: Path, n_maps: int) -> list[str]:
    plot_tm(result, out_dir / "tm_per_target.png")
    names = ["tm_per_target.png"]
    for t in result["targets"][:n_maps]:
        tid = t["target_id"]
        pred, ref = preds[tid][1], refs[tid][1]
        ref = ref[int(np.argmax(np.isfinite(ref).all(axis=2).sum(axis=1)))]
        best = int(np.nanargmax([tm_score(p, ref) for p in pred]))
        plot_distance_maps(tid, pred[best], ref, out_dir / f"distance_map_{tid}.png")
        names.append(f"distance_map_{tid}.png")
    return names


def evaluate(
    predictions_csv: str | Path,
    labels_csv: str | Path,
    out_dir: str | Path,
    templates_dir: str | Path | None = None,
    aligned_tm: bool = False,
    n_distance_maps: int = 3,
    lancedb_uri: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Score every predicted target against its references; prints the table, writes evaluation.json and report.md.

    With ``lancedb_uri``, one row per target (model TM-score and RMSD) is appended to its ``targets`` table.
    """
    preds = read_submission(predictions_csv)
    refs = load_references(labels_csv)
    for tid, (seq, _) in preds.items():
        if tid not in refs:
            raise InputError(f"{predictions_csv}: target {tid} is not in {labels_csv}")
        if len(seq) != len(refs[tid][0]):
            raise InputError(
                f"{predictions_csv}: target {tid} has {len(seq)} residues, the labels have {len(refs[tid][0])}"
            )
    templates = load_templates(templates_dir) if templates_dir else None
    baselines = ["helix", "ss"] + (["template"] if templates is not None else [])
    ctx = {"templates": templates, "baselines": baselines, "aligned_tm": aligned_tm}
    targets = [score_target(tid, refs[tid][0], preds[tid][1], refs[tid][1], ctx) for tid in preds]
    methods = ["model"] + baselines
    result: dict[str, Any] = {
        "predictions": str(predictions_csv),
        "labels": str(labels_csv),
        "n_targets": len(targets),
        "missing": sorted(set(refs) - set(preds)),
        "methods": methods,
        "mean": {m: {"tm": _mean(targets, m, "tm"), "rmsd": _mean(targets, m, "rmsd")} for m in methods},
        "targets": targets,
    }
    result["mean"]["best_baseline"] = {"tm": _mean(targets, "best_baseline", "tm")}
    if aligned_tm:
        result["mean"]["model"]["tm_aligned"] = _mean(targets, "model", "tm_aligned")
    out = Path(out_dir)
    print(format_table(result))
    figures = _figures(result, preds, refs, out, n_distance_maps)
    atomic_write(out / "evaluation.json", json.dumps(result, indent=2, allow_nan=True) + "\n")
    write_report(result, out, figures)
    if lancedb_uri:
        append_target_rows(lancedb_uri, run_id or str(predictions_csv), targets)
    return result


def append_target_rows(uri: str, run_id: str, targets: list[dict[str, Any]]) -> None:
    """One ``targets`` row per evaluated target (the model's scores) in the LanceDB at ``uri``."""
    import time

    from rna_hpc.loggers.lance import TARGETS, append_rows

    now = time.time()
    rows = [
        {
            "run_id": run_id,
            "candidate": "model",
            "target_id": t["target_id"],
            "length": int(t["length"]),
            "tm": float(t["model"]["tm"]),
            "rmsd": float(t["model"]["rmsd"]),
            "time": now,
        }
        for t in targets
    ]
    append_rows(uri, "targets", TARGETS, rows)
