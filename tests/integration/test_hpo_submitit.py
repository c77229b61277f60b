"""Trials as single-job launches of the submitit launcher from forked slot workers: slots are refilled while a slow
trial still runs, never more than n_jobs are in flight, and concurrent launches do not mix up their jobs."""

from __future__ import annotations

from pathlib import Path

import yaml
from hpo_app.harness import load, run_app
from optuna.trial import TrialState

N_TRIALS = 5


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    return peak


def test_submitit_slots_refill_without_waiting_for_the_batch(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_app(
        sweep,
        "hydra/launcher=submitit_local",
        "hydra.sweeper.pruner.n_warmup_steps=100",  # no pruning: trial 0 must stay slow
        f"hydra.sweeper.stages=[{{name: only, n_trials: {N_TRIALS}}}]",
        "hydra.sweeper.refit.n_seeds=0",
        "hydra.sweeper.plots=false",
        "slow_trials=[0]",
        "slow_seconds=3",
        "step_seconds=0.05",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 trial slot(s) (LocalLauncher)" in result.stdout

    trials = load(sweep, "smoke-s0").trials
    assert len(trials) == N_TRIALS and all(t.state == TrialState.COMPLETE for t in trials)
    slow_end = trials[0].datetime_complete
    refilled = [t.number for t in trials[1:] if t.datetime_start < slow_end]
    assert len(refilled) >= 2, f"only trial(s) {refilled} started while the slow trial 0 ran"
    spans = [(t.datetime_start.timestamp(), t.datetime_complete.timestamp()) for t in trials]
    assert _max_overlap(spans) == 2

    for t in trials:  # every job ran exactly its own trial's overrides (no state shared between slot workers)
        job_dir = sweep / str(t.user_attrs["job_num"])
        assert yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) == t.user_attrs["overrides"]
        assert f"++trial.number={t.number}" in t.user_attrs["overrides"]
        assert t.user_attrs["run_dir"] == str(job_dir)
