"""Resuming a search: finish the trials a dead sweeper left RUNNING, count the budget used, continue job numbers.

Only one sweeper drives a study at a time, so when a sweeper starts, a RUNNING trial belongs to a sweeper that
stopped (killed, node lost). When its job finished and recorded its result (``job_result``, written by the trial
job itself: ``rna_hpc.hpo.trial_job.RecordsTrialResult``), the trial is told that result (``recovered=True``).
Otherwise it is marked FAIL with ``orphaned=True`` and its parameters are enqueued once more, so its budget is
re-issued: orphaned trials do not count towards a stage's ``n_trials``, other finished trials do.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from rna_hpc import compat

log = logging.getLogger(__name__)

ORPHAN_REASON = "orphaned: left RUNNING by a sweeper that stopped; its budget is re-issued"


def fail_orphans(study: Any) -> list[int]:
    """Tell the study's RUNNING trials the result their job recorded, else mark them FAIL (orphaned) and enqueue
    their parameters again; the numbers of the orphans."""
    from optuna.trial import TrialState

    from rna_hpc.hpo.runner import objective_values
    from rna_hpc.hpo.trial_job import RESULT_ATTR

    left = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    orphans = []
    for t in left:
        if RESULT_ATTR not in t.user_attrs:
            orphans.append(t)
            continue
        values, problem = objective_values(t.user_attrs[RESULT_ATTR], len(study.directions))
        if not problem:
            compat.set_stored_user_attr(study, t.number, "recovered", True)
            study.tell(t.number, values if len(values) > 1 else values[0], skip_if_finished=True)
            log.info("%s #%d: told the result its job recorded, %s", study.study_name, t.number, values)
        else:
            orphans.append(t)
    for t in orphans:
        compat.set_stored_user_attr(study, t.number, "orphaned", True)
        compat.set_stored_user_attr(study, t.number, "fail_reason", ORPHAN_REASON)
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        if t.params and "retry_of" not in t.user_attrs:
            study.enqueue_trial(dict(t.params), user_attrs={"retry_of": t.number})
    if orphans:
        log.warning(
            "%s: %d trial(s) left RUNNING marked FAIL and re-issued: %s",
            study.study_name,
            len(orphans),
            ", ".join(f"#{t.number}" for t in orphans),
        )
    return [t.number for t in orphans]


def is_orphan(trial: Any) -> bool:
    return bool(trial.user_attrs.get("orphaned"))


def budget_used(trials: Sequence[Any]) -> tuple[int, int]:
    """(finished trials that count towards ``n_trials``, how many of them FAILed); orphans count for neither."""
    from optuna.trial import TrialState

    finished = [t for t in trials if t.state.is_finished() and not is_orphan(t)]
    return len(finished), sum(1 for t in finished if t.state == TrialState.FAIL)


def next_job_num(studies: Iterable[Any]) -> int:
    """One past the largest Hydra job number any trial of these studies ran as (0 for a new search)."""
    nums = [
        int(t.user_attrs["job_num"]) for s in studies for t in s.get_trials(deepcopy=False) if "job_num" in t.user_attrs
    ]
    return max(nums) + 1 if nums else 0
