"""Resume: kill the sweeper mid-stage, run the same command again; kept trials stay, the RUNNING one becomes an
orphaned FAIL whose budget (and parameters) are re-issued, job numbers continue, no run dir is overwritten."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from hpo_app.harness import load, run_app, start_app, study_names
from optuna.trial import TrialState

from rna_hpc.hpo.resume import ORPHAN_REASON

SLOW = ["step_seconds=0.4"]


def _wait_mid_stage(sweep: Path, proc: object, timeout: float = 180) -> None:
    """Until stage 0 has 2 finished trials and a RUNNING one that has reported (it is inside a job)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the sweep ended before it could be killed"
        if (sweep / "optuna.journal").exists() and "smoke-s0" in study_names(sweep):
            trials = load(sweep, "smoke-s0").trials
            finished = [t for t in trials if t.state.is_finished()]
            running = [t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values]
            if len(finished) >= 2 and running:
                return
        time.sleep(0.2)
    pytest.fail("stage 0 never reached the middle of a trial")


def test_killed_sweep_resumes(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = start_app(sweep, *SLOW, log=tmp_path / "first.log")
    try:
        _wait_mid_stage(sweep, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)

    before = load(sweep, "smoke-s0").trials
    running = [t for t in before if t.state == TrialState.RUNNING]
    kept = {t.number: (t.state, t.value) for t in before if t.state.is_finished()}
    assert running and len(kept) >= 2
    old_dirs = {
        t.user_attrs["job_num"]: (sweep / str(t.user_attrs["job_num"]) / ".hydra" / "overrides.yaml") for t in before
    }
    old_text = {n: p.read_text() for n, p in old_dirs.items() if p.exists()}

    again = run_app(sweep)  # step_seconds is not part of the plan: changing it is allowed
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]

    s0 = load(sweep, "smoke-s0")
    for number, (state, value) in kept.items():  # completed trials are kept as they were
        assert (s0.trials[number].state, s0.trials[number].value) == (state, value)
    for orphan in running:
        t = s0.trials[orphan.number]
        assert t.state == TrialState.FAIL and t.user_attrs["orphaned"] is True
        assert t.user_attrs["fail_reason"] == ORPHAN_REASON
        retries = [r for r in s0.trials if r.user_attrs.get("retry_of") == orphan.number]
        assert len(retries) == 1 and retries[0].params == orphan.params and retries[0].state.is_finished()
    counted = [t for t in s0.trials if t.state.is_finished() and not t.user_attrs.get("orphaned")]
    assert len(counted) == 6  # the orphan's budget was re-issued
    assert study_names(sweep) == ["smoke-refit", "smoke-s0", "smoke-s1"]

    trials = [t for name in study_names(sweep) for t in load(sweep, name).trials]
    nums = [t.user_attrs["job_num"] for t in trials]
    assert len(nums) == len(set(nums))  # job numbering continued
    new_nums = [t.user_attrs["job_num"] for t in trials if t.user_attrs["job_num"] not in old_dirs]
    assert min(new_nums) > max(old_dirs)
    for n, text in old_text.items():  # no earlier run dir was overwritten
        assert old_dirs[n].read_text() == text
