"""Stage studies: create or reopen ``<study>-s<k>``, derive its space, record provenance, enqueue the best trials.

User attrs of a stage study: ``stage``, ``stage_name``, ``parent_study`` (None for stage 0), ``parent_top`` (numbers
of the parent trials the space was derived from), ``space`` (optuna distribution JSON), ``space_text``, ``top_k``,
``margin``, ``pruner`` (the node the trial jobs build their pruner from), ``plan`` and ``fingerprint`` (the search
plan, checked when a search resumes), and ``initialized`` (written last).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rna_hpc.hpo.errors import SweepConfigError, SweepError
from rna_hpc.hpo.narrowing import narrow_space, select_top
from rna_hpc.hpo.space import describe, grid_choices, space_from_json, space_to_json
from rna_hpc.hpo.stages import Stage, fingerprint, plan_changes, stage_study_name

log = logging.getLogger(__name__)


def to_plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def open_study(storage: Any, name: str, directions: list[str]) -> Any:
    import optuna

    return optuna.create_study(study_name=name, storage=storage, directions=directions, load_if_exists=True)


def find_study(storage: Any, name: str) -> Any | None:
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def check_plan(storage: Any, base_name: str, plan: Mapping[str, Any], where: str) -> None:
    """Refuse to continue a search whose stored plan differs incompatibly from ``plan`` (SweepConfigError)."""
    first = find_study(storage, stage_study_name(base_name, 0))
    if first is None or "plan" not in first.user_attrs:
        return
    changes = plan_changes(first.user_attrs["plan"], plan)
    if changes:
        raise SweepConfigError(
            [
                f"hydra.sweeper: study '{base_name}' in {where} was started with another search plan; use a new"
                " hydra.sweeper.study_name (or storage), or restore the plan. Changed:"
            ]
            + changes
        )
    if first.user_attrs.get("fingerprint") != fingerprint(plan):  # stages were appended
        first.set_user_attr("plan", dict(plan))
        first.set_user_attr("fingerprint", fingerprint(plan))


def derive_space(
    stage: Stage, parent: Any | None, original: Mapping[str, Any], directions: list[str]
) -> tuple[dict[str, Any], list[Any]]:
    """(space of ``stage``, the parent trials it was narrowed around); stage 0 gets ``original``.

    Several objectives: the parent's top_k come from its Pareto front first (see ``select_top``).
    """
    if parent is None:
        return dict(original), []
    top = select_top(parent.get_trials(deepcopy=False), stage.top_k, directions)
    if not top:
        raise SweepError(f"{parent.study_name}: no COMPLETE trial to narrow the next stage around")
    parent_space = space_from_json(parent.user_attrs["space"])
    return narrow_space(parent_space, [t.params for t in top], stage.margin, original), top


def init_stage_study(
    study: Any,
    stage: Stage,
    space: Mapping[str, Any],
    parent: tuple[str | None, list[Any]],
    plan: Mapping[str, Any],
    pruner: Any,
) -> None:
    """Write the provenance attrs and enqueue the parent's best trials, once (``initialized`` is set last)."""
    if study.user_attrs.get("initialized"):
        return
    parent_name, top = parent
    attrs = {
        "stage": stage.index,
        "stage_name": stage.name,
        "parent_study": parent_name,
        "parent_top": [t.number for t in top],
        "space": space_to_json(space),
        "space_text": {k: describe(d) for k, d in space.items()},
        "top_k": stage.top_k,
        "margin": stage.margin,
        "pruner": to_plain(pruner),
        "plan": dict(plan),
        "fingerprint": fingerprint(plan),
    }
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    for t in top[: min(stage.n_enqueue, stage.n_trials)]:
        study.enqueue_trial(dict(t.params), user_attrs={"enqueued_from": t.number}, skip_if_exists=True)
    study.set_user_attr("initialized", True)


def stage_space(study: Any) -> dict[str, Any]:
    return space_from_json(study.user_attrs["space"])


def make_sampler(node: Any, space: Mapping[str, Any], n_existing: int) -> Any:
    """Build the stage's sampler: seed shifted by the trials already in the study; GridSampler gets the space."""
    from hydra.utils import instantiate

    cfg = dict(to_plain(node) or {"_target_": "optuna.samplers.TPESampler"})
    if "_target_" not in cfg:
        raise SweepConfigError(f"hydra.sweeper.sampler: needs a _target_, got {cfg}")
    if cfg.get("seed") is not None:
        cfg["seed"] = int(cfg["seed"]) + n_existing
    if str(cfg["_target_"]).endswith("GridSampler"):
        cfg["search_space"] = grid_choices(space)
    try:
        return instantiate(cfg, _convert_="all")  # plain dicts and lists (x0, reference points), not DictConfigs
    except Exception as e:
        raise SweepConfigError(f"hydra.sweeper.sampler: cannot build {cfg['_target_']}: {e}") from e


def stage_size(stage: Stage, space: Mapping[str, Any]) -> int:
    """The stage's trial count; a GridSampler stage is capped at the grid's size."""
    target = str((to_plain(stage.sampler) or {}).get("_target_", ""))
    if target.endswith("GridSampler"):
        return min(stage.n_trials, math.prod(len(v) for v in grid_choices(space).values()))
    return stage.n_trials


def check_pruner(node: Any) -> None:
    """Build the pruner once in the sweeper, so a bad node fails before any job starts."""
    from hydra.utils import instantiate

    cfg = to_plain(node)
    if cfg is None:
        return
    try:
        instantiate(cfg)
    except Exception as e:
        raise SweepConfigError(f"hydra.sweeper.pruner: cannot build {cfg.get('_target_')}: {e}") from e
