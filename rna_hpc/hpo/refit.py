"""The refit: the best configuration of the last stage, trained with the full budget under several seeds.

It is one plain batch through the launcher (on Slurm: one array), recorded in the study ``<study>-refit``: one
trial per seed (user attr ``seed``), with the parameters of the best trial. A resumed search runs only the seeds
that have no finished trial yet. The study's user attrs ``refit_mean``/``refit_std``/``refit_n`` summarize it.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rna_hpc.hpo import resume, runner
from rna_hpc.hpo.errors import SweepError
from rna_hpc.hpo.narrowing import select_top
from rna_hpc.hpo.space import merge_overrides, params_to_overrides
from rna_hpc.hpo.stages import Refit, refit_study_name

log = logging.getLogger(__name__)


@dataclass
class RefitContext:
    storage: Any
    base_name: str
    direction: str
    refit: Refit
    fixed: list[str]
    last_stage: Any  # the last stage's study
    launcher: Any
    jobs: Iterator[int]


def run_refit(ctx: RefitContext) -> Any | None:
    """Run the seeds still missing; the refit study (None when ``n_seeds`` is 0)."""
    import optuna

    if ctx.refit.n_seeds <= 0 or ctx.last_stage is None:
        return None
    top = select_top(ctx.last_stage.get_trials(deepcopy=False), 1, ctx.direction == "maximize")
    if not top:
        raise SweepError(f"{ctx.last_stage.study_name}: no COMPLETE trial to refit")
    best = top[0]
    study = optuna.create_study(
        study_name=refit_study_name(ctx.base_name),
        storage=ctx.storage,
        direction=ctx.direction,
        sampler=optuna.samplers.RandomSampler(),
        load_if_exists=True,
    )
    if not study.user_attrs.get("initialized"):
        study.set_user_attr("parent_study", ctx.last_stage.study_name)
        study.set_user_attr("parent_trial", best.number)
        study.set_user_attr("overrides", list(ctx.refit.overrides))
        study.set_user_attr("initialized", True)
    resume.fail_orphans(study)
    _launch_missing_seeds(ctx, study, best)
    _summarize(study)
    return study


def _launch_missing_seeds(ctx: RefitContext, study: Any, best: Any) -> None:
    seeds = [ctx.refit.first_seed + i for i in range(ctx.refit.n_seeds)]
    done = {
        t.user_attrs.get("seed")
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished() and not resume.is_orphan(t)
    }
    todo = [s for s in seeds if s not in done]
    if not todo:
        return
    job_nums = [next(ctx.jobs) for _ in todo]
    batch, numbers = [], []
    for seed, job_num in zip(todo, job_nums):
        study.enqueue_trial(dict(best.params))
        trial = study.ask(fixed_distributions=dict(best.distributions))
        trial.set_user_attr("seed", seed)
        trial.set_user_attr("job_num", job_num)
        overrides = merge_overrides(
            ctx.fixed, ctx.refit.overrides, params_to_overrides(best.params), [f"{ctx.refit.seed_key}={seed}"]
        )
        trial.set_user_attr("overrides", overrides)
        batch.append(overrides)
        numbers.append(trial.number)
    log.info(
        "refit of %s #%d: %d seed(s) %s from job %d",
        ctx.last_stage.study_name,
        best.number,
        len(todo),
        todo,
        job_nums[0],
    )
    try:
        returns = list(ctx.launcher.launch(batch, initial_job_idx=job_nums[0]))
    except Exception as e:  # the whole array failed: every seed is a failed trial
        returns = [e] * len(batch)
    for number, ret in zip(numbers, returns):
        runner.finish_trial(study, number, runner.outcome_of(ret))


def _summarize(study: Any) -> None:
    from optuna.trial import TrialState

    values = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not values:
        return
    study.set_user_attr("refit_n", len(values))
    study.set_user_attr("refit_mean", statistics.fmean(values))
    study.set_user_attr("refit_std", statistics.stdev(values) if len(values) > 1 else 0.0)
    log.info(
        "refit: %d seed(s), value %.6g +- %.6g",
        len(values),
        study.user_attrs["refit_mean"],
        study.user_attrs["refit_std"],
    )
