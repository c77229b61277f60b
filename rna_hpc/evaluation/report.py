"""Evaluation outputs: the console table, `report.md`, and its PNG figures (matplotlib, Agg backend)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rna_hpc.checkpoint.io import atomic_write  # noqa: E402


def _fmt(value: float, digits: int) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _columns(result: dict[str, Any]) -> list[tuple[str, str, str, int]]:
    """(method, key, header, digits) of each score column."""
    cols = []
    for m in result["methods"]:
        cols += [(m, "tm", f"{m} TM", 3), (m, "rmsd", f"{m} RMSD", 1)]
        if "tm_aligned" in result["mean"].get(m, {}):
            cols.append((m, "tm_aligned", f"{m} TM-al", 3))
    return cols


def format_table(result: dict[str, Any]) -> str:
    """Per-target TM (best of the samples) and RMSD for the model and each baseline, then the means."""
    cols = _columns(result)
    head = ["target", "L", "refs"] + [c[2] for c in cols]
    rows = [
        [t["target_id"], str(t["length"]), str(t["n_refs"])] + [_fmt(t[m].get(k), d) for m, k, _, d in cols]
        for t in result["targets"]
    ]
    mean = ["mean", "", ""] + [_fmt(result["mean"][m].get(k), d) for m, k, _, d in cols]
    widths = [max(len(r[i]) for r in rows + [head, mean]) for i in range(len(head))]

    def line(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))

    rule = "-" * len(line(head))
    return "\n".join([line(head), rule] + [line(r) for r in rows] + [rule, line(mean)])


def _save(fig: plt.Figure, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def plot_tm(result: dict[str, Any], path: Path) -> None:
    """Bar chart of per-target TM-score: the model next to the best baseline of each target."""
    targets = result["targets"]
    names = [t["target_id"] for t in targets]
    model = [t["model"]["tm"] for t in targets]
    base = [t["best_baseline"]["tm"] for t in targets]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(names) + 2), 3.6))
    ax.bar(x - 0.2, model, 0.4, label="model")
    ax.bar(x + 0.2, base, 0.4, label="best baseline")
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("TM-score (best of samples)")
    ax.set_ylim(0, 1)
    ax.legend()
    _save(fig, path)


def plot_distance_maps(target_id: str, pred: np.ndarray, ref: np.ndarray, path: Path) -> None:
    """Predicted and reference C1' distance maps side by side (missing residues blank)."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.8))
    for ax, xyz, title in zip(axes, (pred, ref), ("predicted", "reference")):
        d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
        im = ax.imshow(d, cmap="viridis_r", vmin=0, vmax=40)
        ax.set_title(f"{target_id} {title}")
    fig.colorbar(im, ax=axes, label="C1'-C1' distance (A)", shrink=0.8)
    _save(fig, path)


def write_report(result: dict[str, Any], out_dir: Path, figures: list[str]) -> Path:
    """`report.md` with the means, the table and links to the figures."""
    lines = [
        "# Evaluation",
        "",
        f"- predictions: `{result['predictions']}`",
        f"- labels: `{result['labels']}`",
        f"- targets: {result['n_targets']}"
        + (f" (not predicted: {', '.join(result['missing'])})" if result["missing"] else ""),
        "",
        "| method | mean TM | mean RMSD |",
        "|---|---|---|",
    ]
    lines += [
        f"| {m} | {_fmt(result['mean'][m]['tm'], 3)} | {_fmt(result['mean'][m]['rmsd'], 2)} |"
        for m in result["methods"]
    ]
    lines += ["", "```", format_table(result), "```", ""]
    lines += [f"![{Path(f).stem}]({f})" for f in figures]
    path = out_dir / "report.md"
    atomic_write(path, "\n".join(lines) + "\n")
    return path
