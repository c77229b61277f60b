"""Learning curves from Lightning's ``metrics.csv``: one PNG per run and one per sweep that overlays its runs.

Drawn with matplotlib's Agg backend (no display needed) and written atomically. Reading the CSV needs no
matplotlib, so ``rna-hpc-status`` uses ``read_metrics`` for its table as well.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rna_hpc.loggers.metrics_csv import read_rows

Curve = list[tuple[int, float]]  # (step, value), in file order

LOSS_METRICS = ("train/loss", "val/loss")


def read_metrics(path: str | os.PathLike[str]) -> dict[str, Curve]:
    """``{metric: [(step, value), ...]}`` (finite values) from a Lightning CSVLogger ``metrics.csv``; an unreadable
    file gives {}.

    ``epoch`` and ``step`` are curves too (their last values say how far the run got).
    """
    curves: dict[str, Curve] = {}
    for step, values in read_rows(path):
        for key, value in {**values, "step": float(step)}.items():
            if key and math.isfinite(value):
                curves.setdefault(key, []).append((step, value))
    return curves


def _save(fig: object, out: Path) -> Path:
    from rna_hpc.checkpoint.io import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")  # type: ignore[attr-defined]
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, buf.getvalue())
    return out


def _pyplot() -> Any:
    """matplotlib.pyplot, imported on first use with the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_run(curves: Mapping[str, Curve], objective: str, out: str | os.PathLike[str], title: str = "") -> Path | None:
    """Losses (left) and the objective (right) against the step; None when there is nothing to draw."""
    losses = {k: curves[k] for k in LOSS_METRICS if curves.get(k)}
    target = curves.get(objective) or []
    if not losses and not target:
        return None
    plt = _pyplot()
    fig, (ax_loss, ax_obj) = plt.subplots(1, 2, figsize=(10, 3.6))
    try:
        for name, curve in losses.items():
            ax_loss.plot(*zip(*curve), marker="." if len(curve) < 30 else None, label=name)
        ax_loss.set(xlabel="step", ylabel="loss", title="loss")
        if losses:
            ax_loss.legend()
        if target:
            ax_obj.plot(*zip(*target), marker="o", color="tab:green")
        ax_obj.set(xlabel="step", ylabel=objective, title=objective)
        fig.suptitle(title)
        fig.tight_layout()
        return _save(fig, Path(out))
    finally:
        plt.close(fig)


def plot_sweep(
    runs: Mapping[str, Mapping[str, Curve]], metric: str, out: str | os.PathLike[str], title: str = ""
) -> Path | None:
    """One line per run (``{label: curves}``) of ``metric`` against the step; None when no run logged it."""
    drawn = {label: c[metric] for label, c in runs.items() if c.get(metric)}
    if not drawn:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    try:
        for label, curve in sorted(drawn.items(), key=lambda kv: _natural(kv[0])):
            ax.plot(*zip(*curve), marker="." if len(curve) < 30 else None, label=label)
        ax.set(xlabel="step", ylabel=metric, title=title or metric)
        ax.legend(fontsize="small", ncol=max(1, len(drawn) // 12))
        return _save(fig, Path(out))
    finally:
        plt.close(fig)


def _natural(label: str) -> Sequence[object]:
    """Sort '#2' before '#10'."""
    digits = "".join(ch for ch in label if ch.isdigit())
    return (int(digits) if digits else math.inf, label)
