"""The stage plan: what each stage runs, its study name, and the fingerprint that guards a resumed search.

Stage k is the study ``<study_name>-s<k>`` (the refit: ``<study_name>-refit``), all in one storage. ``top_k`` and
``margin`` of stage k say how its space is narrowed from the best trials of stage k-1 (stage 0 searches the full
space). A search without ``stages`` is one stage of ``n_trials`` trials.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rna_hpc.hpo.errors import SweepConfigError
from rna_hpc.hpo.space import canonical_json, override_key


@dataclass
class Stage:
    index: int
    name: str
    n_trials: int
    overrides: list[str] = field(default_factory=list)
    sampler: Any = None  # a node with _target_ (a DictConfig or dict)
    pruner: Any = None
    top_k: int = 3
    margin: float = 0.25
    enqueue: int | None = None  # previous stage's best trials re-run first; None: top_k

    @property
    def n_enqueue(self) -> int:
        return self.top_k if self.enqueue is None else self.enqueue


@dataclass
class Refit:
    n_seeds: int = 0
    seed_key: str = "seed"
    first_seed: int = 0
    overrides: list[str] = field(default_factory=list)
    pareto_max: int = 3


def stage_study_name(base: str, index: int) -> str:
    return f"{base}-s{index}"


def refit_study_name(base: str) -> str:
    return f"{base}-refit"


def build_stages(stages_cfg: Sequence[Mapping[str, Any]] | None, defaults: Mapping[str, Any]) -> list[Stage]:
    """Stages from ``hydra.sweeper.stages`` (each missing key from ``defaults``); every problem -> one error."""
    entries = list(stages_cfg or []) or [{"name": "search"}]
    problems: list[str] = []
    stages: list[Stage] = []
    for k, entry in enumerate(entries):
        where = f"hydra.sweeper.stages[{k}]"
        unknown = sorted(set(entry) - set(Stage.__dataclass_fields__) - {"index"})
        if unknown:
            valid = ", ".join(n for n in Stage.__dataclass_fields__ if n != "index")
            problems.append(f"{where}: unknown key(s) {', '.join(unknown)} (valid: {valid})")
            continue
        values = {key: entry.get(key) for key in entry if entry.get(key) is not None}
        merged = {**{key: v for key, v in defaults.items() if v is not None}, **values}
        stage = Stage(
            index=k,
            name=str(merged.get("name", f"s{k}")),
            n_trials=int(merged.get("n_trials", 0)),
            overrides=[str(o) for o in merged.get("overrides", [])],
            sampler=merged.get("sampler"),
            pruner=merged.get("pruner"),
            top_k=int(merged.get("top_k", 3)),
            margin=float(merged.get("margin", 0.25)),
            enqueue=None if merged.get("enqueue") is None else int(merged["enqueue"]),
        )
        problems.extend(_stage_problems(stage, where))
        stages.append(stage)
    names = [s.name for s in stages]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"hydra.sweeper.stages: the name '{name}' is used twice")
    if problems:
        raise SweepConfigError(problems)
    return stages


def _stage_problems(stage: Stage, where: str) -> list[str]:
    problems = []
    if stage.name in ("", "???"):
        problems.append(f"{where}.name: missing")
    if stage.n_trials < 1:
        problems.append(f"{where}.n_trials: must be >= 1, got {stage.n_trials}")
    if stage.top_k < 1:
        problems.append(f"{where}.top_k: must be >= 1, got {stage.top_k}")
    if stage.margin < 0:
        problems.append(f"{where}.margin: must be >= 0, got {stage.margin}")
    if stage.enqueue is not None and stage.enqueue < 0:
        problems.append(f"{where}.enqueue: must be >= 0, got {stage.enqueue}")
    for o in stage.overrides:
        if "=" not in o or not override_key(o):
            problems.append(f"{where}.overrides: '{o}' is not a key=value override")
    return problems


def build_refit(refit_cfg: Mapping[str, Any] | None) -> Refit:
    cfg = dict(refit_cfg or {})
    refit = Refit(
        n_seeds=int(cfg.get("n_seeds") or 0),
        seed_key=str(cfg.get("seed_key") or "seed"),
        first_seed=int(cfg.get("first_seed") or 0),
        overrides=[str(o) for o in cfg.get("overrides") or []],
        pareto_max=int(cfg.get("pareto_max") or 3),
    )
    if refit.n_seeds < 0:
        raise SweepConfigError(f"hydra.sweeper.refit.n_seeds: must be >= 0, got {refit.n_seeds}")
    return refit


def plan_description(
    params: Mapping[str, str], direction: str | list[str], stages: Sequence[Stage], custom_search_space: str | None
) -> dict[str, Any]:
    """What a resumed search must keep: the space, the direction, the stage list (trial counts may change)."""
    return {
        "params": dict(sorted(params.items())),
        "direction": direction,
        "custom_search_space": custom_search_space,
        "stages": [
            {"name": s.name, "overrides": list(s.overrides), "top_k": s.top_k, "margin": s.margin} for s in stages
        ],
    }


def fingerprint(plan: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(plan).encode()).hexdigest()[:16]


def plan_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Incompatible differences between two plans (``params.lr``, ``stages[1].overrides``); [] if compatible.

    Trial counts, samplers and pruners may change between runs, and new stages may be appended.
    """
    changes: list[str] = []
    for key in ("direction", "custom_search_space"):
        if old.get(key) != new.get(key):
            changes.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    old_p, new_p = old.get("params", {}), new.get("params", {})
    for name in sorted(set(old_p) | set(new_p)):
        if old_p.get(name) != new_p.get(name):
            changes.append(f"params.{name}: {old_p.get(name)!r} -> {new_p.get(name)!r}")
    old_s, new_s = old.get("stages", []), new.get("stages", [])
    if len(new_s) < len(old_s):  # appending stages to a finished search is allowed
        changes.append(f"stages: {len(old_s)} -> {len(new_s)} stages")
    for k, (a, b) in enumerate(zip(old_s, new_s)):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                changes.append(f"stages[{k}].{key}: {a.get(key)!r} -> {b.get(key)!r}")
    return changes
