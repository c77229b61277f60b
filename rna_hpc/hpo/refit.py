"""The refit: the best configuration of the last stage, trained with the full budget under several seeds.

It is one plain batch through the launcher (on Slurm: one array), recorded in the study ``<study>-refit``: one
trial per seed (user attrs ``seed`` and ``parent_trial``), with the parameters of the best trial. A
multi-objective search refits the last stage's Pareto front instead (at most ``refit.pareto_max`` trials, the
front's extremes first), each under every seed. A resumed search runs only the runs that have no finished trial
yet. The study's user attrs ``refit_mean``/``refit_std``/``refit_n`` (one objective) or ``refit_solutions`` (the
mean and sd of each objective per refit trial) summarize it.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from rna_hpc.hpo import resume, runner
from rna_hpc.hpo.errors import SweepError
from rna_hpc.hpo.narrowing import pareto_front, select_top
from rna_hpc.hpo.space import merge_overrides, params_to_overrides
from rna_hpc.hpo.stages import Refit, refit_study_name

log = logging.getLogger(__name__)


@dataclass
class RefitContext:
    storage: Any
    base_name: str
    directions: list[str]
    refit: Refit
    fixed: list[str]
    last_stage: Any  # the last stage's study
    launcher: Any
    jobs: Iterator[int]
    on_finished: Callable[[Any, int], None] | None = None  # (refit study, trial number) once a run is told


def refit_parents(ctx: RefitContext) -> list[Any]:
    """The trials to refit: the last stage's best, or (several objectives) its Pareto front, the front's extremes
    first, at most ``refit.pareto_max`` of them."""
    trials = ctx.last_stage.get_trials(deepcopy=False)
    if len(ctx.directions) == 1:
        return select_top(trials, 1, ctx.directions)
    front = {t.number for t in pareto_front(trials, ctx.directions)}
    return [t for t in select_top(trials, len(front), ctx.directions) if t.number in front][: ctx.refit.pareto_max]


def run_refit(ctx: RefitContext) -> Any | None:
    """Run the seeds still missing; the refit study (None when ``n_seeds`` is 0)."""
    import optuna

    if ctx.refit.n_seeds <= 0 or ctx.last_stage is None:
        return None
    parents = refit_parents(ctx)
    if not parents:
        raise SweepError(f"{ctx.last_stage.study_name}: no COMPLETE trial to refit")
    study = optuna.create_study(
        study_name=refit_study_name(ctx.base_name),
        storage=ctx.storage,
        directions=ctx.directions,
        sampler=optuna.samplers.RandomSampler(),
        load_if_exists=True,
    )
    if not study.user_attrs.get("initialized"):
        study.set_user_attr("parent_study", ctx.last_stage.study_name)
        study.set_user_attr("parent_trial", parents[0].number)
        study.set_user_attr("parent_trials", [t.number for t in parents])
        study.set_user_attr("overrides", list(ctx.refit.overrides))
        study.set_user_attr("initialized", True)
    resume.fail_orphans(study)
    _launch_missing_seeds(ctx, study, parents)
    _summarize(study)
    return study


def _parent_of(study: Any, trial: Any) -> int:
    return int(trial.user_attrs.get("parent_trial", study.user_attrs.get("parent_trial")))


def _launch_missing_seeds(ctx: RefitContext, study: Any, parents: list[Any]) -> None:
    seeds = [ctx.refit.first_seed + i for i in range(ctx.refit.n_seeds)]
    done = {
        (_parent_of(study, t), t.user_attrs.get("seed"))
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished() and not resume.is_orphan(t)
    }
    todo = [(p, s) for p in parents for s in seeds if (p.number, s) not in done]
    if not todo:
        return
    job_nums = [next(ctx.jobs) for _ in todo]
    batch, numbers = [], []
    for (parent, seed), job_num in zip(todo, job_nums):
        study.enqueue_trial(dict(parent.params))
        trial = study.ask(fixed_distributions=dict(parent.distributions))
        trial.set_user_attr("seed", seed)
        trial.set_user_attr("parent_trial", parent.number)
        trial.set_user_attr("job_num", job_num)
        overrides = merge_overrides(
            ctx.fixed, ctx.refit.overrides, params_to_overrides(parent.params), [f"{ctx.refit.seed_key}={seed}"]
        )
        trial.set_user_attr("overrides", overrides)
        batch.append(overrides)
        numbers.append(trial.number)
    log.info(
        "refit of %s %s: %d run(s), seeds %s, from job %d",
        ctx.last_stage.study_name,
        ", ".join(f"#{p.number}" for p in parents),
        len(todo),
        seeds,
        job_nums[0],
    )
    try:
        returns = list(ctx.launcher.launch(batch, initial_job_idx=job_nums[0]))
    except Exception as e:  # the whole array failed: every seed is a failed trial
        returns = [e] * len(batch)
    for number, ret in zip(numbers, returns):
        runner.finish_trial(study, number, runner.outcome_of(ret, len(ctx.directions)))
        if ctx.on_finished is not None:
            ctx.on_finished(study, number)


def _summarize(study: Any) -> None:
    """``refit_mean``/``refit_std``/``refit_n`` (one objective) or ``refit_solutions`` (one entry per parent)."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return
    if len(study.directions) == 1:
        values = [t.value for t in complete]
        study.set_user_attr("refit_n", len(values))
        study.set_user_attr("refit_mean", statistics.fmean(values))
        study.set_user_attr("refit_std", statistics.stdev(values) if len(values) > 1 else 0.0)
        log.info("refit: %d seed(s), value %.6g +- %.6g", len(values), study.user_attrs["refit_mean"], _std(values))
        return
    solutions = []
    for parent in sorted({_parent_of(study, t) for t in complete}):
        runs = [t for t in complete if _parent_of(study, t) == parent]
        columns = list(zip(*(t.values for t in runs)))
        solutions.append(
            {
                "parent_trial": parent,
                "params": dict(runs[0].params),
                "n": len(runs),
                "mean": [statistics.fmean(c) for c in columns],
                "std": [_std(c) for c in columns],
            }
        )
        log.info(
            "refit of #%d: %d seed(s), values %s +- %s", parent, len(runs), solutions[-1]["mean"], solutions[-1]["std"]
        )
    study.set_user_attr("refit_solutions", solutions)


def _std(values: Any) -> float:
    values = list(values)
    return statistics.stdev(values) if len(values) > 1 else 0.0
