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


def launch_trial(launcher: Any, overrides: list[str], job_num: int) -> Outcome:
    """Launch one trial job and wait for it; a launcher error is this trial's failure, not the sweep's."""
    try:
        ret = launcher.launch([list(overrides)], initial_job_idx=job_num)
    except Exception as e:
        return outcome_of(e)
    if not ret:
        return Outcome("FAIL", reason="launcher: returned no result (dry run?)")
    return outcome_of(ret[0])


def _init_worker(launcher: Any) -> None:
    global _worker_launcher
    _worker_launcher = launcher


def _launch_in_worker(overrides: list[str], job_num: int) -> Outcome:
    return launch_trial(_worker_launcher, overrides, job_num)


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

    def submit(self, overrides: list[str], job_num: int) -> Future:
        """A future of the trial's :class:`Outcome`."""
        if not self.inline:
            try:
                return self._workers().submit(_launch_in_worker, list(overrides), job_num)
            except BrokenProcessPool:  # a worker died (its trials failed): fork a fresh pool for the next ones
                self._pool = None
                return self._workers().submit(_launch_in_worker, list(overrides), job_num)
        future: Future = Future()
        future.set_result(launch_trial(self.launcher, overrides, job_num))
        return future

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


@dataclass
class Outcome:
    state: str  # COMPLETE | PRUNED | FAIL
    value: float | None = None
    reason: str | None = None
    run_dir: str | None = None


def job_outcome(future: Future) -> Outcome:
    """What a finished slot says about its trial (the study may already hold PRUNED: see ``finish_trial``)."""
    try:
        return future.result()
    except Exception as e:  # the worker process died (BrokenProcessPool) or its result did not come back
        return outcome_of(e)


def outcome_of(ret: Any) -> Outcome:
    """The outcome of a ``JobReturn``, or of the exception the launcher raised instead of returning one."""
    from hydra.core.utils import JobStatus

    if isinstance(ret, BaseException):
        return Outcome("FAIL", reason=f"launcher: {type(ret).__name__}: {ret}")
    run_dir = _run_dir(ret)
    if ret.status != JobStatus.COMPLETED:
        err = ret._return_value
        return Outcome("FAIL", reason=f"{type(err).__name__}: {err}", run_dir=run_dir)
    value = ret.return_value
    try:
        value = float(value)
    except (TypeError, ValueError):
        return Outcome("FAIL", reason=f"objective is not a number: {value!r}", run_dir=run_dir)
    if not math.isfinite(value):
        return Outcome("FAIL", reason=f"non-finite objective: {value}", run_dir=run_dir)
    return Outcome("COMPLETE", value=value, run_dir=run_dir)


def _run_dir(ret: Any) -> str | None:
    try:
        return str(ret.hydra_cfg.hydra.runtime.output_dir)
    except Exception:  # a job that failed before Hydra set it up
        return None


def finish_trial(study: Any, number: int, outcome: Outcome) -> str:
    """Tell the study the outcome, unless the job already finished the trial (PRUNED); the final state."""
    from optuna.trial import TrialState

    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    frozen = study._storage.get_trial(trial_id)
    if outcome.run_dir and frozen.state == TrialState.RUNNING:
        study._storage.set_trial_user_attr(trial_id, "run_dir", outcome.run_dir)
    if frozen.state.is_finished():
        return frozen.state.name
    if outcome.state == "COMPLETE":
        study.tell(number, outcome.value, state=TrialState.COMPLETE)
        return "COMPLETE"
    study._storage.set_trial_user_attr(trial_id, "fail_reason", outcome.reason)
    study.tell(number, state=TrialState.FAIL)
    log.warning("%s #%d failed: %s", study.study_name, number, outcome.reason)
    return "FAIL"


def run_trials(
    study: Any,
    slots: TrialSlots,
    n_new: int,
    new_trial: Callable[[], tuple[int, list[str], int]],
    max_failures: int,
    failed_before: int = 0,
) -> int:
    """Run ``n_new`` trials, ``slots.size`` in flight; ``new_trial() -> (number, overrides, job_num)``.

    Stops asking once more than ``max_failures`` trials failed (``failed_before`` of them in earlier runs), waits
    for the trials in flight, then raises SweepError. Returns the number of failed trials.
    """
    in_flight: dict[Future, int] = {}
    issued, failures = 0, failed_before
    while in_flight or (issued < n_new and failures <= max_failures):
        while issued < n_new and failures <= max_failures and len(in_flight) < slots.size:
            number, overrides, job_num = new_trial()
            log.info("%s #%d (job %d): %s", study.study_name, number, job_num, " ".join(overrides))
            in_flight[slots.submit(overrides, job_num)] = number
            issued += 1
        done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
        for future in done:
            number = in_flight.pop(future)
            state = finish_trial(study, number, job_outcome(future))
            failures += state == "FAIL"
    if failures > max_failures:
        raise SweepError(
            f"{study.study_name}: {failures} failed trial(s), more than hydra.sweeper.max_failure_rate allows"
            f" ({max_failures}); see the fail_reason of each trial in the summary"
        )
    return failures
