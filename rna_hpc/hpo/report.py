"""Search outputs in the sweep dir: summary table, ``best_params.yaml``, plots. Every file is written atomically
(``rna_hpc.checkpoint.io``).

``optimization_results.yaml`` has hydra-optuna-sweeper's fields, so scripts written for it read it unchanged.
``best_params.yaml`` is a ``# @package _global_`` config: config-group parameters become ``override /group: x``
entries of its defaults list, the others nested keys. Copied to ``conf/experiment/tuned.yaml`` it runs as
``experiment=tuned``; ``best_overrides.txt`` holds the same as command-line overrides.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import warnings
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from rna_hpc.checkpoint.io import atomic_write_bytes, atomic_write_text
from rna_hpc.hpo.space import format_value, params_to_overrides

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = ["trial", "study", "number", "state", "value", "params", "duration_s", "run_dir", "fail_reason"]


def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path


def trial_rows(study: Any, label: str) -> list[dict[str, Any]]:
    """One summary row per trial: ``trial`` is ``<label>#<number>`` (``s1#4``, ``refit#0``)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        duration = t.duration.total_seconds() if t.duration is not None else None
        params = dict(t.params)
        if "seed" in t.user_attrs:  # a refit run
            params["seed"] = t.user_attrs["seed"]
        rows.append(
            {
                "trial": f"{label}#{t.number}",
                "study": study.study_name,
                "number": t.number,
                "state": t.state.name,
                "value": _value(t.values),
                "params": " ".join(params_to_overrides(params)),
                "duration_s": None if duration is None else round(duration, 3),
                "run_dir": t.user_attrs.get("run_dir", ""),
                "fail_reason": t.user_attrs.get("fail_reason", ""),
            }
        )
    return rows


def _value(values: Sequence[float] | None) -> Any:
    """The summary's value cell: the number, or (several objectives) the numbers separated by spaces."""
    if values is None:
        return None
    return values[0] if len(values) == 1 else " ".join(f"{v:.6g}" for v in values)


def write_summary(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return _write_text(Path(path), buf.getvalue())


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A fixed-width text form of the summary for the log."""
    cols = ["trial", "state", "value", "duration_s", "params"]
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    out = io.StringIO()
    out.write("  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")
    return out.getvalue()


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def best_params_yaml(params: Mapping[str, Any], groups: Collection[str], comment: str) -> str:
    """The ``# @package _global_`` YAML text for ``params`` (config-group keys in ``groups``)."""
    from omegaconf import OmegaConf

    group_overrides = [{f"override /{k}": v} for k, v in params.items() if k in groups]
    values = OmegaConf.create({})
    for key, value in params.items():
        if key not in groups:
            OmegaConf.update(values, key.lstrip("+~"), value, force_add=True)
    body: dict[str, Any] = {}
    if group_overrides:
        body["defaults"] = group_overrides
    body.update(OmegaConf.to_container(values))
    lines = [f"# {line}" for line in comment.splitlines()]
    return "# @package _global_\n" + "\n".join(lines) + "\n" + (OmegaConf.to_yaml(body) if body else "{}\n")


def write_best(out_dir: Path, params: Mapping[str, Any], groups: Collection[str], comment: str) -> None:
    _write_text(out_dir / "best_params.yaml", best_params_yaml(params, groups, comment))
    overrides = [f"{k}={format_value(v)}" for k, v in params.items()]
    _write_text(out_dir / "best_overrides.txt", "\n".join(overrides) + "\n")


def optimization_results(front: Sequence[Any], directions: Sequence[str]) -> dict[str, Any]:
    """hydra-optuna-sweeper's ``optimization_results.yaml`` content: ``name``, ``best_params`` and ``best_value``
    (one objective) or ``solutions``: the Pareto front, each with ``params`` and ``values``."""
    if len(directions) == 1:
        return {"name": "optuna", "best_params": dict(front[0].params), "best_value": front[0].value}
    return {"name": "optuna", "solutions": [{"params": dict(t.params), "values": list(t.values)} for t in front]}


def write_optimization_results(out_dir: Path, front: Sequence[Any], directions: Sequence[str]) -> Path:
    from omegaconf import OmegaConf

    text = OmegaConf.to_yaml(OmegaConf.create(optimization_results(front, directions)))
    return _write_text(out_dir / "optimization_results.yaml", text)


def write_plots(studies: Any, out_dir: Path) -> list[Path]:
    """Optimization history (of every study given), parameter importances and parallel coordinates (of the last)
    as PNG, or for several objectives the last study's Pareto front; a plot that cannot be drawn (too few trials,
    one-valued parameters) is skipped with a log line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    studies = list(studies) if isinstance(studies, (list, tuple)) else [studies]
    last = studies[-1]
    plots = {
        "optimization_history": lambda: ovm.plot_optimization_history(studies if len(studies) > 1 else last),
        "param_importances": lambda: ovm.plot_param_importances(last),
        "parallel_coordinate": lambda: ovm.plot_parallel_coordinate(last),
    }
    if len(last.directions) > 1:  # several objectives: the last stage's Pareto front instead
        plots = {"pareto_front": lambda: ovm.plot_pareto_front(last)}
    written = []
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = plot()
            fig = ax.flat[0].figure if hasattr(ax, "flat") else ax.figure
            png = io.BytesIO()
            fig.savefig(png, format="png", bbox_inches="tight")
            out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(out_dir / f"{name}.png", png.getvalue())
            written.append(out_dir / f"{name}.png")
        except Exception as e:  # optuna raises ValueError/RuntimeError for studies it cannot plot
            log.info("%s: no %s plot (%s)", last.study_name, name, e)
        finally:
            plt.close("all")
    return written
