"""Trial dispatch: keep ``n_jobs`` trial jobs in flight and refill a slot as soon as its trial finishes.

Hydra's ``Launcher.launch(batch)`` returns when the whole batch is done, so a batch is only as fast as its slowest
trial. Here every trial is its own ``launch([overrides], initial_job_idx=job_num)`` call (one job; on Slurm a
one-element array), and the sweeper asks the study for a new trial whenever one finishes (asynchronous ask/tell
against the shared storage). Only the sweeper's process touches the study.

Each slot is a worker process forked from the sweeper: a launcher composes and validates a job's config through
Hydra's process-global state (``HydraConfig``, the singletons it pickles into the job), so concurrent ``launch``
calls must not share one process. A worker returns only the trial's :class:`Outcome`.

The basic launcher runs the task inside the sweeper's process, where Hydra's job state (``HydraConfig``, logging,
working directory) is process-global: its trials run one at a time in the calling process.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from rna_hpc import compat
from rna_hpc.hpo.errors import SweepError

log = logging.getLogger(__name__)

_worker_launcher: Any = None  # the launcher a slot worker inherited from the sweeper (set by _init_worker)


def runs_in_process(launcher: Any) -> bool:
    return compat.is_basic_launcher(launcher)


def launch_trial(launcher: Any, overrides: list[str], job_num: int, n_objectives: int = 1) -> Outcome:
    """Launch one trial job and wait for it; a launcher error is this trial's failure, not the sweep's."""
    try:
        ret = launcher.launch([list(overrides)], initial_job_idx=job_num)
    except Exception as e:
        return outcome_of(e)
    if not ret:
        return Outcome("FAIL", reason="launcher: returned no result (dry run?)")
    return outcome_of(ret[0], n_objectives)


def _init_worker(launcher: Any) -> None:
    global _worker_launcher
    _worker_launcher = launcher


def _launch_in_worker(overrides: list[str], job_num: int, n_objectives: int) -> Outcome:
    return launch_trial(_worker_launcher, overrides, job_num, n_objectives)


class TrialSlots:
    """Runs single-job launches, ``n_jobs`` at a time in forked workers (one at a time, inline, in-process)."""

    def __init__(self, launcher: Any, n_jobs: int) -> None:
        self.launcher = launcher
        self.inline = runs_in_process(launcher)
        self.size = 1 if self.inline else max(1, int(n_jobs))
        self._pool: ProcessPoolExecutor | None = None

    def _workers(self) -> ProcessPoolExecutor:
        """The worker pool, forked on first use (it inherits the launcher, its Hydra context and config)."""
        if self._pool is None:
            ctx = multiprocessing.get_context("fork")
            self._pool = ProcessPoolExecutor(
                self.size, mp_context=ctx, initializer=_init_worker, initargs=(self.launcher,)
            )
        return self._pool

    def submit(self, overrides: list[str], job_num: int, n_objectives: int = 1) -> Future:
        """A future of the trial's :class:`Outcome`."""
        if not self.inline:
            try:
                return self._workers().submit(_launch_in_worker, list(overrides), job_num, n_objectives)
            except BrokenProcessPool:  # a worker died (its trials failed): fork a fresh pool for the next ones
                self._pool = None
                return self._workers().submit(_launch_in_worker, list(overrides), job_num, n_objectives)
        future: Future = Future()
        future.set_result(launch_trial(self.launcher, overrides, job_num, n_objectives))
        return future

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


@dataclass
class Outcome:
    state: str  # COMPLETE | PRUNED | FAIL
    values: list[float] | None = None  # one per objective
    reason: str | None = None
    run_dir: str | None = None


def job_outcome(future: Future) -> Outcome:
    """What a finished slot says about its trial (the study may already hold PRUNED: see ``finish_trial``)."""
    try:
        return future.result()
    except Exception as e:  # the worker process died (BrokenProcessPool) or its result did not come back
        return outcome_of(e)


def outcome_of(ret: Any, n_objectives: int = 1) -> Outcome:
    """The outcome of a ``JobReturn``, or of the exception the launcher raised instead of returning one.

    One objective: the task returns a number. Several: a list or tuple of ``n_objectives`` numbers.
    """
    from hydra.core.utils import JobStatus

    if isinstance(ret, BaseException):
        return Outcome("FAIL", reason=f"launcher: {type(ret).__name__}: {ret}")
    run_dir = _run_dir(ret)
    if ret.status != JobStatus.COMPLETED:
        err = compat.returned_value(ret)
        return Outcome("FAIL", reason=f"{type(err).__name__}: {err}", run_dir=run_dir)
    values, problem = objective_values(ret.return_value, n_objectives)
    if problem:
        return Outcome("FAIL", reason=problem, run_dir=run_dir)
    return Outcome("COMPLETE", values=values, run_dir=run_dir)


def objective_values(value: Any, n_objectives: int) -> tuple[list[float], str | None]:
    """(the objective values of a task's return value, what is wrong with it or None)."""
    if n_objectives > 1:
        if not isinstance(value, (list, tuple)) and not _is_list_config(value):
            return [], f"objective: {n_objectives} directions need a list or tuple of numbers, got {value!r}"
        if len(value) != n_objectives:
            return [], f"objective: {n_objectives} directions, but the task returned {len(value)} value(s): {value!r}"
        items = list(value)
    else:
        items = [value]
    try:
        values = [float(v) for v in items]
    except (TypeError, ValueError):
        return [], f"objective is not a number: {value!r}"
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        return [], f"non-finite objective: {value if n_objectives > 1 else bad[0]}"
    return values, None


def _is_list_config(value: Any) -> bool:
    from omegaconf import ListConfig

    return isinstance(value, ListConfig)


def _run_dir(ret: Any) -> str | None:
    try:
        return str(ret.hydra_cfg.hydra.runtime.output_dir)
    except Exception:  # a job that failed before Hydra set it up
        return None


SAMPLER_STOP = "Study.stop"  # GridSampler/BruteForceSampler call study.stop() once every point was tried


@dataclass
class TrialEnd:
    state: str  # the trial's final state: COMPLETE | PRUNED | FAIL
    sampler_done: bool = False  # the sampler has tried every point of its space


def finish_trial(study: Any, number: int, outcome: Outcome) -> TrialEnd:
    """Tell the study the outcome, unless the job already finished the trial (PRUNED)."""
    from optuna.trial import TrialState

    frozen = compat.stored_trial(study, number)
    if outcome.run_dir and frozen.state == TrialState.RUNNING:
        compat.set_stored_user_attr(study, number, "run_dir", outcome.run_dir)
    if frozen.state.is_finished():
        return TrialEnd(frozen.state.name)
    if outcome.state == "COMPLETE":
        return TrialEnd("COMPLETE", _tell(study, number, outcome.values, TrialState.COMPLETE))
    compat.set_stored_user_attr(study, number, "fail_reason", outcome.reason)
    log.warning("%s #%d failed: %s", study.study_name, number, outcome.reason)
    return TrialEnd("FAIL", _tell(study, number, None, TrialState.FAIL))


def _tell(study: Any, number: int, values: list[float] | None, state: Any) -> bool:
    """``study.tell``; True when the sampler asked to stop (its space is exhausted): the trial is stored then too."""
    try:
        study.tell(number, values, state=state)
    except RuntimeError as e:
        if SAMPLER_STOP not in str(e):
            raise
        log.info("%s: the sampler has tried every point of its space", study.study_name)
        return True
    return False


def sampler_exhausted(study: Any) -> bool:
    """True when the study's grid sampler has no untried point left."""
    is_exhausted = getattr(study.sampler, "is_exhausted", None)
    return bool(is_exhausted(study)) if is_exhausted is not None else False


def run_trials(
    study: Any,
    slots: TrialSlots,
    n_new: int,
    new_trial: Callable[[], tuple[int, list[str], int]],
    max_failures: int,
    failed_before: int = 0,
    on_finished: Callable[[int, str], None] | None = None,
) -> int:
    """Run ``n_new`` trials, ``slots.size`` in flight; ``new_trial() -> (number, overrides, job_num)``.

    Stops asking once more than ``max_failures`` trials failed (``failed_before`` of them in earlier runs), waits
    for the trials in flight, then raises SweepError. A sampler whose space is exhausted ends the stage early.
    ``on_finished(number, state)`` runs after each trial is told. Returns the number of failed trials.
    """
    n_objectives = len(study.directions)
    in_flight: dict[Future, int] = {}
    issued, failures, done_sampling = 0, failed_before, False

    def may_ask() -> bool:
        return issued < n_new and failures <= max_failures and not done_sampling and not sampler_exhausted(study)

    while in_flight or may_ask():
        while may_ask() and len(in_flight) < slots.size:
            number, overrides, job_num = new_trial()
            log.info("%s #%d (job %d): %s", study.study_name, number, job_num, " ".join(overrides))
            in_flight[slots.submit(overrides, job_num, n_objectives)] = number
            issued += 1
        if not in_flight:
            break
        done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
        for future in done:
            number = in_flight.pop(future)
            end = finish_trial(study, number, job_outcome(future))
            failures += end.state == "FAIL"
            done_sampling = done_sampling or end.sampler_done
            if on_finished is not None:
                on_finished(number, end.state)
    if issued < n_new and failures <= max_failures:
        log.info("%s: stage ended after %d of %d new trial(s): its space is exhausted", study.study_name, issued, n_new)
    if failures > max_failures:
        raise SweepError(
            f"{study.study_name}: {failures} failed trial(s), more than hydra.sweeper.max_failure_rate allows"
            f" ({max_failures}); see the fail_reason of each trial in the summary"
        )
    return failures
