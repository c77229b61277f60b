"""Trial states per stage of a staged Optuna search, read from its storage, for ``rna-hpc-status``.

The storage is the one the sweeper recorded in the sweep dir (``optuna_storage.json``), else the sweep dir's
``optuna.journal`` (the sweeper's default) or the ``trial.storage`` its trial jobs were given. Stage studies are
``<study>-s<k>`` (user attrs ``stage``, ``stage_name``), the refit study ``<study>-refit``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rna_hpc.launch.record import JobRecord, SweepRecord

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
_TRIAL_STORAGE = "++trial.storage="


@dataclass
class StageCounts:
    """One study of the search: its stage label, trial counts per state and best value."""

    study: str
    label: str
    order: int
    counts: dict[str, int] = field(default_factory=dict)
    best: float | str | None = None  # a value, or for several objectives the size of the Pareto front
    trials: dict[int, str] = field(default_factory=dict)  # Hydra job number -> '<label>#<trial> <STATE>'


def find_storage(sweep_dir: Path, record: SweepRecord | None, jobs: Sequence[JobRecord]) -> str | None:
    """The storage spec of the search run in ``sweep_dir``; None when it is not an Optuna search."""
    from rna_hpc.hpo.storage import read_storage_record

    dirs = [sweep_dir] + ([Path(record.sweep_dir)] if record else [])
    for d in dirs:
        recorded = read_storage_record(d)
        if recorded is not None:
            return recorded
        if (d / "optuna.journal").is_file():
            return str(d / "optuna.journal")
    for job in jobs:
        for override in job.overrides:
            if override.startswith(_TRIAL_STORAGE):
                return override[len(_TRIAL_STORAGE) :].strip("'\"")
    return None


def _label(name: str, attrs: dict) -> tuple[str, int]:
    if "stage" in attrs:
        return f"s{attrs['stage']} {attrs.get('stage_name', '')}".strip(), int(attrs["stage"])
    if name.endswith("-refit"):
        return "refit", 10**6
    return name, 10**6 - 1


def stage_counts(sweep_dir: Path, record: SweepRecord | None, jobs: Sequence[JobRecord]) -> list[StageCounts]:
    """Per study of the search: trial counts by state (COMPLETE/PRUNED/FAIL/RUNNING/WAITING) and the best value."""
    spec = find_storage(sweep_dir, record, jobs)
    if spec is None:
        return []
    import optuna

    from rna_hpc.hpo.storage import make_storage

    optuna.logging.set_verbosity(logging.WARNING)
    storage = make_storage(spec)
    rows = []
    for name in optuna.study.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        label, order = _label(name, study.user_attrs)
        trials = study.get_trials(deepcopy=False)
        counts = Counter(t.state.name for t in trials)
        best = _best(study, trials)
        by_job = {
            t.user_attrs["job_num"]: f"{label.split()[0]}#{t.number} {t.state.name}"
            for t in trials
            if "job_num" in t.user_attrs
        }
        rows.append(StageCounts(name, label, order, {s: counts.get(s, 0) for s in STATES}, best, by_job))
    return sorted(rows, key=lambda r: (r.order, r.study))


def _best(study: Any, trials: Sequence[Any]) -> float | str | None:
    """The best value of a study; for several objectives, the size of its Pareto front (e.g. '3 on the front')."""
    if len(study.directions) > 1:
        front = study.best_trials
        return f"{len(front)} on the front" if front else None
    complete = [t.value for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    if not complete:
        return None
    return max(complete) if study.direction.name == "MAXIMIZE" else min(complete)


def format_stages(rows: Sequence[StageCounts]) -> str:
    """A fixed-width table: one line per stage study."""
    header = ["stage", "study", "trials", *STATES, "best"]
    cells = [
        [r.label, r.study, str(sum(r.counts.values())), *(str(r.counts[s]) for s in STATES)]
        + ["-" if r.best is None else r.best if isinstance(r.best, str) else f"{r.best:.4g}"]
        for r in rows
    ]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(header)]
    lines = ["Optuna search, trials per stage:", "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip() for c in cells]
    return "\n".join(lines)
